-- The delete of an entity: its index entries, its hash and the keys deleted
-- with it, atomically. The general write script's delete without its header:
-- a delete sets nothing, claims nothing and checks no condition.
-- KEYS: the hash, one key per index entry to remove, then the keys deleted
-- with the entity. ARGV: the id, the index kinds (one letter per index key:
-- 'z' sorted, 's' set, 'u' unique), then the guard names and the values the
-- engine read from them ('=' .. value, or '-' when absent).
-- Answers as write.lua does: 1 deleted, 0 absent, { 'stale', values.. } when
-- the guards moved, { 'wrongtype', key } when a key holds another type;
-- nothing is written unless the answer is 1.
-- A pcall's answer: true when the key holds another type (WRONGTYPE);
-- any other error (READONLY after a failover, OOM) is raised as it came.
local function wrong(r)
  if type(r) ~= 'table' or not r.err then return false end
  if string.sub(r.err, 1, 9) == 'WRONGTYPE' then return true end
  error(r)
end
local hkey, id, kinds = KEYS[1], ARGV[1], ARGV[2]
local nidx, ng = #kinds, (#ARGV - 2) / 2

-- The guards decide which index keys the engine sent; if the hash says
-- otherwise, hand it the truth. HMGET (or HLEN) also refuses a key of
-- another type before anything is written.
if ng > 0 then
  local cur = redis.pcall('HMGET', hkey, unpack(ARGV, 3, 2 + ng))
  if wrong(cur) then return { 'wrongtype', hkey } end
  for i = 1, ng do
    local enc = cur[i] and ('=' .. cur[i]) or '-'
    if enc ~= ARGV[2 + ng + i] then
      if redis.call('EXISTS', hkey) == 0 then return 0 end
      return { 'stale', unpack(cur, 1, ng) }
    end
  end
else
  local n = redis.pcall('HLEN', hkey)
  if wrong(n) then return { 'wrongtype', hkey } end
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
  local k, key, r = string.sub(kinds, i, i), KEYS[1 + i], nil
  if k == 'z' then
    r = redis.pcall('ZREM', key, id)
  elseif k == 's' then
    r = redis.pcall('SREM', key, id)
  else
    r = redis.pcall('GET', key)
    if r == id then redis.call('DEL', key) end
  end
  if wrong(r) then return { 'wrongtype', key } end
end
-- Entries are only sent for a hash whose guards hold values, so a hash
-- found absent here had none to remove.
local deleted = redis.call('DEL', hkey)
if deleted == 1 and #KEYS > 1 + nidx then redis.call('DEL', unpack(KEYS, 2 + nidx)) end
return deleted
