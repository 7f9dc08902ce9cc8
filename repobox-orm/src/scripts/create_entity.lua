-- The create of one entity whose indexes are sorted or set indexes (no
-- unique one): its hash, its index entries and its TTL, atomically, with
-- the checks a create needs and nothing else (no header to decode). This
-- file defines `entity`, which `one.lua` calls once and `many.lua` once per
-- create of a call (scripts/mod.rs joins the files); the create's KEYS start
-- after KEYS[kb], its ARGV after ARGV[ab] and end at ARGV[last].
-- KEYS: the hash, then one key per index. ARGV: the index kinds (one letter
-- per index: 'z' sorted, 's' set), the TTL in ms (0: none), the id, one
-- score per index ('' for a set), then the field/value pairs.
-- Answers CREATED, { 'exists' } when the hash exists (a create earlier in
-- the same call included), { 'wrongtype', key } when a key holds another
-- type (scripts/create_entity.rs decodes them); nothing is written unless
-- the answer is CREATED.
local CREATED = 1
local function entity(kb, ab, last)
  local hkey, kinds, ttl, id = KEYS[kb + 1], ARGV[ab + 1], tonumber(ARGV[ab + 2]), ARGV[ab + 3]
  local nidx = #kinds
  if redis.call('EXISTS', hkey) == 1 then
    if redis.call('TYPE', hkey).ok == 'hash' then return { 'exists' } end
    return { 'wrongtype', hkey }
  end
  -- With one index, its entry is written first, and a key of another type
  -- fails that write before anything else is written; with several, each
  -- index key's type is checked up front.
  if nidx > 1 then
    for i = 1, nidx do
      local want = (string.sub(kinds, i, i) == 'z') and 'zset' or 'set'
      local t = redis.call('TYPE', KEYS[kb + 1 + i]).ok
      if t ~= 'none' and t ~= want then return { 'wrongtype', KEYS[kb + 1 + i] } end
    end
  end
  for i = 1, nidx do
    local key, refused = KEYS[kb + 1 + i], nil
    if string.sub(kinds, i, i) == 'z' then
      refused = refused_as_other_type(key, redis.pcall('ZADD', key, ARGV[ab + 3 + i], id))
    else
      refused = refused_as_other_type(key, redis.pcall('SADD', key, id))
    end
    if refused then return refused end
  end
  redis.call('HSET', hkey, unpack(ARGV, ab + 4 + nidx, last))
  if ttl > 0 then
    redis.call('PEXPIRE', hkey, ttl)
    -- An index key of TTL entities lives at least as long as its longest-lived member.
    for i = 1, nidx do
      local key = KEYS[kb + 1 + i]
      local cur = redis.call('PTTL', key)
      if cur == -1 or cur < ttl then redis.call('PEXPIRE', key, ttl) end
    end
  end
  return CREATED
end
