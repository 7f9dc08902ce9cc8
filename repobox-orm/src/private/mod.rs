//! What generated code names, and nothing else: the traits it implements, the
//! metadata types it builds, and the generic functions its inherent functions
//! call. Not a public API: it changes with the derive.

mod api;
mod fields;

pub use self::api::*;
pub use self::fields::*;
pub use crate::codec::{HashField, KeyPart, RedisValue, Score};
pub use crate::entity::{EntityField, EntityPatch, FieldWriter, RawHash, RedisEntity};
pub use crate::error::{Error, Result};
pub use crate::listing::Listing;
pub use crate::meta::{DEFAULT_MAX_KEY_PART_LEN, EntityMeta, FieldMeta, IndexKind, IndexMeta, KeyTemplate, Segment};
pub use crate::page::Page;
pub use crate::queue::Queue;
pub use redis::aio::ConnectionLike;
pub use std::borrow::Cow;
pub use std::time::Duration;

/// Asserts at compile time, at the span of the field the derive names, that a
/// placeholder's field type can be a key part.
pub const fn assert_key_part<T: KeyPart + ?Sized>() {}

/// Asserts at compile time, at the span of the field the derive names, that a
/// sorted index's score field is numeric.
pub const fn assert_score<T: Score>() {}

/// What the derive emits for an entity with `#[redis(encrypted)]` fields:
/// nothing with the `encryption` feature, a compile error without it.
#[cfg(feature = "encryption")]
#[doc(hidden)]
#[macro_export]
macro_rules! __repobox_encryption_enabled {
    () => {};
}

/// What the derive emits for an entity with `#[redis(encrypted)]` fields:
/// nothing with the `encryption` feature, a compile error without it.
#[cfg(not(feature = "encryption"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __repobox_encryption_enabled {
    () => {
        ::core::compile_error!(
            "`#[redis(encrypted)]` needs repobox-orm's `encryption` feature (on by default): enable it in Cargo.toml"
        );
    };
}

pub use crate::__repobox_encryption_enabled as encryption_enabled;
