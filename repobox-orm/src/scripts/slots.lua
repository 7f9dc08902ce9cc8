-- A tenant's slots: at most `limit` of its members run at once. KEYS[1] is
-- the running set (member -> lease expiry, ms by Redis's clock), KEYS[2] the
-- parked set (member -> when it was parked). ARGV: the operation, then its
-- arguments. Answers a number (see each operation).
local ACQUIRE, RENEW, RELEASE, FREE = 'acquire', 'renew', 'release', 'free'
local running, parked = KEYS[1], KEYS[2]
local op = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local r = redis.pcall('ZREMRANGEBYSCORE', running, '-inf', now)
local refused = refused_as_other_type(running, r)
if refused then return refused end
if op == ACQUIRE then
  -- ARGV: member, lease ms, limit. 1: the member holds a slot (it already
  -- did, or took a free one); 0: all are taken, and it is parked.
  local member, lease, limit = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
  if redis.call('ZSCORE', running, member) or redis.call('ZCARD', running) < limit then
    redis.call('ZADD', running, now + lease, member)
    refused = refused_as_other_type(parked, redis.pcall('ZREM', parked, member))
    if refused then return refused end
    return 1
  end
  refused = refused_as_other_type(parked, redis.pcall('ZADD', parked, 'NX', now, member))
  if refused then return refused end
  return 0
elseif op == RENEW then
  -- ARGV: member, lease ms. 1 if it held a slot.
  return redis.call('ZADD', running, 'XX', 'CH', now + tonumber(ARGV[3]), ARGV[2])
elseif op == RELEASE then
  -- ARGV: member. 1 if it held a slot.
  return redis.call('ZREM', running, ARGV[2])
elseif op == FREE then
  -- ARGV: limit. How many slots are free now.
  local free = tonumber(ARGV[2]) - redis.call('ZCARD', running)
  if free < 0 then free = 0 end
  return free
end
return redis.error_reply('slots.lua: unknown operation')
