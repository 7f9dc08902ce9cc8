-- Shared by repobox's scripts (scripts/mod.rs puts it before each one).
-- refused_as_other_type(key, r) reads `r`, what redis.pcall answered for a
-- command on `key`: a key of another type gives { 'wrongtype', key }, which
-- the script returns before it has written anything (Redis does not roll a
-- script back); any other error (READONLY, OOM) is raised as it came;
-- anything else gives nil. (A function of two arguments: cheaper for Lua
-- than one that passes the command on.)
local function refused_as_other_type(key, r)
  if type(r) == 'table' and r.err then
    if string.sub(r.err, 1, 9) == 'WRONGTYPE' then return { 'wrongtype', key } end
    error(r)
  end
  return nil
end
