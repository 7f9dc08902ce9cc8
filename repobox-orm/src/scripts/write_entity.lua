-- One atomic write of an entity: its hash, its index entries and its TTL.
-- This file defines `entity`, which `one.lua` calls once and `many.lua`
-- once per write of a call (scripts/mod.rs joins the files): the write's
-- KEYS start after KEYS[kb], its ARGV after ARGV[ab].
-- Every key arrives through KEYS (Redis Cluster). `entity` reads KEYS and
-- ARGV through `K` and `A`, which take.lua points at a write it built
-- itself (a start made from a template) for the length of one call.
-- The layout of KEYS and ARGV is scripts/write_entity/mod.rs's: a binary
-- header read with one struct.unpack, one record per index op, then the
-- variable parts, read in place. The constants below are the ones that
-- module names, and its tests check them. refused_as_other_type comes from
-- lib.lua.
-- The script runs on every write, so the common paths build no tables and
-- make no calls they can avoid; they answer 1 (done) or 0 (missing),
-- everything else is a table whose first item is a tag (scripts/reply.rs).
-- Everything that can refuse the write is checked before the first write,
-- because Redis does not roll a script back.
local K, A = KEYS, ARGV
local HEADER_FORMAT, HEADER_LEN = '>c1I8I2I2I2I2I2I2I2I2I2I2', 29
local OP_FORMAT, OP_LEN = '>c1I2I2', 5
-- Modes: 'c' create, 's' save, 'u' update, 'd' delete, 'e' set the TTL,
-- 'r' an update that also sets the TTL.
local function entity(kb, ab)
  local h = A[ab + 1]
  -- mode, TTL (ms), guards, fields to set, fields to delete, index ops,
  -- conditions, KEYS position of the stream (0: none), stream entry pairs,
  -- KEYS position of the stream whose delivery it acknowledges (0: none),
  -- keys deleted with the entity, unique claims to take over
  local mode, ttl, ng, nset, ndel, nidx, ncond, xpos, nx, apos, nextra, ntake =
    struct.unpack(HEADER_FORMAT, h)
  local hkey, id = K[kb + 1], A[ab + 2]
  local s0 = ab + 2 + 2 * ng            -- field/value pairs at s0+1 ..
  local d0 = s0 + 2 * nset          -- deleted names at d0+1 ..
  local z0 = d0 + ndel              -- scores at z0+1 ..
  local c0 = z0 + nidx              -- condition names, then expected values
  local x0 = c0 + 2 * ncond         -- stream entry pairs
  local a0 = x0 + 2 * nx            -- the acknowledged delivery's group and id
  local e0 = a0                     -- positions of keys deleted with the entity
  if apos > 0 then e0 = a0 + 2 end
  local t0 = e0 + nextra            -- unique claims to take over at t0+1 ..

  -- The hash key's type, not just its existence: a key of another type must
  -- refuse the write before the first change, not fail at the HSET after it.
  -- (HLEN answers an integer for a hash or nothing, an error for anything else.)
  -- Only WRONGTYPE is that; any other error is raised as it came.
  local hlen = redis.pcall('HLEN', hkey)
  local refused = refused_as_other_type(hkey, hlen)
  if refused then return refused end
  local exists = hlen > 0
  if mode == 'c' then
    if exists then return { 'exists' } end
  elseif mode ~= 's' and not exists then
    return 0
  end

  -- The caller computed the index keys from what it believes the indexed
  -- fields hold; if the hash says otherwise, hand it the truth and write nothing.
  if exists and ng > 0 then
    local cur = redis.call('HMGET', hkey, unpack(A, ab + 3, ab + 2 + ng))
    for i = 1, ng do
      local enc = cur[i] and ('=' .. cur[i]) or '-'
      if enc ~= A[ab + 2 + ng + i] then return { 'stale', unpack(cur, 1, ng) } end
    end
  end

  -- Conditions of a conditional update: the write happens only if they hold.
  if ncond > 0 then
    local cur = redis.call('HMGET', hkey, unpack(A, c0 + 1, c0 + ncond))
    for i = 1, ncond do
      local enc = cur[i] and ('=' .. cur[i]) or '-'
      if enc ~= A[c0 + ncond + i] then return { 'conflict', A[c0 + i] } end
    end
  end

  if xpos > 0 then
    local t = redis.call('TYPE', K[kb + xpos]).ok
    if t ~= 'none' and t ~= 'stream' then return { 'wrongtype', K[kb + xpos] } end
  end
  if apos > 0 then
    local t = redis.call('TYPE', K[kb + apos]).ok
    if t ~= 'none' and t ~= 'stream' then return { 'wrongtype', K[kb + apos] } end
  end

  -- A unique value whose recorded owner the engine found gone, or no longer
  -- holding the value, is taken over: per claim, its op, the owner's KEYS
  -- position (0: the owner id is not an entity's), the owner id, whether its
  -- hash was absent ('a') or present ('p'), and the owner's indexed fields with
  -- the values the engine saw. The claim is taken only if all of that still holds.
  local stale
  if ntake > 0 then
    local take, t = {}, t0 + 1
    for _ = 1, ntake do
      local k = tonumber(A[t + 4])
      take[tonumber(A[t])] = { pos = tonumber(A[t + 1]), owner = A[t + 2],
                                  absent = A[t + 3] == 'a', k = k, at = t + 5 }
      t = t + 5 + 2 * k
    end
    stale = function(i, owner)
      local o = take[i]
      if not o or o.owner ~= owner then return false end
      if o.pos == 0 then return true end
      local okey = K[kb + o.pos]
      if o.absent then return redis.call('EXISTS', okey) == 0 end
      if o.k == 0 or redis.call('TYPE', okey).ok ~= 'hash' then return false end
      local cur = redis.call('HMGET', okey, unpack(A, o.at, o.at + o.k - 1))
      for j = 1, o.k do
        local enc = cur[j] and ('=' .. cur[j]) or '-'
        if enc ~= A[o.at + o.k + j - 1] then return false end
      end
      return true
    end
  end

  local kinds, news, olds
  local first = 0   -- an index write that can go before every other write
  if nidx > 0 then
    kinds, news, olds = {}, {}, {}
    for i = 1, nidx do
      kinds[i], news[i], olds[i] = struct.unpack(OP_FORMAT, h, HEADER_LEN + OP_LEN * (i - 1) + 1)
    end
    -- When one index key is the only one written, it is written first, and a
    -- key of the wrong type fails that write before anything else is written
    -- (a unique key is read first, which fails the same way). Otherwise every
    -- index key's type is checked up front.
    if nidx == 1 and mode ~= 'e' and (olds[1] == 0) ~= (news[1] == 0) then
      first = 1
    end
    for i = 1, nidx do
      local k = kinds[i]
      if first == 0 then
        local want = (k == 'z' and 'zset') or (k == 's' and 'set') or 'string'
        if news[i] > 0 then
          local t = redis.call('TYPE', K[kb + news[i]]).ok
          if t ~= 'none' and t ~= want then return { 'wrongtype', K[kb + news[i]] } end
        end
        if olds[i] > 0 then
          local t = redis.call('TYPE', K[kb + olds[i]]).ok
          if t ~= 'none' and t ~= want then return { 'wrongtype', K[kb + olds[i]] } end
        end
      end
      if k == 'u' and news[i] > 0 and mode ~= 'e' then
        local owner = redis.pcall('GET', K[kb + news[i]])
        local refused = refused_as_other_type(K[kb + news[i]], owner)
        if refused then return refused end
        if owner and owner ~= id and not (stale and stale(i, owner)) then
          return { 'unique', tostring(i), owner }
        end
      end
    end
  end

  local add, unindex
  if nidx > 0 then
    add = function(k, key, i)
      if k == 'z' then redis.call('ZADD', key, A[z0 + i], id)
      elseif k == 's' then redis.call('SADD', key, id)
      else redis.call('SET', key, id) end
    end
    unindex = function(k, key)
      if k == 'z' then redis.call('ZREM', key, id)
      elseif k == 's' then redis.call('SREM', key, id)
      elseif redis.call('GET', key) == id then redis.call('DEL', key) end
    end
  end

  if mode == 'd' then
    for i = 1, nidx do
      if olds[i] > 0 then unindex(kinds[i], K[kb + olds[i]]) end
    end
    redis.call('DEL', hkey)
    for i = 1, nextra do redis.call('DEL', K[kb + tonumber(A[e0 + i])]) end
    return 1
  end

  if first == 1 and news[1] > 0 and mode ~= 'e' then
    -- The first write refuses a key of another type with nothing written.
    local key, k, refused = K[kb + news[1]], kinds[1], nil
    if k == 'z' then refused = refused_as_other_type(key, redis.pcall('ZADD', key, A[z0 + 1], id))
    elseif k == 's' then refused = refused_as_other_type(key, redis.pcall('SADD', key, id))
    else refused = refused_as_other_type(key, redis.pcall('SET', key, id)) end
    if refused then return refused end
  end
  if nset > 0 then redis.call('HSET', hkey, unpack(A, s0 + 1, s0 + 2 * nset)) end
  if ndel > 0 then redis.call('HDEL', hkey, unpack(A, d0 + 1, d0 + ndel)) end
  if ttl > 0 and mode ~= 'u' then redis.call('PEXPIRE', hkey, ttl) end

  if nidx > 0 then
    -- An index key of TTL entities lives at least as long as its longest-lived member.
    local life = 0
    if ttl > 0 then life = redis.call('PTTL', hkey) end
    for i = 1, nidx do
      local k = kinds[i]
      if olds[i] > 0 then unindex(k, K[kb + olds[i]]) end
      if news[i] > 0 then
        local key = K[kb + news[i]]
        if mode ~= 'e' and first == 0 then add(k, key, i) end
        if life == -1 then
          redis.call('PERSIST', key)
        elseif life ~= 0 then
          local cur = redis.call('PTTL', key)
          if cur == -1 or cur < life then redis.call('PEXPIRE', key, life) end
        end
      end
    end
  end
  -- The delivery that this write records the end of is acknowledged with it.
  -- A group that is gone (NOGROUP) has no delivery pending to acknowledge:
  -- that is no reason to fail a write that is done.
  if apos > 0 then redis.pcall('XACK', K[kb + apos], A[a0 + 1], A[a0 + 2]) end
  if xpos > 0 then
    return { 'ok', redis.call('XADD', K[kb + xpos], '*', unpack(A, x0 + 1, x0 + 2 * nx)) }
  end
  return 1
end
