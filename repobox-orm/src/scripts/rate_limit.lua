-- Grants up to `want` starts under a limit of `max` starts per `per` ms, by
-- Redis's clock, across every runner of a queue. KEYS[1] is the limiter (a
-- sorted set: one member per start granted, scored by when). ARGV: max,
-- per (ms), want, and the prefix of the new members' names (unique per
-- caller). Answers { granted, wait_ms }: wait_ms, when nothing was granted,
-- is how long until the oldest start leaves the window.
local key = KEYS[1]
local max, per, want, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local r = redis.pcall('ZREMRANGEBYSCORE', key, '-inf', now - per)
local refused = refused_as_other_type(key, r)
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
for i = 1, grant do redis.call('ZADD', key, now, prefix .. i) end
redis.call('PEXPIRE', key, per + 1000)
return { grant, 0 }
