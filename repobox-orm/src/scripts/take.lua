-- Takes work from a queue in one atomic step: optionally writes the end of
-- the last piece of work first (one write of `entity`, write_entity.lua,
-- joined before this file), then reads new entries of the first of several
-- streams that have any, reads the entity each entry names, and, given a
-- template, starts each of those entities with a write of `entity` built
-- from the template (queue/take.rs lays it all out).
--
-- KEYS: the finishing write's keys, then the streams (highest priority
-- first, every key on one server), then the template's keys (its first,
-- the hash, is replaced by each entity's own).
-- ARGV: [1] how many KEYS the finishing write has (0: no such write), [2]
-- how many ARGV, then its ARGV; then how many streams, the consumer, how
-- many entries at most, the entry field that names an entity ('' for
-- none), the text before and after that name in the entity's key, one
-- group per stream; then how many KEYS the template has (0: no template),
-- how many ARGV, the longest name it may start, its ARGV, and one unique
-- value per entry it may start.
--
-- A template's value that starts with a NUL byte is computed here for each
-- entity: "\0i" its id, "\0e" the entry's id, "\0u" the next unique value,
-- "\0t<ms>" Redis's clock plus <ms>, "\0f<name>" the entry's field <name>,
-- "\0v<name>" the hash's field <name>, "\0a<name>\0<before>\0<after>" the
-- hash's JSON array of objects <name> (absent: empty) with <before>
-- Redis's clock <after> appended,
-- "\0\0..." the rest as it is. A guard's or a condition's value is '='
-- and one of those. A value that cannot be computed (a field that is
-- absent, a malformed array) starts nothing.
--
-- Answers: the finishing write's answer (0 without one), one item per
-- stream (its XREADGROUP reply, 0 where nothing was read, or the error it
-- answered: one stream that cannot be read keeps neither the call from
-- answering nor the others from being read), then 0 or, when a field names
-- entities and something was delivered, {TIME, seen}, where seen has one
-- item per delivered entry in the order above: 0 for an entry without the
-- field, else {key, HGETALL of key (or its error), 1 if it was started here
-- and the HGETALL is of the hash as started, else 0}. The key is built from
-- the entry's data and never declared, which one server allows (the caller
-- makes sure it is one server); the caller checks it is the key it expects
-- before it uses what was read there.
local nfk, nfa = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = { 0 }
if nfk > 0 then out[1] = entity(0, 2) end
local p = 2 + nfa
local ns, consumer, left = tonumber(ARGV[p + 1]), ARGV[p + 2], tonumber(ARGV[p + 3])
local field, prefix, suffix = ARGV[p + 4], ARGV[p + 5], ARGV[p + 6]
local q = p + 6 + ns
local ntk, nta, maxlen = tonumber(ARGV[q + 1]), tonumber(ARGV[q + 2]), tonumber(ARGV[q + 3])
local t0, u0, used = q + 3, q + 3 + nta, 0
local delivered = false
for i = 1, ns do
  out[i + 1] = 0
  if left > 0 then
    local read = redis.pcall('XREADGROUP', 'GROUP', ARGV[p + 6 + i], consumer,
      'COUNT', left, 'STREAMS', KEYS[nfk + i], '>')
    if type(read) == 'table' and read.err then
      out[i + 1] = read
    elseif read then
      out[i + 1] = read
      left = left - #read[1][2]
      delivered = true
    end
  end
end
out[ns + 2] = 0
if field == '' or not delivered then return out end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- A name the template may start: what a key part of the caller's checks
-- takes without looking further (printable ASCII, none of : { } * ? [ ]).
local function plain(name)
  return #name > 0 and #name <= maxlen and not string.find(name, '[^!-~]')
    and not string.find(name, '[:{}*?%[%]]')
end

