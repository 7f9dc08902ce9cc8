-- The delete of an entity: its index entries, its hash and the keys deleted
-- with it, atomically. The general write script's delete without its header:
-- a delete sets nothing, claims nothing and checks no condition.
-- KEYS: the hash, one key per index entry to remove, then the keys deleted
-- with the entity. ARGV: the id, the index kinds (one letter per index key:
-- 'z' sorted, 's' set, 'u' unique), what the engine read in each guard (one
-- letter per guard: '=' a value, '-' absent, '?' not known), then the guard
-- names and the values read ('' when there is none).
-- Answers as write.lua does: 1 deleted, 0 absent, { 'stale', values.. } when
-- the guards moved, { 'wrongtype', key } when a key holds another type;
-- nothing is written unless the answer is 1. A pcall's error other than
-- WRONGTYPE (READONLY after a failover) is raised as it came.
local hkey, id, kinds, seen = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local nidx, ng = #kinds, #seen

-- The guards decide which index keys the engine sent; if the hash says
-- otherwise, hand it the truth. The read also refuses a key of another
-- type before anything is written.
if ng > 0 then
  local cur
  if ng == 1 then
    cur = redis.pcall('HGET', hkey, ARGV[4])
    if type(cur) == 'table' then
      if string.sub(cur.err, 1, 9) == 'WRONGTYPE' then return { 'wrongtype', hkey } end
      error(cur)
    end
    cur = { cur }
  else
    cur = redis.pcall('HMGET', hkey, unpack(ARGV, 4, 3 + ng))
    if cur.err then
      if string.sub(cur.err, 1, 9) == 'WRONGTYPE' then return { 'wrongtype', hkey } end
      error(cur)
    end
  end
  for i = 1, ng do
    local v, s = cur[i], string.byte(seen, i)
    -- '=' (61): the value read; '-' (45): absent; '?': not known, never equal.
    if not ((s == 61 and v == ARGV[3 + ng + i]) or (s == 45 and not v)) then
      if redis.call('EXISTS', hkey) == 0 then return 0 end
      return { 'stale', unpack(cur, 1, ng) }
    end
  end
else
  local n = redis.pcall('HLEN', hkey)
  if type(n) == 'table' then
    if string.sub(n.err, 1, 9) == 'WRONGTYPE' then return { 'wrongtype', hkey } end
    error(n)
  end
  if n == 0 then return 0 end
end

-- One index key is removed from first: a key of another type fails that
-- removal before anything is written. Several are checked up front.
if nidx > 1 then
  for i = 1, nidx do
    local k, t = string.sub(kinds, i, i), redis.call('TYPE', KEYS[1 + i]).ok
    local want = (k == 'z' and 'zset') or (k == 's' and 'set') or 'string'
    if t ~= 'none' and t ~= want then return { 'wrongtype', KEYS[1 + i] } end
  end
end
for i = 1, nidx do
  local k, key, r = string.byte(kinds, i), KEYS[1 + i], nil
  if k == 122 then       -- 'z'
    r = redis.pcall('ZREM', key, id)
  elseif k == 115 then   -- 's'
    r = redis.pcall('SREM', key, id)
  else
    r = redis.pcall('GET', key)
    if r == id then redis.call('DEL', key) end
  end
  if type(r) == 'table' and r.err then
    if string.sub(r.err, 1, 9) == 'WRONGTYPE' then return { 'wrongtype', key } end
    error(r)
  end
end
-- Entries are only sent for a hash whose guards hold values, so a hash
-- found absent here had none to remove.
local deleted = redis.call('DEL', hkey)
if deleted == 1 and #KEYS > 1 + nidx then redis.call('DEL', unpack(KEYS, 2 + nidx)) end
return deleted
