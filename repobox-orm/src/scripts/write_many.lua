-- Many writes in one call, each atomic on its own (write_entity.lua, joined
-- before this). ARGV[1] is how many; then per write the number of its KEYS
-- and of its ARGV, and its ARGV, each after the one before (its KEYS too).
-- Answers one answer of write_entity per write, in order.
local out, kb, ab = {}, 0, 1
for e = 1, tonumber(ARGV[1]) do
  local nk, na = tonumber(ARGV[ab + 1]), tonumber(ARGV[ab + 2])
  out[e] = write_entity(kb, ab + 2)
  kb, ab = kb + nk, ab + 2 + na
end
return out
