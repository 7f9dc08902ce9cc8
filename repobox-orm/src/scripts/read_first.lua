-- New entries of the first streams that have any, in order: KEYS are the
-- streams (highest priority first, every key in one slot), ARGV[1] the
-- consumer, ARGV[2] how many at most, then one group per stream. Answers one
-- item per stream: its XREADGROUP reply, 0 where nothing was read, or the
-- error a stream answered (NOGROUP, WRONGTYPE): a stream that cannot be
-- read neither fails the call (what the others delivered would be lost to
-- the caller) nor stops the others from being read.
local consumer, left = ARGV[1], tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS do
  out[i] = 0
  if left > 0 then
    local read = redis.pcall('XREADGROUP', 'GROUP', ARGV[2 + i], consumer,
      'COUNT', left, 'STREAMS', KEYS[i], '>')
    if type(read) == 'table' and read.err then
      out[i] = read
    elseif read then
      out[i] = read
      left = left - #read[1][2]
    end
  end
end
return out
