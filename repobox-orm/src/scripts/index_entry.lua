-- One index entry on its own: the single-slot step of an ordered write (an
-- entity whose keys are in several cluster slots) and of an ordered index
-- repair. KEYS[1] is the index key. ARGV (scripts/index_entry.rs builds it):
-- the action, the kind ('z' sorted, 's' set, 'u' unique), the member id,
-- its score (sorted adds), the life in ms the key must have at least (0:
-- leave its TTL alone), and for a unique add the owner the engine found
-- stale and may take over ('').
-- Answers 1 when it added or removed the member, 0 when there was nothing
-- to do, { 'unique', owner } when another entity holds the unique value,
-- { 'wrongtype', key } when the key holds another type (nothing written).
local CLAIM = 'n'   -- add; a member already there keeps its score
local ADD = 'a'     -- add, or give the member the new score
local REMOVE = 'r'  -- remove (a unique key only while it holds this id)
local TOUCH = 't'   -- only lengthen the key's TTL
local CHECK = 'c'   -- write nothing; refuse a key of another type ('x': a stream)
local key, action, kind, id = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
-- The id a unique key holds, and the refusal of a key of another type.
local function owner_of(k)
  local owner = redis.pcall('GET', k)
  return owner, refused_as_other_type(k, owner)
end
local changed, refused = 0, nil
if action == REMOVE then
  if kind == 'z' then
    changed = redis.pcall('ZREM', key, id)
    refused = refused_as_other_type(key, changed)
  elseif kind == 's' then
    changed = redis.pcall('SREM', key, id)
    refused = refused_as_other_type(key, changed)
  else
    local owner
    owner, refused = owner_of(key)
    if owner == id then changed = redis.call('DEL', key) end
  end
  return refused or changed
elseif action == ADD or action == CLAIM then
  if kind == 'z' then
    if action == CLAIM then
      changed = redis.pcall('ZADD', key, 'NX', ARGV[4], id)
      refused = refused_as_other_type(key, changed)
    else
      changed = redis.pcall('ZADD', key, ARGV[4], id)
      refused = refused_as_other_type(key, changed)
    end
  elseif kind == 's' then
    changed = redis.pcall('SADD', key, id)
    refused = refused_as_other_type(key, changed)
  else
    local owner
    owner, refused = owner_of(key)
    if refused then return refused end
    if owner and owner ~= id and owner ~= ARGV[6] then return { 'unique', owner } end
    if owner ~= id then
      redis.call('SET', key, id)
      changed = 1
    end
  end
  if refused then return refused end
elseif action == CHECK then
  local want = (kind == 'z' and 'zset') or (kind == 's' and 'set') or (kind == 'x' and 'stream') or 'string'
  local t = redis.call('TYPE', key).ok
  if t ~= 'none' and t ~= want then return { 'wrongtype', key } end
  return 0
elseif action == TOUCH then
  -- Only a key of the index's own type is lengthened.
  local want = (kind == 'z' and 'zset') or (kind == 's' and 'set') or 'string'
  if redis.call('TYPE', key).ok ~= want then return 0 end
else
  return redis.error_reply('index_entry.lua: unknown action ' .. tostring(action))
end
local life = tonumber(ARGV[5])
if life > 0 then
  local cur = redis.call('PTTL', key)
  if cur == -1 or cur < life then redis.call('PEXPIRE', key, life) end
end
return changed
