-- An update that sets fields of an existing entity and nothing else: no
-- index entry moves, no field is removed, the TTL is kept. KEYS[1] is the
-- hash, ARGV its field/value pairs. Answers 1 (written), 0 (absent: nothing
-- written, never re-created), -1 (the key holds another type: nothing
-- written). HLEN answers a number for a hash or no key, an error otherwise.
local len = redis.pcall('HLEN', KEYS[1])
if type(len) == 'table' then
  -- WRONGTYPE: the key holds another type; any other error is raised as it came.
  if string.sub(len.err, 1, 9) == 'WRONGTYPE' then return -1 end
  error(len)
end
if len == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
