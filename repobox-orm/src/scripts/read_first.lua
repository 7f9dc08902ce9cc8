-- New entries of the first streams that have any, in order: KEYS are the
-- streams (highest priority first, every key in one slot), ARGV[1] the
-- consumer, ARGV[2] how many at most, then one group per stream. Answers one
-- item per stream: its XREADGROUP reply, or 0 where nothing was read.
local consumer, left = ARGV[1], tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS do
  out[i] = 0
  if left > 0 then
    local read = redis.call('XREADGROUP', 'GROUP', ARGV[2 + i], consumer,
      'COUNT', left, 'STREAMS', KEYS[i], '>')
    if read then
      out[i] = read
      left = left - #read[1][2]
    end
  end
end
return out
