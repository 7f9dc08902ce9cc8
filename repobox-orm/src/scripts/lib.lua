-- Shared by repobox's scripts (scripts/mod.rs puts it before each one).
-- refuse_other_type(key, command, ...) runs the command, which acts on `key`.
-- A key of another type answers nil and { 'wrongtype', key }, which the
-- script returns before it has written anything (Redis does not roll a
-- script back); any other error (READONLY, OOM) is raised as it came.
local function refuse_other_type(key, ...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then
    if string.sub(r.err, 1, 9) == 'WRONGTYPE' then return nil, { 'wrongtype', key } end
    error(r)
  end
  return r
end
