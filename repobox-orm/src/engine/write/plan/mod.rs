//! What one write changes: which indexes it maintains, which fields decide
//! where their entries are (the guards), and what the engine knows of them.
//!
//! The write script gets every key through `KEYS`, so it cannot look up an
//! index key from the hash itself: the plan computes index keys from what it
//! knows of the entity and tells the script which field values it assumed
//! (the guards). When the hash disagrees, the script writes nothing and
//! answers the current values, and the plan learns them for the next attempt.

use std::time::Duration;

use redis::{Script, Value};

mod guards;
mod owner;
mod steps;
mod template;
mod values;

pub(crate) use self::template::{literal, marker};
pub(crate) use self::values::{checked_score, ttl_millis};

use crate::engine::target::{Target, fill};
use crate::entity::{FieldWriter, RawHash, RedisEntity};
use crate::error::{Error, Result};
use crate::meta::{EntityMeta, IndexKind, IndexMeta, KeyTemplate};
use crate::scripts::delete_entity::DeleteCall;
use crate::scripts::write_entity::{Ack, IndexOp, Mode, Takeover, WriteCall, WriteReply};
use crate::scripts::{Call, DELETE, DELETE_MANY, WRITE, WRITE_MANY};

/// What a write does besides the entity and its indexes: conditions it
/// checks, a stream entry it appends, a delivery it acknowledges, keys it
/// deletes.
#[derive(Default)]
pub(crate) struct PlanOptions<'w> {
    /// Fields that must hold these values (`None` = absent) for the write to happen.
    pub conditions: &'w [(&'static str, Option<&'w [u8]>)],
    /// A stream entry appended with the write.
    pub stream: Option<(&'w str, &'w [(&'w str, &'w str)])>,
    /// A delivery acknowledged with the write (after it, where a cluster
    /// splits the keys).
    pub ack: Option<Ack<'w>>,
    /// Keys deleted with the entity.
    pub delete_keys: &'w [String],
}

/// One write in the making.
pub(crate) struct WritePlan<'w, 'a> {
    pub mode: Mode,
    pub target: &'w Target,
    fields: &'w FieldWriter<'a>,
    ttl: Option<Duration>,
    /// The indexes this write touches.
    indexes: Vec<&'static IndexMeta>,
    /// The guard fields: what decides the touched indexes' current keys (and scores).
    guards: Vec<&'static str>,
    /// What the hash holds in the guard fields; `None` = not known yet.
    current: Option<Vec<Option<Vec<u8>>>>,
    pub options: PlanOptions<'w>,
    /// Unique claims whose owners were found stale, to take over.
    takeovers: Vec<Takeover>,
    /// The entity's metadata: its key templates, to find a unique value's
    /// owner, and whether a write first moves it from a previous key.
    pub entity: &'static EntityMeta,
    /// The index key that the entity in a hash is under (`None`: undecodable).
    index_key_of: fn(&str, &RawHash<'_>, &IndexMeta) -> Option<String>,
    /// The entity's keys share one hash tag (`META.co_located`).
    entity_co_located: bool,
}

/// How a write ended, when it was not refused.
pub(crate) enum Outcome {
    /// Written; with the stream entry's id when it appended one.
    Done(Option<String>),
    /// The entity is absent and the write needs it.
    Missing,
}

/// What a plan does next after an answer of its script.
pub(crate) enum Next {
    Done(Outcome),
    /// The hash disagreed with the plan's assumption; the plan now knows better.
    Again,
    /// A unique value is claimed by `owner`: read the owner (`owner_lookup`),
    /// then `decide_takeover` says whether the claim can be taken over.
    CheckOwner {
        op: usize,
        owner: String,
    },
}

/// The fields whose values decide an index key and are not part of the entity's key.
fn placeholder_fields<'t>(index: &'static IndexMeta, target: &'t Target) -> impl Iterator<Item = &'static str> + 't {
    index
        .key
        .placeholders()
        .map(|(_, field)| field)
        .filter(move |f| target.part(f).is_none())
}

fn push_unique(list: &mut Vec<&'static str>, field: &'static str) {
    if !list.contains(&field) {
        list.push(field);
    }
}

