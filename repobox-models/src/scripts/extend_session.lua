-- Extends a session, judged by Redis's own clock. KEYS[1] is the session
-- hash, KEYS[2] (optional) its user's set of sessions. ARGV: how long to
-- extend by (ms), the longest a session may live from its creation (ms),
-- both at most 100 years (the caller caps them), the user id the caller
-- read, then the hash field names of `created_at`, `expires_at` and
-- `user_id` (from `SessionField`: no field name is spelled here).
-- A session past its `expires_at` is not brought back; the new expiry
-- never passes `created_at` + the longest lifetime. Stored times that are
-- not decimal integers in [0, 2^53) answer 'corrupt' and are never used: every sum
-- below stays exact in Lua's doubles and `%d` never wraps.
local LIMIT = 9007199254740992   -- 2^53
local CREATED_AT, EXPIRES_AT, USER_ID = ARGV[4], ARGV[5], ARGV[6]
local function stamp(v)
  if type(v) ~= 'string' or #v > 16 or not string.match(v, '^%d+$') then return nil end
  local n = tonumber(v)
  if n < LIMIT then return n end
  return nil
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], CREATED_AT, EXPIRES_AT, USER_ID)
if not v[3] then return { 'missing' } end
if v[3] ~= ARGV[3] then return { 'changed' } end
local created, expires = stamp(v[1]), stamp(v[2])
local by, longest = stamp(ARGV[1]), stamp(ARGV[2])
if not by or not longest or by > 3153600000000 or longest > 3153600000000 then
  return redis.error_reply('ERR extend_session: durations out of range')
end
-- An expiry further than 100 years (the longest any call allows) from now
-- is out of range, as get_session.lua judges it.
if not created or not expires or expires > now + 3153600000000 then return { 'corrupt' } end
if expires <= now then return { 'expired' } end
local new = now + by
local cap = created + longest
if new > cap then new = cap end
if new <= now then return { 'expired' } end
-- Never shortened, unless it was past the cap (another writer's value).
if new < expires and expires <= cap then new = expires end
if new >= LIMIT then return { 'corrupt' } end
redis.call('HSET', KEYS[1], EXPIRES_AT, string.format('%d', new))
redis.call('PEXPIREAT', KEYS[1], string.format('%d', new))
-- The set of sessions lives at least as long as its longest-lived member
-- (on a cluster the set is in another slot: the caller lengthened it first).
if KEYS[2] then
  local left = redis.call('PTTL', KEYS[2])
  if left >= 0 and now + left < new then redis.call('PEXPIREAT', KEYS[2], string.format('%d', new)) end
end
return { 'ok', string.format('%d', new) }
