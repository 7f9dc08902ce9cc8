-- A queue-wide limit of `max` starts per `per` ms, by Redis's clock, across
-- every runner. KEYS[1] is the limiter: a sorted set with one member per
-- start, scored by when it started (or, until its read returns, by the
-- latest time it may start). ARGV[1] is the operation:
--   GRANT max per want prefix hold: grants up to `want` starts, named
--     prefix..1, prefix..2, ..., scored `hold` ms from now (a read that
--     waits for entries starts its jobs at most that late); answers
--     { granted, wait_ms }: wait_ms, when nothing was granted, is how long
--     until the oldest start leaves the window.
--   SETTLE used used_1 .. used_n unused_1 ..: the used starts are scored
--     now (their reads returned), the unused ones given back; answers how
--     many were given back.
local GRANT, SETTLE = 'grant', 'settle'
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] == SETTLE then
  local used = tonumber(ARGV[2])
  for i = 3, 2 + used do
    local refused = refused_as_other_type(key, redis.pcall('ZADD', key, 'XX', now, ARGV[i]))
    if refused then return refused end
  end
  local back = 0
  for i = 3 + used, #ARGV do
    local r = redis.pcall('ZREM', key, ARGV[i])
    local refused = refused_as_other_type(key, r)
    if refused then return refused end
    back = back + r
  end
  return back
end
local max, per, want, prefix, hold = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local refused = refused_as_other_type(key, redis.pcall('ZREMRANGEBYSCORE', key, '-inf', now - per))
if refused then return refused end
local used = redis.call('ZCARD', key)
local grant = math.min(want, max - used)
if grant <= 0 then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local wait = per
  if oldest[2] then wait = tonumber(oldest[2]) + per - now end
  if wait < 1 then wait = 1 end
  return { 0, wait }
end
for i = 1, grant do redis.call('ZADD', key, now + hold, prefix .. i) end
redis.call('PEXPIRE', key, per + hold + 1000)
return { grant, 0 }
