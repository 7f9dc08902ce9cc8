-- The delete of one entity (delete_entity.lua, joined before this).
return (delete_entity(0, 0))
