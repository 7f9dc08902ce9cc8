-- Reads a session, judged by Redis's own clock. KEYS[1] is the session hash,
-- ARGV[1] the longest a session can live (ms): an `expires_at` further than
-- that from now is out of range; ARGV[2] the hash field name of `expires_at`
-- (from `SessionField`: no field name is spelled here).
-- Answers { 'missing' }, { 'expired' } for a session past its `expires_at`
-- (the caller revokes it), { 'corrupt' } for one whose `expires_at` is
-- absent or not a decimal integer in [0, 2^53) (never trusted: the caller revokes
-- it too), or { 'ok', field, value, ... }.
local LIMIT = 9007199254740992   -- 2^53
local EXPIRES_AT = ARGV[2]
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return { 'missing' } end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = nil
for i = 1, #fields, 2 do
  local v = fields[i + 1]
  if fields[i] == EXPIRES_AT and #v <= 16 and string.match(v, '^%d+$') then expires = tonumber(v) end
end
if not expires or expires >= LIMIT or expires > now + tonumber(ARGV[1]) then return { 'corrupt' } end
if expires <= now then return { 'expired' } end
local out = { 'ok' }
for i = 1, #fields do out[i + 1] = fields[i] end
return out
