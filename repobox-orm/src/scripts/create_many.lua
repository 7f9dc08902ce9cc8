-- Creates many entities in one call, each atomically with its index entries
-- and TTL: the bulk path of `create_many` for entities with sorted and set
-- indexes (no unique one). A script call costs the server more than the
-- commands in it; one call per entity was most of a bulk create's cost.
-- KEYS: per entity, its hash key and then its index keys (every entity has
-- the same indexes, in the same order). ARGV: the number of entities, of
-- indexes, the TTL in ms (0: none), the index kinds ('z' sorted, 's' set,
-- one letter each), then per entity: its id, its number of field/value
-- pairs, the pairs, and one score per index ('' for a set).
-- Answers one code per entity: 1 created, 0 the hash exists (nothing
-- written), -1 the hash key holds another type, -1 - i index i's key holds
-- another type (nothing of that entity written).
-- A pcall's answer: true when the key holds another type (WRONGTYPE);
-- any other error (READONLY after a failover, OOM) is raised as it came.
local function wrong(r)
  if type(r) ~= 'table' or not r.err then return false end
  if string.sub(r.err, 1, 9) == 'WRONGTYPE' then return true end
  error(r)
end
local n, nidx, ttl, kinds = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local want = {}
for i = 1, nidx do
  want[i] = (string.sub(kinds, i, i) == 'z') and 'zset' or 'set'
end
-- One EXISTS for every hash key of the call: when none exists (the common
-- case of a bulk create), no entity needs a TYPE of its own.
local stride = 1 + nidx
local hkeys = {}
for e = 1, n do hkeys[e] = KEYS[(e - 1) * stride + 1] end
local any = redis.call('EXISTS', unpack(hkeys)) > 0
-- With one index, its entry is written first, and a key of another type
-- fails that write before anything else of the entity is written; with
-- several, each index key's type is checked (once per call) up front.
local first = nidx == 1
local made = {}   -- hash keys this call created
local fits = {}   -- index key -> whether it is absent or of its index's type
local out = {}
local a = 5
for e = 1, n do
  local k0 = (e - 1) * stride
  local hkey, id, nf = KEYS[k0 + 1], ARGV[a], tonumber(ARGV[a + 1])
  local f0 = a + 2
  local s0 = f0 + 2 * nf
  a = s0 + nidx
  local res = 1
  if made[hkey] then
    res = 0   -- the same entity twice in one call
  elseif any then
    local t = redis.call('TYPE', hkey).ok
    if t == 'hash' then
      res = 0
    elseif t ~= 'none' then
      res = -1
    end
  end
  if res == 1 and not first then
    for i = 1, nidx do
      local key = KEYS[k0 + 1 + i]
      local ok = fits[key]
      if ok == nil then
        local kt = redis.call('TYPE', key).ok
        ok = kt == 'none' or kt == want[i]
        fits[key] = ok
      end
      if not ok then
        res = -1 - i
        break
      end
    end
  end
  if res == 1 and first then
    local key, r = KEYS[k0 + 2], nil
    if want[1] == 'zset' then
      r = redis.pcall('ZADD', key, ARGV[s0], id)
    else
      r = redis.pcall('SADD', key, id)
    end
    if wrong(r) then res = -2 end
  end
  if res == 1 then
    made[hkey] = true
    if nf > 0 then redis.call('HSET', hkey, unpack(ARGV, f0, s0 - 1)) end
    if ttl > 0 then redis.call('PEXPIRE', hkey, ttl) end
    for i = 1, nidx do
      local key = KEYS[k0 + 1 + i]
      if not first then
        if want[i] == 'zset' then
          redis.call('ZADD', key, ARGV[s0 + i - 1], id)
        else
          redis.call('SADD', key, id)
        end
      end
      -- An index key of TTL entities lives at least as long as its longest-lived member.
      if ttl > 0 then
        local cur = redis.call('PTTL', key)
        if cur == -1 or cur < ttl then redis.call('PEXPIRE', key, ttl) end
      end
    end
  end
  out[e] = res
end
return out
