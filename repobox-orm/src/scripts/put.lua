-- The write of an entity without index entries to maintain, and no
-- conditions or stream entry: its hash and its TTL. A few commands where the
-- general write script would decode a header. KEYS[1] is the hash.
-- ARGV (scripts/put.rs builds it): mode (SAVE, UPDATE: only if present,
-- CREATE: only if absent), TTL in ms (0: leave it), the number of
-- field/value pairs, the pairs, then the fields to delete. Answers DONE,
-- MISSING (absent: an update wrote nothing), { 'exists' } (present: a create
-- wrote nothing) or { 'wrongtype', key } (nothing written).
local SAVE, UPDATE, CREATE = 's', 'u', 'c'
local DONE, MISSING = 1, 0
local key, mode, ttl, n = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
-- HLEN answers a number for a hash or no key, an error for another type
-- (cheaper than TYPE, whose status reply Lua gets as a table).
local len = redis.pcall('HLEN', key)
local refused = refused_as_other_type(key, len)
if refused then return refused end
if mode == UPDATE and len == 0 then return MISSING end
if mode == CREATE and len > 0 then return { 'exists' } end
if n > 0 then redis.call('HSET', key, unpack(ARGV, 4, 3 + 2 * n)) end
if #ARGV > 3 + 2 * n then redis.call('HDEL', key, unpack(ARGV, 4 + 2 * n)) end
if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
return DONE
