-- One index entry on its own: the single-slot step of an ordered write (an
-- entity whose keys are in several cluster slots). KEYS[1] is the index key.
-- ARGV: action ('n' add, keeping an existing member's score; 'a' add or
-- re-score; 'r' remove; 't' only lengthen the TTL), kind
-- ('z' sorted, 's' set, 'u' unique), the member id, its score (sorted adds),
-- the life in ms the key must have at least (0: leave its TTL alone), and
-- for a unique add the owner the engine found stale and may take over ('').
-- Answers 1 when it added or removed the member, 0 when there was nothing
-- to do, { 'unique', owner } when another entity holds the unique value.
-- A key of another type fails the first command with WRONGTYPE, before
-- anything is written.
local key, action, kind, id = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local changed = 0
if action == 'r' then
  if kind == 'z' then return redis.call('ZREM', key, id) end
  if kind == 's' then return redis.call('SREM', key, id) end
  if redis.call('GET', key) == id then return redis.call('DEL', key) end
  return 0
elseif action == 'a' or action == 'n' then
  if kind == 'z' then
    if action == 'n' then
      changed = redis.call('ZADD', key, 'NX', ARGV[4], id)
    else
      changed = redis.call('ZADD', key, ARGV[4], id)
    end
  elseif kind == 's' then
    changed = redis.call('SADD', key, id)
  else
    local owner = redis.call('GET', key)
    if owner and owner ~= id and owner ~= ARGV[6] then return { 'unique', owner } end
    if owner ~= id then
      redis.call('SET', key, id)
      changed = 1
    end
  end
else
  -- Only a key of the index's own type is lengthened.
  local want = (kind == 'z' and 'zset') or (kind == 's' and 'set') or 'string'
  if redis.call('TYPE', key).ok ~= want then return 0 end
end
local life = tonumber(ARGV[5])
if life > 0 then
  local cur = redis.call('PTTL', key)
  if cur == -1 or cur < life then redis.call('PEXPIRE', key, life) end
end
return changed
