-- Index repair: drops members whose entity is gone or no longer belongs under
-- this index key, and corrects a sorted member's score; each only if, inside
-- the script, the entity is still exactly as the engine saw it, so a member
-- whose entity was re-created or changed since keeps its entry.
-- KEYS[1] is the index key, KEYS[1 + i] member i's hash key (scripts/repair.rs
-- builds the call).
-- ARGV[1] the index kind (z, s, u); ARGV[2] the entity's TTL in ms (0:
-- none; an index key a repair adds to lives at least that long, as one the
-- writes make does); ARGV[3] m, how many fields the engine checked;
-- ARGV[4 .. 3 + m] their names; then per member (3 + m items): its
-- id; the action ('g' gone: remove if the hash is absent, 'm' mismatch:
-- remove if the fields still hold what the engine saw, 's' score: re-score
-- if they do, 'a' add: add the missing member if they do); the score (''
-- unless 's' or an 'a' to a sorted index); and the m values the engine saw
-- ('=' .. value, or '-' for an absent field). Answers how many changed.
local GONE, MISMATCH, RESCORE, ADD = 'g', 'm', 's', 'a'
local kind, ttl, m = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local stride = 3 + m
local changed = 0
local added = false
for i = 1, #KEYS - 1 do
  local at = 4 + m + (i - 1) * stride
  local id, action, score = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local hkey = KEYS[i + 1]
  local holds
  if action == GONE then
    holds = redis.call('EXISTS', hkey) == 0
  else
    holds = redis.call('TYPE', hkey).ok == 'hash'
    if holds and m > 0 then
      local cur = redis.call('HMGET', hkey, unpack(ARGV, 4, 3 + m))
      for j = 1, m do
        local enc = cur[j] and ('=' .. cur[j]) or '-'
        if enc ~= ARGV[at + 2 + j] then
          holds = false
          break
        end
      end
    end
  end
  if holds then
    if action == ADD then
      added = true
      if kind == 'z' then
        changed = changed + redis.call('ZADD', KEYS[1], 'CH', score, id)
      elseif kind == 's' then
        changed = changed + redis.call('SADD', KEYS[1], id)
      elseif redis.call('SET', KEYS[1], id, 'NX') then
        changed = changed + 1
      end
    elseif action == RESCORE then
      changed = changed + redis.call('ZADD', KEYS[1], 'XX', 'CH', score, id)
    elseif kind == 'z' then
      changed = changed + redis.call('ZREM', KEYS[1], id)
    elseif kind == 's' then
      changed = changed + redis.call('SREM', KEYS[1], id)
    elseif redis.call('GET', KEYS[1]) == id then
      changed = changed + redis.call('DEL', KEYS[1])
    end
  end
end
if added and ttl > 0 then
  local cur = redis.call('PTTL', KEYS[1])
  if cur == -1 or (cur >= 0 and cur < ttl) then redis.call('PEXPIRE', KEYS[1], ttl) end
end
return changed
