-- Moves one pending delivery to the dead-letter stream and acknowledges it,
-- atomically. KEYS[1] is the stream, KEYS[2] its dead-letter stream.
-- ARGV: group, entry id, reason, delivery count, consumer, then the entry's
-- field/value pairs (copied so the dead letter is readable on its own);
-- scripts/dead_letter.rs builds the call. Answers { 'ok', dead letter id }.
local stream, dead = KEYS[1], KEYS[2]
local group, id, reason, deliveries, consumer = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local entry = { 'original_id', id, 'reason', reason, 'deliveries', deliveries, 'consumer', consumer, 'dead_at', '' }
local t = redis.call('TIME')
entry[10] = tostring(t[1] * 1000 + math.floor(t[2] / 1000))
for i = 6, #ARGV do entry[#entry + 1] = ARGV[i] end
local dead_id = redis.call('XADD', dead, '*', unpack(entry))
redis.call('XACK', stream, group, id)
return { 'ok', dead_id }
