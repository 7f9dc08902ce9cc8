-- Read repair: drop index entries whose entity hash is gone (expired or
-- deleted by a client that did not maintain the index).
-- KEYS[1] is the index key, KEYS[2..] the members' hash keys;
-- ARGV[1] the index kind (z, s, u), ARGV[2..] the member ids.
-- A member is removed only if its hash is still absent now, so an entity
-- re-created since the caller looked keeps its entry.
local removed = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    if ARGV[1] == 'z' then removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
    elseif ARGV[1] == 's' then removed = removed + redis.call('SREM', KEYS[1], ARGV[i])
    elseif redis.call('GET', KEYS[1]) == ARGV[i] then removed = removed + redis.call('DEL', KEYS[1]) end
  end
end
return removed
