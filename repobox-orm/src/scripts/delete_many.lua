-- The deletes of many entities in one call, each atomic on its own
-- (delete_entity.lua, joined before this). ARGV[1] is how many; each
-- entity's KEYS and ARGV follow the one before. Answers one answer of
-- delete_entity per entity, in order.
local out, k, a = {}, 0, 1
for e = 1, tonumber(ARGV[1]) do
  out[e], k, a = delete_entity(k, a)
end
return out
