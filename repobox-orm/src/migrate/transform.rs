//! The transform step: a Rust function over an entity's stored fields, its
//! result written as a compare-and-set on every field it read or changed.

use std::borrow::Cow;
use std::cell::RefCell;
use std::marker::PhantomData;

use futures_util::future::BoxFuture;

use super::Tally;
use super::steps::Work;
use crate::engine::encoding::seal;
use crate::engine::index::check_fields;
use crate::engine::pipeline;
use crate::engine::read::hgetall;
use crate::engine::target::Target;
use crate::engine::write::{Rewrite, rewrite_many};
use crate::entity::{FieldWriter, RawHash, RedisEntity};
use crate::error::{Error, Result};
use crate::store::Store;

/// A transform's function.
pub(super) type TransformFn = dyn Fn(&Fields<'_>, &mut Changes) -> Result<()> + Send + Sync;

/// A field of a compare-and-set with the bytes it must hold (`None`: absent).
type Condition<'a> = (&'static str, Option<&'a [u8]>);

/// How often an entity that changed between a transform's read and its
/// write is read and written again before it is reported.
const ATTEMPTS: usize = 4;

/// The stored fields of one entity, as a transform sees them: the bytes as
/// stored (an encrypted field sealed). Every field read is remembered: the
/// write happens only while it still holds what was read.
pub struct Fields<'h> {
    key: &'h str,
    hash: &'h RawHash<'h>,
    read: RefCell<Vec<&'static str>>,
}

impl<'h> Fields<'h> {
    fn new(key: &'h str, hash: &'h RawHash<'h>) -> Self {
        Fields {
            key,
            hash,
            read: RefCell::new(Vec::new()),
        }
    }

    /// The entity's key.
    pub fn key(&self) -> &str {
        self.key
    }

