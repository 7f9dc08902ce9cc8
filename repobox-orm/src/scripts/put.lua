-- The write of an entity without index entries to maintain, and no
-- conditions or stream entry: its hash and its TTL. A few commands where the
-- general write script would decode a header. KEYS[1] is the hash.
-- ARGV: mode ('s' save, 'u' update: only if present, 'c' create: only if
-- absent), TTL in ms (0: leave it), the number of field/value pairs, the
-- pairs, then the fields to delete. Answers 1 (written), 0 (absent: an
-- update wrote nothing), 2 (present: a create wrote nothing), -1 (the key
-- holds another type: nothing written).
local key, mode, ttl, n = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
-- HLEN answers a number for a hash or no key, an error for another type
-- (cheaper than TYPE, whose status reply Lua gets as a table).
local len = redis.pcall('HLEN', key)
if type(len) == 'table' then
  -- WRONGTYPE: the key holds another type; any other error is raised as it came.
  if string.sub(len.err, 1, 9) == 'WRONGTYPE' then return -1 end
  error(len)
end
if mode == 'u' and len == 0 then return 0 end
if mode == 'c' and len > 0 then return 2 end
if n > 0 then redis.call('HSET', key, unpack(ARGV, 4, 3 + 2 * n)) end
if #ARGV > 3 + 2 * n then redis.call('HDEL', key, unpack(ARGV, 4 + 2 * n)) end
if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
return 1
