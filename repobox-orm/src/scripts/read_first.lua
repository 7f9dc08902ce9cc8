-- New entries of the first streams that have any, in order: KEYS are the
-- streams (highest priority first, every key in one slot), ARGV[1] the
-- consumer, ARGV[2] how many at most, ARGV[3] the entry field that names
-- an entity ('' for none), ARGV[4] and ARGV[5] the text before and after
-- that name in the entity's key, then one group per stream.
--
-- Answers one item per stream: its XREADGROUP reply, 0 where nothing was
-- read, or the error a stream answered (NOGROUP, WRONGTYPE): a stream that
-- cannot be read neither fails the call (what the others delivered would
-- be lost to the caller) nor stops the others from being read. Then one
-- more item: 0, or, when ARGV[3] names a field and something was
-- delivered, {TIME, seen}, where seen has one item per delivered entry in
-- the order above: 0 for an entry without the field, else {key, HGETALL of
-- key (or the error it answered)}. The key is built from the entry's data
-- and never declared, which one server allows (the caller makes sure it is
-- one server); the caller checks it is the key it expects before it uses
-- what was read there.
local consumer, left = ARGV[1], tonumber(ARGV[2])
local field, prefix, suffix = ARGV[3], ARGV[4], ARGV[5]
local out = {}
local delivered = false
for i = 1, #KEYS do
  out[i] = 0
  if left > 0 then
    local read = redis.pcall('XREADGROUP', 'GROUP', ARGV[5 + i], consumer,
      'COUNT', left, 'STREAMS', KEYS[i], '>')
    if type(read) == 'table' and read.err then
      out[i] = read
    elseif read then
      out[i] = read
      left = left - #read[1][2]
      delivered = true
    end
  end
end
out[#KEYS + 1] = 0
if field ~= '' and delivered then
  local seen = {}
  for i = 1, #KEYS do
    local read = out[i]
    if type(read) == 'table' and not read.err then
      for _, entry in ipairs(read[1][2]) do
        local fields, name = entry[2], false
        if type(fields) == 'table' then
          for j = 1, #fields - 1, 2 do
            if fields[j] == field then
              name = fields[j + 1]
              break
            end
          end
        end
        if name then
          local key = prefix .. name .. suffix
          seen[#seen + 1] = { key, redis.pcall('HGETALL', key) }
        else
          seen[#seen + 1] = 0
        end
      end
    end
  end
  out[#KEYS + 1] = { redis.call('TIME'), seen }
end
return out
