-- One write (write_entity.lua, joined before this).
return write_entity(0, 0)
