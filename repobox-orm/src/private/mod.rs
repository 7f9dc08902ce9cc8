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
