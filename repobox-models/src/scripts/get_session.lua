-- Reads a session, judged by Redis's own clock. KEYS[1] is the session hash.
-- Answers { 'missing' }, { 'expired', user_id } for a session past its
-- `expires_at` (the caller revokes it), or { 'ok', field, value, ... }.
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return { 'missing' } end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #fields, 2 do
  if fields[i] == 'expires_at' then
    local expires = tonumber(fields[i + 1])
    if expires and expires <= now then return { 'expired' } end
  end
end
local out = { 'ok' }
for i = 1, #fields do out[i + 1] = fields[i] end
return out
