-- Trims a stream without dropping any entry that a consumer group still
-- needs: pending (delivered, not acknowledged) or not yet delivered.
-- KEYS[1] is the stream. ARGV[1] is the mode: 'maxlen' keeps about ARGV[2]
-- entries; 'age' drops entries older than ARGV[2] ms by Redis's clock.
-- Answers the number of entries removed (scripts/trim.rs builds the call).
local MAXLEN, AGE = 'maxlen', 'age'
local stream, mode, value = KEYS[1], ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', stream) == 0 then return 0 end

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end

-- The first entry to keep.
local keep
if mode == MAXLEN then
  local len = redis.call('XLEN', stream)
  if len <= value then return 0 end
  local dropped = redis.call('XRANGE', stream, '-', '+', 'COUNT', len - value + 1)
  keep = dropped[#dropped][1]
elseif mode == AGE then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  keep = string.format('%d', math.max(now - value, 0)) .. '-0'
else
  return redis.error_reply('trim.lua: unknown mode ' .. tostring(mode))
end

for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local pending = redis.call('XPENDING', stream, info['name'])
  if pending[1] > 0 and less(pending[2], keep) then keep = pending[2] end
  local undelivered = redis.call('XRANGE', stream, '(' .. info['last-delivered-id'], '+', 'COUNT', 1)
  if #undelivered > 0 and less(undelivered[1][1], keep) then keep = undelivered[1][1] end
end
return redis.call('XTRIM', stream, 'MINID', keep)
