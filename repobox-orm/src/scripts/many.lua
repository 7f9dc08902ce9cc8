-- Many calls of `entity` (a *_entity.lua file, joined before this) in one
-- script call, each atomic on its own. ARGV[1] is how many; then per call
-- the number of its KEYS and of its ARGV, and its ARGV, each after the one
-- before (its KEYS too). Answers one answer of `entity` per call, in order.
local out, kb, ab = {}, 0, 1
for e = 1, tonumber(ARGV[1]) do
  local nk, na = tonumber(ARGV[ab + 1]), tonumber(ARGV[ab + 2])
  out[e] = entity(kb, ab + 2, ab + 2 + na)
  kb, ab = kb + nk, ab + 2 + na
end
return out