-- The value of template item `v` (its code at `at`) for one entity, or nil.
local function computed(v, at, id, entry, unique, fields, hash)
  local code = string.sub(v, at, at)
  local arg = string.sub(v, at + 1)
  if code == 'i' then return id end
  if code == 'e' then return entry end
  if code == 'u' then return unique end
  if code == 't' then return string.format('%d', now + (tonumber(arg) or 0)) end
  if code == 'f' then return fields[arg] end
  -- A score: a number, or nothing is started (the write would fail half
  -- done at its ZADD).
  if code == 'v' then return tonumber(hash[arg]) and hash[arg] end
  if code == 'a' then
    local rest = arg
    local a = string.find(rest, '\0', 1, true)
    local b = a and string.find(rest, '\0', a + 1, true)
    if not b then return nil end
    local item = string.sub(rest, a + 1, b - 1) .. string.format('%d', now) .. string.sub(rest, b + 1)
    local cur = hash[string.sub(rest, 1, a - 1)]
    if not cur then return '[' .. item .. ']' end
    -- Appended to only when it is a JSON array of objects: text that is not
    -- one is left as it is, and the caller decides.
    local ok, parsed = pcall(cjson.decode, cur)
    if not ok or type(parsed) ~= 'table' or not string.find(cur, '^%s*%[') then return nil end
    for i, v in pairs(parsed) do
      if type(i) ~= 'number' or type(v) ~= 'table' then return nil end
    end
    if #parsed == 0 then return '[' .. item .. ']' end
    local last = string.find(cur, '%]%s*$')
    return string.sub(cur, 1, last - 1) .. ',' .. item .. ']'
  end
  if code == '\0' then return string.sub(v, at) end
  return nil
end

-- Starts the entity at `key` from the template; whether it did.
local function start(key, id, entry, fields, answer)
  if ntk == 0 or not plain(id) or type(answer) ~= 'table' or answer.err or #answer == 0 then
    return false
  end
  used = used + 1
  local unique = ARGV[u0 + used]
  if not unique then return false end
  local hash = {}
  for j = 1, #answer - 1, 2 do hash[answer[j]] = answer[j + 1] end
  local keys, args = { key }, { ARGV[t0 + 1] }
  for j = 2, ntk do keys[j] = KEYS[nfk + ns + j] end
  for j = 2, nta do
    local v = ARGV[t0 + j]
    local b1, b2 = string.byte(v, 1, 2)
    if b1 == 0 then
      v = computed(v, 2, id, entry, unique, fields, hash)
      if not v then return false end
    elseif b1 == 61 and b2 == 0 then
      -- A guard or condition: '=' and the computed value.
      v = computed(v, 3, id, entry, unique, fields, hash)
      if not v then return false end
      v = '=' .. v
    end
    args[j] = v
  end
  K, A = keys, args
  local ok, r = pcall(entity, 0, 0)
  K, A = KEYS, ARGV
  return ok and (r == 1 or (type(r) == 'table' and r[1] == 'ok'))
end

local seen = {}
for i = 1, ns do
  local read = out[i + 1]
  if type(read) == 'table' and not read.err then
    for _, e in ipairs(read[1][2]) do
      -- A field named twice: the last one counts, as for the caller, and
      -- an entry that says two things is not started here.
      local entry, flat, name, fields, twice = e[1], e[2], false, {}, false
      if type(flat) == 'table' then
        for j = 1, #flat - 1, 2 do
          if fields[flat[j]] then twice = true end
          fields[flat[j]] = flat[j + 1]
          if flat[j] == field then name = flat[j + 1] end
        end
      end
      if name then
        local key = prefix .. name .. suffix
        local answer = redis.pcall('HGETALL', key)
        if not twice and start(key, name, entry, fields, answer) then
          seen[#seen + 1] = { key, redis.pcall('HGETALL', key), 1 }
        else
          seen[#seen + 1] = { key, answer, 0 }
        end
      else
        seen[#seen + 1] = 0
      end
    end
  end
end
out[ns + 2] = { t, seen }
return out
