//! The generic CRUD, index and TTL engine behind the generated functions.
//! Nothing here is public: generated code reaches it through `__private`.
//!
//! - `target`: an entity's address (key, id, key parts);
//! - `write`: every write, as one Lua script call (`plan`, `protocol`, `run`);
//! - `read`: entities by key;
//! - `index`: index reads, and the one ghost-finding and repair path;
//! - `sweep`: the offline repair of every index of an entity;
//! - `rekey`: entities between a previous key and their key (reads, moves).

pub(crate) mod encoding;
pub(crate) mod index;
pub(crate) mod pipeline;
pub(crate) mod read;
pub(crate) mod rekey;
pub(crate) mod sweep;
pub(crate) mod target;
pub(crate) mod write;
