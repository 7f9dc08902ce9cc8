//! Every name `#[derive(RedisEntity)]` gives an item of the entity, once: the
//! emitter names its functions by these constants, the check refuses an index
//! whose functions would take one of them, and the fallback stubs the same
//! set. A test in `tests.rs` parses a whole expansion and holds the emitter to
//! this list, both ways.

/// Declares each name as a constant (the item's name in upper case, `_CONST`
/// for an associated constant) and lists them all in [`ENTITY_ITEMS`], so that
/// a name cannot be declared and left out of the list.
macro_rules! entity_items {
    ($($konst:ident = $name:literal,)*) => {
        $(pub const $konst: &str = $name;)*

        /// The entity's generated associated items, besides the ones of its indexes.
        pub const ENTITY_ITEMS: &[&str] = &[$($konst),*];
    };
}

entity_items! {
    TTL_CONST = "TTL",
    CO_LOCATED_CONST = "CO_LOCATED",
    KEY_FOR = "key_for",
    KEY = "key",
    ENTITY_ID = "entity_id",
    CREATE = "create",
    SAVE = "save",
    CREATE_AND_APPEND = "create_and_append",
    CREATE_AND_APPEND_MANY = "create_and_append_many",
    GET = "get",
    GET_WITH_CLOCK = "get_with_clock",
    GET_MANY = "get_many",
    EXISTS = "exists",
    UPDATE = "update",
    UPDATE_IF = "update_if",
    UPDATE_IF_AND_APPEND = "update_if_and_append",
    UPDATE_IF_AND_ACK = "update_if_and_ack",
    UPDATE_AND_EXPIRE = "update_and_expire",
    DELETE = "delete",
    DELETE_WITH = "delete_with",
    DELETE_IF = "delete_if",
    TTL = "ttl",
    EXPIRE_IN = "expire_in",
    CREATE_MANY = "create_many",
    SAVE_MANY = "save_many",
    DELETE_MANY = "delete_many",
}

/// What begins the count function of a sorted or set index (`count_by_user_id`).
pub const COUNT_PREFIX: &str = "count_";

/// What begins the key function of every index (`index_key_by_user_id`).
pub const INDEX_KEY_PREFIX: &str = "index_key_";

/// The prefixes of an index's functions besides its query, which is its bare name.
pub const INDEX_PREFIXES: &[&str] = &[COUNT_PREFIX, INDEX_KEY_PREFIX];

/// Parameter names the generated functions use besides placeholders.
pub const PARAMS: &[&str] = &[
    "conn", "page", "patch", "expected", "ttl", "entity", "ids", "entities", "stream", "entry", "entries", "also",
    "append", "queue", "entry_id",
];

/// The count function of the index `index`.
pub fn count_fn(index: &str) -> String {
    format!("{COUNT_PREFIX}{index}")
}

/// The key function of the index `index`.
pub fn index_key_fn(index: &str) -> String {
    format!("{INDEX_KEY_PREFIX}{index}")
}

/// Why an index may not be named `name`: one of its functions would be one
/// the derive already generates. `None` when it may.
pub fn index_name_clash(name: &str) -> Option<String> {
    if ENTITY_ITEMS.contains(&name) {
        return Some(format!(
            "index name `{name}` collides with the generated function `{name}`"
        ));
    }
    INDEX_PREFIXES.iter().find(|p| name.starts_with(*p)).map(|prefix| {
        format!("index name `{name}` starts with `{prefix}`, which names a function generated for an index (`{prefix}<index name>`)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_entity_item_looks_like_an_index_function() {
        // Else an index's function could take an entity item's name unchecked.
        for item in ENTITY_ITEMS {
            assert!(!INDEX_PREFIXES.iter().any(|p| item.starts_with(p)), "{item}");
        }
        // Nor can one index's function take another index's name.
        assert!(index_name_clash("by_user_id").is_none());
        assert!(index_name_clash(&count_fn("by_user_id")).is_some());
        assert!(index_name_clash(&index_key_fn("by_user_id")).is_some());
    }
}
