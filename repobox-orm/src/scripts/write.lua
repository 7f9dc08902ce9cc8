-- One atomic write of an entity: its hash, its index entries and its TTL.
-- Every key arrives through KEYS (Redis Cluster); engine.rs documents ARGV.
-- Optional extras: conditions on fields, an XADD that goes with a create
-- (a job and its queue entry), and keys deleted with the entity.
-- Everything that can refuse the write is checked before the first write,
-- because Redis does not roll a script back.
local hkey = KEYS[1]
local mode, ttl, id = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local p = 4
local function take(n)
  local out = {}
  for i = 1, n do out[i] = ARGV[p]; p = p + 1 end
  return out
end
local ng = tonumber(ARGV[p]); p = p + 1
local gnames, gexpect = take(ng), take(ng)
local nset = tonumber(ARGV[p]); p = p + 1
local setargs = take(2 * nset)
local ndel = tonumber(ARGV[p]); p = p + 1
local delargs = take(ndel)
local nidx = tonumber(ARGV[p]); p = p + 1
local idx = {}
for i = 1, nidx do
  idx[i] = { kind = ARGV[p], new = tonumber(ARGV[p + 1]), old = tonumber(ARGV[p + 2]), score = ARGV[p + 3] }
  p = p + 4
end
local ncond = tonumber(ARGV[p]); p = p + 1
local cnames, cexpect = take(ncond), take(ncond)
local xpos = tonumber(ARGV[p]); p = p + 1
local nx = tonumber(ARGV[p]); p = p + 1
local xargs = take(2 * nx)
local nextra = tonumber(ARGV[p]); p = p + 1
local extra = take(nextra)

local htype = redis.call('TYPE', hkey).ok
if htype ~= 'none' and htype ~= 'hash' then return { 'wrongtype', hkey } end
local exists = htype == 'hash'
if mode == 'c' and exists then return { 'exists' } end
if mode ~= 'c' and mode ~= 's' and not exists then return { 'missing' } end

-- The caller computed the index keys from what it believes the indexed
-- fields hold; if the hash says otherwise, hand it the truth and write nothing.
if exists and ng > 0 then
  local cur = redis.call('HMGET', hkey, unpack(gnames))
  local stale = false
  for i = 1, ng do
    local enc = cur[i] and ('=' .. cur[i]) or '-'
    if enc ~= gexpect[i] then stale = true end
  end
  if stale then
    local out = { 'stale' }
    for i = 1, ng do out[i + 1] = cur[i] end
    return out
  end
end

-- Conditions of a conditional update: the write happens only if they hold.
if ncond > 0 then
  local cur = redis.call('HMGET', hkey, unpack(cnames))
  for i = 1, ncond do
    local enc = cur[i] and ('=' .. cur[i]) or '-'
    if enc ~= cexpect[i] then return { 'conflict', cnames[i] } end
  end
end

if xpos > 0 then
  local t = redis.call('TYPE', KEYS[xpos]).ok
  if t ~= 'none' and t ~= 'stream' then return { 'wrongtype', KEYS[xpos] } end
end

local want = { z = 'zset', s = 'set', u = 'string' }
for i = 1, nidx do
  local ix = idx[i]
  for _, pos in ipairs({ ix.new, ix.old }) do
    if pos > 0 then
      local t = redis.call('TYPE', KEYS[pos]).ok
      if t ~= 'none' and t ~= want[ix.kind] then return { 'wrongtype', KEYS[pos] } end
    end
  end
  if ix.kind == 'u' and ix.new > 0 and mode ~= 'e' then
    local owner = redis.call('GET', KEYS[ix.new])
    if owner and owner ~= id then return { 'unique', tostring(i), owner } end
  end
end

local function unindex(ix, k)
  if ix.kind == 'z' then redis.call('ZREM', k, id)
  elseif ix.kind == 's' then redis.call('SREM', k, id)
  elseif redis.call('GET', k) == id then redis.call('DEL', k) end
end

if mode == 'd' then
  for i = 1, nidx do
    if idx[i].old > 0 then unindex(idx[i], KEYS[idx[i].old]) end
  end
  redis.call('DEL', hkey)
  for i = 1, nextra do redis.call('DEL', KEYS[tonumber(extra[i])]) end
  return { 'ok' }
end

if nset > 0 then redis.call('HSET', hkey, unpack(setargs)) end
if ndel > 0 then redis.call('HDEL', hkey, unpack(delargs)) end
if ttl > 0 and mode ~= 'u' then redis.call('PEXPIRE', hkey, ttl) end

-- An index key of TTL entities lives at least as long as its longest-lived member.
local life = 0
if ttl > 0 then life = redis.call('PTTL', hkey) end
local function outlive(k)
  if life == -1 then redis.call('PERSIST', k); return end
  local cur = redis.call('PTTL', k)
  if cur == -1 or cur < life then redis.call('PEXPIRE', k, life) end
end

for i = 1, nidx do
  local ix = idx[i]
  if ix.old > 0 then unindex(ix, KEYS[ix.old]) end
  if ix.new > 0 then
    local k = KEYS[ix.new]
    if mode ~= 'e' then
      if ix.kind == 'z' then redis.call('ZADD', k, ix.score, id)
      elseif ix.kind == 's' then redis.call('SADD', k, id)
      else redis.call('SET', k, id) end
    end
    if life ~= 0 then outlive(k) end
  end
end
if xpos > 0 then
  return { 'ok', redis.call('XADD', KEYS[xpos], '*', unpack(xargs)) }
end
return { 'ok' }
