-- The delete of one entity: its index entries, its hash and the keys
-- deleted with it, atomically. The general write script's delete without its
-- header (engine/write/protocol/delete.rs lays it out): a delete sets nothing, claims nothing and checks no condition.
-- This file defines `entity`, which `one.lua` calls once and `many.lua`
-- once per delete of a call (scripts/mod.rs joins the files).
-- Per entity, KEYS from k + 1: the hash, one key per index entry to remove,
-- then the keys deleted with the entity. ARGV from a + 1: the id, the index
-- kinds (one letter per index key: 'z' sorted, 's' set, 'u' unique), what
-- the engine read in each guard (one letter per guard: '=' a value, '-'
-- absent, '?' not known), the number of keys deleted with the entity, then
-- the guard names and the values read ('' when there is none).
-- Answers as write_entity.lua does: 1 deleted, 0 absent, { 'stale', values.. } when
-- the guards moved, { 'wrongtype', key } when a key holds another type;
-- nothing is written unless the answer is 1. Any other error (READONLY
-- after a failover) is raised as it came (lib.lua's refused_as_other_type).
local function entity(k, a)
  local hkey, id, kinds, seen = KEYS[k + 1], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local nidx, ng, nextra = #kinds, #seen, tonumber(ARGV[a + 4])
  local g0 = a + 4                 -- guard names at g0 + 1 .., values after them
  -- The guards decide which index keys the engine sent; if the hash says
  -- otherwise, hand it the truth. The read also refuses a key of another
  -- type before anything is written.
  if ng > 0 then
    local cur, refused
    if ng == 1 then
      cur = redis.pcall('HGET', hkey, ARGV[g0 + 1])
      refused = refused_as_other_type(hkey, cur)
      cur = { cur }
    else
      cur = redis.pcall('HMGET', hkey, unpack(ARGV, g0 + 1, g0 + ng))
      refused = refused_as_other_type(hkey, cur)
    end
    if refused then return refused end
    for i = 1, ng do
      local v, s = cur[i], string.byte(seen, i)
      -- '=' (61): the value read; '-' (45): absent; '?': not known, never equal.
      if not ((s == 61 and v == ARGV[g0 + ng + i]) or (s == 45 and not v)) then
        if redis.call('EXISTS', hkey) == 0 then return 0 end
        return { 'stale', unpack(cur, 1, ng) }
      end
    end
  else
    local n = redis.pcall('HLEN', hkey)
    local refused = refused_as_other_type(hkey, n)
    if refused then return refused end
    if n == 0 then return 0 end
  end

  -- One index key is removed from first: a key of another type fails that
  -- removal before anything is written. Several are checked up front.
  if nidx > 1 then
    for i = 1, nidx do
      local kind, t = string.sub(kinds, i, i), redis.call('TYPE', KEYS[k + 1 + i]).ok
      local want = (kind == 'z' and 'zset') or (kind == 's' and 'set') or 'string'
      if t ~= 'none' and t ~= want then return { 'wrongtype', KEYS[k + 1 + i] } end
    end
  end
  for i = 1, nidx do
    local kind, key, r, refused = string.byte(kinds, i), KEYS[k + 1 + i], nil, nil
    if kind == 122 then       -- 'z'
      r = redis.pcall('ZREM', key, id)
      refused = refused_as_other_type(key, r)
    elseif kind == 115 then   -- 's'
      r = redis.pcall('SREM', key, id)
      refused = refused_as_other_type(key, r)
    else
      r = redis.pcall('GET', key)
      refused = refused_as_other_type(key, r)
      if r == id then redis.call('DEL', key) end
    end
    if refused then return refused end
  end
  -- Entries are only sent for a hash whose guards hold values, so a hash
  -- found absent here had none to remove.
  local deleted = redis.call('DEL', hkey)
  if deleted == 1 and nextra > 0 then redis.call('DEL', unpack(KEYS, k + 2 + nidx, k + 1 + nidx + nextra)) end
  return deleted
end
