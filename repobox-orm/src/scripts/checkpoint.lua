-- A migration's checkpoint (`migrate/checkpoint.rs`). KEYS[1] is the
-- checkpoint hash; ARGV[1] the run that writes it; ARGV[2..] field, value
-- pairs. Written only by the run that owns the checkpoint (its `owner`
-- field): a run that another has taken over since writes nothing and gets
-- 0. Stamps `updated_at` with Redis's clock (unix ms).
local key, owner = KEYS[1], ARGV[1]
local held = redis.pcall('HGET', key, 'owner')
local refused = refused_as_other_type(key, held)
if refused then return refused end
if held ~= owner then return 0 end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if #ARGV > 1 then
  redis.call('HSET', key, 'updated_at', ms, unpack(ARGV, 2))
else
  redis.call('HSET', key, 'updated_at', ms)
end
return 1
