//! The traits that `#[derive(RedisEntity)]` implements, and the two buffers the
//! generated code reads from and writes to.

use std::borrow::Cow;

use redis::Value;

use crate::error::{Error, Result};
use crate::meta::EntityMeta;

/// A struct stored as one Redis hash; implement it with `#[derive(RedisEntity)]`.
///
/// The derive also generates the inherent CRUD and index functions
/// (`E::get`, `E::save`, `E::by_user_id`, ...), which call repobox's generic
/// engine with this trait.
pub trait RedisEntity: Sized + Send + Sync + 'static {
    /// Key template, fields, indexes and TTL.
    const META: &'static EntityMeta;

    /// The generated `EPatch` for partial updates.
    type Patch: EntityPatch;

    /// The generated `EField` enum: one variant per stored field.
    type Field: EntityField;

    /// Writes every stored field (`None` fields as deletions).
    ///
    /// # Errors
    ///
    /// [`Error::Encode`](crate::Error::Encode) for a value that cannot be stored (a NaN score, JSON
    /// that does not serialize).
    fn write_fields<'a>(&'a self, out: &mut FieldWriter<'a>) -> Result<()>;

    /// Reads the entity from the fields of the hash at `key`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`](crate::Error::Decode) naming `key` and the field for a value that is
    /// absent where required or not of the field's type.
    fn read_fields(key: &str, hash: &RawHash<'_>) -> Result<Self>;
}

/// The stored fields of an entity as a typed enum (the generated `EField`), so
/// that code which needs a field by name cannot misspell it.
pub trait EntityField: Copy + Eq + std::fmt::Debug + Send + Sync + 'static {
    /// Every stored field, in declaration order.
    const ALL: &'static [Self];

    /// The hash field name on the wire (the Rust name unless renamed).
    fn name(self) -> &'static str;

    /// The field stored under the hash field `name`, if there is one.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|f| f.name() == name)
    }
}

/// A partial update of an entity: the generated `EPatch`.
pub trait EntityPatch: Default + Send + Sync {
    /// Writes the fields that the patch sets (and deletes the ones it sets to `None`).
    ///
    /// # Errors
    ///
    /// [`Error::Encode`](crate::Error::Encode) for a value that cannot be stored.
    fn write_fields<'a>(&'a self, out: &mut FieldWriter<'a>) -> Result<()>;
}

/// The fields an entity or patch writes: values to set and fields to delete.
#[derive(Debug, Default)]
pub struct FieldWriter<'a> {
    pub(crate) set: Vec<(&'static str, Cow<'a, [u8]>)>,
    pub(crate) del: Vec<&'static str>,
}

impl<'a> FieldWriter<'a> {
    /// An empty writer with room for `n` fields.
    pub fn with_capacity(n: usize) -> Self {
        FieldWriter {
            set: Vec::with_capacity(n),
            del: Vec::new(),
        }
    }

    /// Sets `field` to `value`, or deletes it when `value` is `None`.
    #[inline]
    pub fn put(&mut self, field: &'static str, value: Option<Cow<'a, [u8]>>) {
        match value {
            Some(v) => self.set.push((field, v)),
            None => self.del.push(field),
        }
    }

    /// The fields to set, as `(name, bytes)`.
    pub fn set_fields(&self) -> &[(&'static str, Cow<'a, [u8]>)] {
        &self.set
    }

    /// The fields to delete.
    pub fn deleted_fields(&self) -> &[&'static str] {
        &self.del
    }

    /// The bytes that `field` is set to, if it is set.
    pub fn get(&self, field: &str) -> Option<&[u8]> {
        self.set.iter().find(|(n, _)| *n == field).map(|(_, v)| &**v)
    }

    /// Whether the writer touches `field` (sets or deletes it).
    pub fn touches(&self, field: &str) -> bool {
        self.get(field).is_some() || self.del.contains(&field)
    }
}

/// The fields of a hash as Redis returned them (`HGETALL`), borrowed from the reply.
#[derive(Debug, Default)]
pub struct RawHash<'a> {
    pairs: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> RawHash<'a> {
    /// Reads an `HGETALL` reply (a RESP2 flat array or a RESP3 map).
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedReply`](crate::Error::UnexpectedReply) naming `key` for a reply
    /// that is not a map or flat array of string pairs.
    pub fn from_reply(key: &str, reply: &'a Value) -> Result<Self> {
        let bad = |detail: &str| Error::UnexpectedReply {
            key: key.to_owned(),
            detail: detail.to_owned(),
        };
        let bytes = |v: &'a Value| match v {
            Value::BulkString(b) => Ok(b.as_slice()),
            Value::SimpleString(s) => Ok(s.as_bytes()),
            _ => Err(bad("a hash field or value is not a string")),
        };
        let mut pairs = Vec::new();
        match reply {
            Value::Nil => {}
            Value::Array(items) => {
                if items.len() % 2 != 0 {
                    return Err(bad("odd number of items in a hash reply"));
                }
                pairs.reserve(items.len() / 2);
                for pair in items.chunks_exact(2) {
                    pairs.push((bytes(&pair[0])?, bytes(&pair[1])?));
                }
            }
            Value::Map(items) => {
                for (k, v) in items {
                    pairs.push((bytes(k)?, bytes(v)?));
                }
            }
            Value::ServerError(e) => {
                return Err(Error::from(redis::RedisError::from(e.clone())));
            }
            _ => return Err(bad("not a hash")),
        }
        Ok(RawHash { pairs })
    }

    /// A hash built from `(field, value)` pairs, for tests and other sources.
    pub fn from_pairs(pairs: Vec<(&'a [u8], &'a [u8])>) -> Self {
        RawHash { pairs }
    }

    /// Whether the hash has no fields (Redis does not keep empty hashes: the key is absent).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The `(field, value)` pairs.
    pub fn pairs(&self) -> &[(&'a [u8], &'a [u8])] {
        &self.pairs
    }

    /// The value of `field`, if present.
    pub fn get(&self, field: &str) -> Option<&'a [u8]> {
        self.pairs.iter().find(|(n, _)| *n == field.as_bytes()).map(|(_, v)| *v)
    }
}