    /// The stored bytes of the hash field `field`, if present.
    pub fn get(&self, field: &'static str) -> Option<&'h [u8]> {
        let mut read = self.read.borrow_mut();
        if !read.contains(&field) {
            read.push(field);
        }
        self.hash.get(field)
    }

    /// The hash field `field` as text, if present and UTF-8.
    pub fn get_str(&self, field: &'static str) -> Option<&'h str> {
        self.get(field).and_then(|b| std::str::from_utf8(b).ok())
    }
}

/// What a transform sets and deletes in one entity; the last word on a
/// field counts.
#[derive(Debug, Default)]
pub struct Changes {
    fields: Vec<(&'static str, Option<Vec<u8>>)>,
}

impl Changes {
    /// Sets the hash field `field` to `value`.
    pub fn set(&mut self, field: &'static str, value: impl Into<Vec<u8>>) {
        self.put(field, Some(value.into()));
    }

    /// Deletes the hash field `field`.
    pub fn delete(&mut self, field: &'static str) {
        self.put(field, None);
    }

    fn put(&mut self, field: &'static str, value: Option<Vec<u8>>) {
        self.fields.retain(|(f, _)| *f != field);
        self.fields.push((field, value));
    }

    /// The changes that change something in `hash`.
    fn against(self, hash: &RawHash<'_>) -> Vec<(&'static str, Option<Vec<u8>>)> {
        self.fields
            .into_iter()
            .filter(|(f, v)| hash.get(f) != v.as_deref())
            .collect()
    }
}

/// One entity's write, ready to send.
struct Planned {
    key: String,
    target: Target,
    fields: FieldWriter<'static>,
    conditions: Vec<(&'static str, Option<Vec<u8>>)>,
}

pub(super) struct Transform<E> {
    what: String,
    f: Box<TransformFn>,
    entity: PhantomData<fn() -> E>,
}

impl<E: RedisEntity> Transform<E> {
    pub(super) fn new(what: String, f: Box<TransformFn>) -> Self {
        Transform {
            what,
            f,
            entity: PhantomData,
        }
    }

    fn refuse(&self, key: &str, reason: String) -> Error {
        Error::InvalidArgument {
            name: "transform",
            reason: format!("{} at `{}`: {reason}", self.what, E::META.key.shown(key)),
        }
    }

    /// What `f` changes in the entity at `key`, as a write; `None` when nothing.
    fn plan(&self, key: &str, hash: &RawHash<'_>) -> Result<Option<Planned>> {
        let view = Fields::new(key, hash);
        let mut changes = Changes::default();
        (self.f)(&view, &mut changes)?;
        let changes = changes.against(hash);
        if changes.is_empty() {
            return Ok(None);
        }
        let key_fields: Vec<&str> = E::META.key.placeholders().map(|(_, f)| f).collect();
        for (field, _) in &changes {
            if E::META.encrypted.contains(field) {
                return Err(self.refuse(key, format!("`{field}` is encrypted: a transform cannot change it")));
            }
            if key_fields.contains(field) {
                return Err(self.refuse(
                    key,
                    format!("`{field}` is a field of the key: a transform cannot change it"),
                ));
            }
        }
        // What the entity is once written: `f` must find nothing more to do.
        let dropped: Vec<&'static str> = E::META
            .aliases
            .iter()
            .filter(|(field, _)| changes.iter().any(|(f, _)| f == field))
            .map(|(_, alias)| *alias)
            .collect();
        let mut after: Vec<(&[u8], &[u8])> = hash
            .pairs()
            .iter()
            .filter(|(name, _)| {
                !changes.iter().any(|(f, _)| f.as_bytes() == *name) && !dropped.iter().any(|a| a.as_bytes() == *name)
            })
            .copied()
            .collect();
        after.extend(changes.iter().filter_map(|(f, v)| Some((f.as_bytes(), v.as_deref()?))));
        let after = RawHash::from_pairs(after);
        let mut again = Changes::default();
        (self.f)(&Fields::new(key, &after), &mut again)?;
        let again = again.against(&after);
        if !again.is_empty() {
            let fields: Vec<&str> = again.iter().map(|(f, _)| *f).collect();
            return Err(self.refuse(
                key,
                format!(
                    "given its own result, it changes {fields:?} again: a transform must leave what it wrote as it is, so that a resumed run cannot apply it twice"
                ),
            ));
        }
        // Conditions: every field read, changed or dropped, and the fields
        // that place the index entries the write moves.
        let mut names: Vec<&'static str> = view.read.into_inner();
        names.extend(changes.iter().map(|(f, _)| *f));
        names.extend(dropped);
        for index in E::META.indexes {
            let places = check_fields(index);
            if places.iter().any(|p| changes.iter().any(|(f, _)| f == p)) {
                names.extend(places);
            }
        }
        names.sort_unstable();
        names.dedup();
        let conditions = names
            .into_iter()
            .map(|f| (f, hash.get(f).map(<[u8]>::to_vec)))
            .collect();
        let mut fields = FieldWriter::default();
        for (field, value) in changes {
            fields.put(field, value.map(Cow::Owned));
        }
        seal::<E>(key, &mut fields)?;
        let parts: Vec<Cow<'_, str>> = E::META
            .key
            .parse_key(key)
            .ok_or_else(|| self.refuse(key, "not a key of the entity".into()))?
            .into_iter()
            .map(Cow::Borrowed)
            .collect();
        Ok(Some(Planned {
            key: key.to_owned(),
            target: Target::from_parts::<E>(&parts)?,
            fields,
            conditions,
        }))
    }
}

impl<E: RedisEntity> Work for Transform<E> {
    fn batch<'a>(&'a self, store: &'a mut Store, keys: &'a [String], dry_run: bool) -> BoxFuture<'a, Result<Tally>> {
        Box::pin(async move {
            let mut tally = Tally::default();
            let mut pending: Vec<String> = keys.to_vec();
            for _ in 0..ATTEMPTS {
                if pending.is_empty() {
                    break;
                }
                let cmds: Vec<redis::Cmd> = pending.iter().map(|k| hgetall(k)).collect();
                let replies = pipeline::query(store, &cmds).await?;
                let mut planned = Vec::new();
                for (key, reply) in pending.iter().zip(&replies) {
                    match RawHash::from_reply(&E::META.key.shown(key), reply) {
                        Ok(hash) if hash.is_empty() => {}
                        Ok(hash) => planned.extend(self.plan(key, &hash)?),
                        Err(e) => {
                            tally.problems += 1;
                            tally.messages.push(e.to_string());
                        }
                    }
                }
                pending.clear();
                if dry_run {
                    tally.changed = planned.len() as u64;
                    break;
                }
                let refs: Vec<Vec<Condition<'_>>> = planned
                    .iter()
                    .map(|p| p.conditions.iter().map(|(f, v)| (*f, v.as_deref())).collect())
                    .collect();
                let rewrites: Vec<Rewrite<'_, '_>> = planned
                    .iter()
                    .zip(&refs)
                    .map(|(p, conditions)| Rewrite {
                        target: &p.target,
                        fields: &p.fields,
                        conditions,
                    })
                    .collect();
                let results = rewrite_many::<E, Store>(store, &rewrites).await?;
                for (p, result) in planned.iter().zip(results) {
                    match result {
                        Ok(true) => tally.changed += 1,
                        // Deleted since it was read: nothing to transform.
                        Ok(false) => {}
                        Err(Error::Conflict { .. }) => pending.push(p.key.clone()),
                        Err(e) => {
                            tally.problems += 1;
                            tally.messages.push(e.to_string());
                        }
                    }
                }
            }
            for key in pending {
                tally.problems += 1;
                tally.messages.push(
                    Error::Contention {
                        key: E::META.key.shown(&key).into_owned(),
                        attempts: ATTEMPTS as u32,
                    }
                    .to_string(),
                );
            }
            Ok(tally)
        })
    }
}
