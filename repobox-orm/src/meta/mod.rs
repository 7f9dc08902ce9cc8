//! Static metadata that `#[derive(RedisEntity)]` emits: key template (in
//! `key`), stored fields with their wire types, indexes and TTL. The engine
//! works from it; nothing here does I/O.

use std::time::Duration;

pub mod compat;
mod key;
mod key_part;

pub use key::{DEFAULT_MAX_KEY_PART_LEN, KeyTemplate, Segment};
pub use key_part::validate_key_part;

/// Everything the engine knows about an entity type.
#[derive(Debug)]
pub struct EntityMeta {
    /// The Rust type's name (`Job`), for `repobox schema`.
    pub name: &'static str,
    /// The stored fields, in declaration order, as other clients see them.
    pub fields: &'static [FieldMeta],
    /// The `#[key("...")]` template.
    pub key: KeyTemplate,
    /// The key template the entity had before a re-key
    /// (`#[key("...", previous = "...")]`): reads find an entity under it
    /// until a migration (`Step::rekey`) has moved it, and every write moves
    /// it first. Its placeholders are some of the key's.
    pub previous: Option<KeyTemplate>,
    /// The `#[index(...)]` declarations, in declaration order.
    pub indexes: &'static [IndexMeta],
    /// The `#[ttl(...)]`, if any.
    pub ttl: Option<Duration>,
    /// The hash fields stored encrypted (`#[redis(encrypted)]`): the
    /// `encrypted` ones of `fields`, listed apart (by the same derive) for the
    /// read and write paths, which check it on every call.
    pub encrypted: &'static [&'static str],
    /// Each `(field, alias)`: an old name a field is read under when its own
    /// is absent, which every write of the field removes
    /// (`#[redis(alias = "...")]`): the `aliases` of `fields`, listed apart
    /// for the write path.
    pub aliases: &'static [(&'static str, &'static str)],
    /// Whether every write touches one Redis Cluster slot: the key and every
    /// index template share one hash tag.
    pub co_located: bool,
}

/// One stored field, as other clients see it on the wire.
#[derive(Debug)]
pub struct FieldMeta {
    /// The hash field name.
    pub name: &'static str,
    /// `string`, `bytes`, `bool`, `integer`, `float`, `timestamp`, `enum` or `json`.
    pub wire_type: &'static str,
    /// Whether the field may be absent.
    pub optional: bool,
    /// Whether the field is stored encrypted (`v1:<key id>:<nonce>:<sealed>`).
    pub encrypted: bool,
    /// The wire strings of an `enum` field.
    pub values: &'static [&'static str],
    /// Old wire strings an `enum` field still reads, each with the value it
    /// reads as (`#[redis(alias = "...")]` on a variant).
    pub value_aliases: &'static [(&'static str, &'static str)],
    /// Old names the field is read under when its own is absent.
    pub aliases: &'static [&'static str],
}

/// One `#[index(...)]`.
#[derive(Debug)]
pub struct IndexMeta {
    /// The generated query's name (`by_user_id`).
    pub name: &'static str,
    /// What kind of Redis structure holds it.
    pub kind: IndexKind,
    /// The index key template.
    pub key: KeyTemplate,
    /// The template the index's keys had before a re-key
    /// (`#[index(..., previous = "...")]`, same placeholders): reads merge
    /// both keys until a migration (`Step::rekey_index`) has moved every
    /// entry, and a move of the entity (`Step::rekey`) takes its entries
    /// out of them.
    pub previous: Option<KeyTemplate>,
    /// Whether its keys hash to the entity key's slot (the same hash tag).
    pub co_located: bool,
}

/// The kind of an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// A sorted set of ids, scored by a numeric field (hash field name).
    Sorted {
        /// The hash field that holds the score.
        score: &'static str,
    },
    /// A set of ids.
    Set,
    /// A string key per value, holding the id of the one entity that has it.
    Unique,
}

impl EntityMeta {
    /// The entity's wire schema as JSON: key template, TTL, fields with their
    /// wire types and optionality (and the old names and enum values they
    /// still read), indexes. What `repobox schema` prints.
    pub fn schema(&self) -> serde_json::Value {
        let fields: Vec<serde_json::Value> = self
            .fields
            .iter()
            .map(|f| {
                let mut field = serde_json::json!({
                    "name": f.name,
                    "type": f.wire_type,
                    "optional": f.optional,
                });
                if f.encrypted {
                    field["encrypted"] = true.into();
                }
                if !f.values.is_empty() {
                    field["values"] = f.values.into();
                }
                if !f.value_aliases.is_empty() {
                    let aliases: serde_json::Map<String, serde_json::Value> = f
                        .value_aliases
                        .iter()
                        .map(|(old, value)| ((*old).to_owned(), (*value).into()))
                        .collect();
                    field["value_aliases"] = aliases.into();
                }
                if !f.aliases.is_empty() {
                    field["aliases"] = f.aliases.into();
                }
                field
            })
            .collect();
        let indexes: Vec<serde_json::Value> = self
            .indexes
            .iter()
            .map(|ix| {
                let (kind, score) = match ix.kind {
                    IndexKind::Sorted { score } => ("sorted", Some(score)),
                    IndexKind::Set => ("set", None),
                    IndexKind::Unique => ("unique", None),
                };
                let mut index = serde_json::json!({ "name": ix.name, "kind": kind, "key": ix.key.source, "co_located": ix.co_located });
                if let Some(score) = score {
                    index["score"] = score.into();
                }
                if let Some(previous) = &ix.previous {
                    index["previous_key"] = previous.source.into();
                }
                index
            })
            .collect();
        let mut schema = serde_json::json!({
            "name": self.name,
            "key": self.key.source,
            "ttl_ms": self.ttl.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            "co_located": self.co_located,
            "fields": fields,
            "indexes": indexes,
        });
        if let Some(previous) = &self.previous {
            schema["previous_key"] = previous.source.into();
        }
        schema
    }
}
