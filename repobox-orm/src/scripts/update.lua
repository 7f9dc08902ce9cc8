-- An update that sets fields of an existing entity and nothing else: no
-- index entry moves, no field is removed, the TTL is kept. KEYS[1] is the
-- hash, ARGV its field/value pairs (scripts/put.rs builds them). Answers
-- DONE, MISSING (absent: nothing written, never re-created) or
-- { 'wrongtype', key } (nothing written).
local DONE, MISSING = 1, 0
local len = redis.pcall('HLEN', KEYS[1])
local refused = refused_as_other_type(KEYS[1], len)
if refused then return refused end
if len == 0 then return MISSING end
redis.call('HSET', KEYS[1], unpack(ARGV))
return DONE
