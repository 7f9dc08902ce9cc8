-- Trims a stream to about ARGV[1] entries without dropping any entry that a
-- consumer group still needs: pending (delivered, not acknowledged) or not
-- yet delivered. KEYS[1] is the stream. Returns the number of entries removed.
local stream, maxlen = KEYS[1], tonumber(ARGV[1])
local len = redis.call('XLEN', stream)
if len <= maxlen then return 0 end

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end

-- The first entry that a plain MAXLEN trim would keep.
local dropped = redis.call('XRANGE', stream, '-', '+', 'COUNT', len - maxlen + 1)
local keep = dropped[#dropped][1]

for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local pending = redis.call('XPENDING', stream, info['name'])
  if pending[1] > 0 and less(pending[2], keep) then keep = pending[2] end
  local undelivered = redis.call('XRANGE', stream, '(' .. info['last-delivered-id'], '+', 'COUNT', 1)
  if #undelivered > 0 and less(undelivered[1][1], keep) then keep = undelivered[1][1] end
end
return redis.call('XTRIM', stream, 'MINID', keep)
