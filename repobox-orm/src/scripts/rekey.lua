-- Moves one entity from its previous key to its key, with its index entries
-- and its TTL, in one script: every key is in one slot (one server, or a
-- cluster slot they share). Protocol in `scripts/rekey.rs`.
-- KEYS[1] the previous key, KEYS[2] the key, KEYS[3..] index keys.
-- ARGV[1] the previous id, ARGV[2] the id, ARGV[3] n, then n field, value
-- pairs: the hash as the mover read it; then per index key its kind
-- letter (z, s, u; Z, S for a key of an index's previous template, which
-- only loses the previous id, after the new entries are in) and its score
-- ('' when none).
-- Answers 0 (nothing at the previous key), 1 (moved), 2 (the key was
-- taken already: the previous hash and its entries removed), -1 (the
-- previous hash is no longer what was read: nothing written),
-- { 'wrongtype', key } (the key holds another type: nothing written).
local old, new = KEYS[1], KEYS[2]
local old_id, new_id, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local held = redis.pcall('HLEN', old)
local refused = refused_as_other_type(old, held)
if refused then return refused end
if held == 0 then return 0 end
if held ~= n then return -1 end
for i = 0, n - 1 do
  if redis.call('HGET', old, ARGV[4 + 2 * i]) ~= ARGV[5 + 2 * i] then return -1 end
end
local t = redis.call('TYPE', new).ok
if t ~= 'none' and t ~= 'hash' then return { 'wrongtype', new } end
local taken = t == 'hash'
if taken then
  redis.call('DEL', old)
else
  redis.call('RENAME', old, new)
end
-- With the same id under both templates, an entry is the key's own: kept.
-- New entries go before old ones are removed, so that an index key whose
-- only member moves is not deleted (and its TTL lost) in between.
local same = old_id == new_id
local at = 4 + 2 * n
for k = 3, #KEYS do
  local ix, kind, score = KEYS[k], ARGV[at], ARGV[at + 1]
  at = at + 2
  if kind == 'Z' then
    redis.pcall('ZREM', ix, old_id)
  elseif kind == 'S' then
    redis.pcall('SREM', ix, old_id)
  elseif kind == 'z' or kind == 's' then
    local add, rem = 'ZADD', 'ZREM'
    if kind == 's' then add, rem = 'SADD', 'SREM' end
    local r
    if not taken then
      if kind == 'z' then r = redis.pcall(add, ix, score, new_id) else r = redis.pcall(add, ix, new_id) end
    end
    if not refused_as_other_type(ix, r) and not same then redis.pcall(rem, ix, old_id) end
  else
    local r = redis.pcall('GET', ix)
    if not refused_as_other_type(ix, r) then
      if r == old_id then
        if not same then
          if taken then redis.call('DEL', ix) else redis.call('SET', ix, new_id, 'KEEPTTL') end
        end
      elseif r == false and not taken then
        redis.call('SET', ix, new_id)
        local ttl = redis.call('PTTL', new)
        if ttl > 0 then redis.call('PEXPIRE', ix, ttl) end
      end
    end
  end
end
if taken then return 2 end
return 1
