-- One single-slot step of a move whose keys a cluster keeps in several
-- slots (`engine/rekey/moves.rs` orders them). Protocol in `scripts/rekey.rs`.
-- ARGV[1] says which:
-- 'place'   KEYS[1] the key, KEYS[2] its tombstone; ARGV[2] when it
--           expires, in Unix ms (0: never), ARGV[3] m, m field, value pairs of a hash this mover
--           placed before (replaced if the key still holds exactly it),
--           then n and the n field, value pairs to write. Answers 1
--           (written), 2 (the key is taken), 3 (the entity was deleted
--           meanwhile: the tombstone is there), 4 (the key holds exactly
--           these pairs already: an earlier move placed them).
-- 'release' KEYS[1] the previous key; ARGV[2] n, n field, value pairs as
--           read. Deletes it if it still holds exactly them. Answers 1
--           (deleted), 0 (absent), -1 (changed: kept).
-- 'unique'  KEYS[1] a unique index key; ARGV[2] the id it may hold,
--           ARGV[3] what it holds after ('' deletes it), ARGV[4] when a
--           key it creates expires, in Unix ms (0: never). Answers 1 when
--           written.
local function same(key, at)
  local n = tonumber(ARGV[at])
  if redis.call('HLEN', key) ~= n then return false end
  for i = 0, n - 1 do
    if redis.call('HGET', key, ARGV[at + 1 + 2 * i]) ~= ARGV[at + 2 + 2 * i] then return false end
  end
  return true
end
local step, key = ARGV[1], KEYS[1]
if step == 'place' then
  local t = redis.pcall('TYPE', key)
  if t.ok ~= 'none' and t.ok ~= 'hash' then return { 'wrongtype', key } end
  if redis.call('EXISTS', KEYS[2]) == 1 then return 3 end
  local m = tonumber(ARGV[3])
  local from = 4 + 2 * m
  if t.ok == 'hash' then
    if same(key, from) then return 4 end
    if m == 0 or not same(key, 3) then return 2 end
    redis.call('DEL', key)
  end
  -- In slices: unpack takes a few thousand values at most.
  local last = from + 2 * tonumber(ARGV[from])
  for i = from + 1, last, 1000 do
    redis.call('HSET', key, unpack(ARGV, i, math.min(i + 999, last)))
  end
  local at = tonumber(ARGV[2])
  if at > 0 then redis.call('PEXPIREAT', key, at) end
  return 1
elseif step == 'release' then
  local held = redis.pcall('HLEN', key)
  local refused = refused_as_other_type(key, held)
  if refused then return refused end
  if held == 0 then return 0 end
  if not same(key, 2) then return -1 end
  redis.call('DEL', key)
  return 1
else
  local held = redis.pcall('GET', key)
  local refused = refused_as_other_type(key, held)
  if refused then return refused end
  if held ~= ARGV[2] and not (held == false and ARGV[3] ~= '') then return 0 end
  if ARGV[3] == '' then
    redis.call('DEL', key)
  elseif held == false then
    redis.call('SET', key, ARGV[3])
    local at = tonumber(ARGV[4])
    if at > 0 then redis.call('PEXPIREAT', key, at) end
  else
    redis.call('SET', key, ARGV[3], 'KEEPTTL')
  end
  return 1
end