impl<'w, 'a> WritePlan<'w, 'a> {
    pub fn new<E: RedisEntity>(
        mode: Mode,
        target: &'w Target,
        fields: &'w FieldWriter<'a>,
        ttl: Option<Duration>,
    ) -> Self {
        let meta = E::META;
        let indexes: Vec<&'static IndexMeta> = match mode {
            // A patch only touches the indexes whose key or score it changes.
            Mode::Update => meta
                .indexes
                .iter()
                .filter(|ix| {
                    ix.key.placeholders().any(|(_, f)| fields.touches(f))
                        || matches!(ix.kind, IndexKind::Sorted { score } if fields.touches(score))
                })
                .collect(),
            _ => meta.indexes.iter().collect(),
        };
        let mut guards = Vec::new();
        if mode != Mode::Create {
            for ix in &indexes {
                for f in placeholder_fields(ix, target) {
                    push_unique(&mut guards, f);
                }
                if let (Mode::Update | Mode::UpdateSettingTtl, IndexKind::Sorted { score }) = (mode, ix.kind) {
                    push_unique(&mut guards, score);
                }
            }
        }
        // A save assumes the indexed fields did not move; the script says if they did.
        let current = match mode {
            Mode::Save => Some(guards.iter().map(|f| fields.get(f).map(<[u8]>::to_vec)).collect()),
            _ => None,
        };
        WritePlan {
            mode,
            target,
            fields,
            ttl,
            indexes,
            guards,
            current,
            options: PlanOptions::default(),
            takeovers: Vec::new(),
            entity: meta,
            index_key_of: owner::index_key_of::<E>,
            entity_co_located: meta.co_located,
        }
    }

    /// Whether every key of this write is in one cluster slot by
    /// declaration: the entity's keys share one hash tag, and the write
    /// touches no other key (a stream, keys deleted with it).
    pub fn co_located(&self) -> bool {
        self.entity_co_located
            && self.options.stream.is_none()
            && self.options.ack.is_none()
            && self.options.delete_keys.is_empty()
    }

    /// Every key this attempt's atomic call touches, for routing.
    pub fn keys(&self) -> Result<Vec<String>> {
        let mut keys = vec![self.target.key.clone()];
        for op in self.index_ops()? {
            keys.extend(op.new);
            keys.extend(op.old);
        }
        if let Some((stream, _)) = self.options.stream {
            keys.push(stream.to_owned());
        }
        if let Some(ack) = &self.options.ack {
            keys.push(ack.stream.to_owned());
        }
        keys.extend(self.options.delete_keys.iter().cloned());
        keys.extend(self.takeovers.iter().filter_map(|t| t.owner_key.clone()));
        Ok(keys)
    }

    /// What the hash holds in `field` before the write, if known.
    fn before(&self, field: &str) -> Option<Option<&[u8]>> {
        if let Some(part) = self.target.part(field) {
            return Some(Some(part.as_bytes()));
        }
        let pos = self.guards.iter().position(|g| *g == field)?;
        self.current.as_ref().map(|cur| cur[pos].as_deref())
    }

    /// What `field` holds after the write.
    fn after(&self, field: &str) -> Option<&[u8]> {
        if let Some(part) = self.target.part(field) {
            return Some(part.as_bytes());
        }
        if self.fields.touches(field) || !matches!(self.mode, Mode::Update | Mode::UpdateSettingTtl) {
            return self.fields.get(field);
        }
        self.before(field).flatten()
    }

    fn index_key<'v>(template: &KeyTemplate, value: impl Fn(&'static str) -> Option<&'v [u8]>) -> Result<String> {
        fill(template, value)
    }

    /// The index entries this attempt maintains, from what the plan knows now.
    pub(crate) fn index_ops(&self) -> Result<Vec<IndexOp>> {
        let known = self.guards.is_empty() || self.current.is_some();
        // No indexed field at all: the entity is almost surely gone, and the
        // script answers that it is missing. (A corrupt hash without any of
        // them cannot have index entries to maintain either.)
        // Only placeholders say so: a score may be an absent `Option`.
        let is_placeholder = |g: &&str| {
            self.indexes
                .iter()
                .any(|ix| ix.key.placeholders().any(|(_, f)| f == *g))
        };
        let absent = !matches!(self.mode, Mode::Create | Mode::Save)
            && self.guards.iter().any(&is_placeholder)
            && self.current.as_ref().is_some_and(|cur| {
                cur.iter()
                    .zip(&self.guards)
                    .filter(|(_, g)| is_placeholder(g))
                    .all(|(v, _)| v.is_none())
            });
        if !known || absent {
            return Ok(Vec::new());
        }
        let mut ops = Vec::with_capacity(self.indexes.len());
        for ix in &self.indexes {
            // Keys built from corrupt values cannot hold an entry of ours.
            let before = || Self::index_key(&ix.key, |f| self.before(f).flatten()).ok();
            let old = match self.mode {
                Mode::Create | Mode::SetTtl => None,
                _ => before(),
            };
            // A sorted index whose score is absent (an `Option` score that is
            // `None`) holds no entry of the entity: a partial index.
            let unscored = matches!(ix.kind, IndexKind::Sorted { score } if self.after(score).is_none());
            let new = match self.mode {
                Mode::Delete => None,
                // The key's life is lengthened whether or not it holds the entity.
                Mode::SetTtl => before(),
                _ if unscored => None,
                _ => Some(Self::index_key(&ix.key, |f| self.after(f))?),
            };
            let score = match (self.mode, ix.kind, &new) {
                (
                    Mode::Create | Mode::Save | Mode::Update | Mode::UpdateSettingTtl,
                    IndexKind::Sorted { score },
                    Some(_),
                ) => checked_score(score, self.after(score))?,
                _ => String::new(),
            };
            let old = old.filter(|o| Some(o) != new.as_ref());
            ops.push(IndexOp {
                kind: ix.kind,
                new,
                old,
                score,
            });
        }
        Ok(ops)
    }

    /// The script this plan's attempts run: the delete script for a delete
    /// (it has nothing to decode), the general write script for the rest.
    pub fn script(&self) -> &'static Script {
        match self.mode {
            Mode::Delete if self.options.conditions.is_empty() => &DELETE,
            _ => &WRITE,
        }
    }

    /// The script that runs many of this plan's kind in one call.
    pub fn many_script(&self) -> &'static Script {
        match self.mode {
            Mode::Delete if self.options.conditions.is_empty() => &DELETE_MANY,
            _ => &WRITE_MANY,
        }
    }

    /// The `KEYS` and `ARGV` of this attempt's call of [`script`](Self::script).
    pub fn call(&self) -> Result<Call> {
        let ops = self.index_ops()?;
        // A delete with conditions is the general write script's (mode `d`),
        // which checks them; the delete script checks none.
        if self.mode == Mode::Delete && self.options.conditions.is_empty() {
            return DeleteCall {
                hash_key: &self.target.key,
                id: &self.target.id,
                ops: &ops,
                guards: &self.guards,
                guard_values: self.current.as_deref(),
                extra_keys: self.options.delete_keys,
            }
            .call();
        }
        self.write_call(ops, true)?.call()
    }

    /// The write script's call with `ops`; `with_other_keys`: with the stream entry,
    /// the keys deleted with the entity and the unique takeovers (an ordered
    /// write sends those as steps of their own).
    fn write_call(&self, ops: Vec<IndexOp>, with_other_keys: bool) -> Result<WriteCall<'_, 'a>> {
        let (set, del): (&[_], &[_]) = match self.mode {
            Mode::Delete | Mode::SetTtl => (&[], &[]),
            _ => (&self.fields.set, &self.fields.del),
        };
        let ttl_ms = match (self.mode, self.ttl) {
            (Mode::Delete, _) | (_, None) => 0,
            (_, Some(ttl)) => ttl_millis(ttl)?,
        };
        Ok(WriteCall {
            mode: Some(self.mode),
            ttl_ms,
            hash_key: &self.target.key,
            id: &self.target.id,
            guards: &self.guards,
            guard_values: self.current.as_deref(),
            set,
            del,
            ops,
            conditions: self.options.conditions,
            stream: if with_other_keys { self.options.stream } else { None },
            ack: if with_other_keys { self.options.ack } else { None },
            extra_keys: if with_other_keys { self.options.delete_keys } else { &[] },
            takeovers: if with_other_keys { &self.takeovers } else { &[] },
        })
    }

    /// Takes in the script's answer: done, refused, or learned the guards' values.
    pub fn take_answer(&mut self, reply: Value) -> Result<Next> {
        let key = self.target.shown();
        let script = if self.mode == Mode::Delete && self.options.conditions.is_empty() {
            "delete_entity.lua"
        } else {
            "write_entity.lua"
        };
        Ok(match WriteReply::parse(&key, &self.target.key, script, reply)? {
            WriteReply::Done => Next::Done(Outcome::Done(None)),
            WriteReply::Appended(id) => Next::Done(Outcome::Done(Some(id))),
            WriteReply::Missing => Next::Done(Outcome::Missing),
            WriteReply::Stale(current) => {
                tracing::debug!(key = %key, "index fields moved; writing again with their current values");
                self.current = Some(current);
                Next::Again
            }
            WriteReply::Conflict { field } => {
                return Err(Error::Conflict {
                    key: key.to_string(),
                    field,
                });
            }
            WriteReply::Exists => return Err(Error::AlreadyExists { key: key.to_string() }),
            WriteReply::Unique { op, owner } => {
                // An owner already judged stale that still holds the claim
                // changed since: it is live now.
                if self.takeovers.iter().any(|t| t.op == op && t.owner == owner) {
                    return Err(self.unique_violation(op, owner));
                }
                Next::CheckOwner { op, owner }
            }
        })
    }
}
