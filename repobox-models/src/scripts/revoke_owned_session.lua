-- Revokes a session only if it belongs to the user being deleted. KEYS[1]
-- is the session hash, ARGV[1] the user id, ARGV[2] the hash field name of
-- the session's `user_id` (from `SessionField`: no field name is spelled
-- here). Answers 1 deleted, 0 absent, -1 for a session of another user (or
-- a key that is not a session hash), which is left alone.
local USER_ID = ARGV[2]
-- refused_as_other_type comes from the ORM's shared Lua (script::SHARED_LUA).
local owner = redis.pcall('HGET', KEYS[1], USER_ID)
local refused = refused_as_other_type(KEYS[1], owner)
if refused then return -1 end
if not owner then
  if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
  return 0
end
if owner ~= ARGV[1] then return -1 end
return redis.call('DEL', KEYS[1])
