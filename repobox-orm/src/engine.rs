//! The generic CRUD, index and TTL engine that the generated functions call.
//!
//! Every write is one Lua script (`scripts/write.lua`) that changes the hash,
//! its index entries and its TTL together. The script gets every key through
//! `KEYS`, so it cannot look up an index key from the hash itself: the engine
//! computes index keys from what it knows of the entity and tells the script
//! which field values it assumed. When the hash disagrees (an indexed field
//! moved, or the engine knew nothing), the script writes nothing and answers
//! the current values; the engine then retries with the right keys. A write
//! that moves no index entry therefore costs one round trip, one that moves an
//! entry (or must first learn where the entry is) costs two.
//!
//! ARGV of `write.lua`: a binary header, the id, then the variable parts.
//! The header (big-endian) is the mode (`c`reate, `s`ave, `u`pdate, `d`elete,
//! `e`xpire, `r`efresh: u8), the TTL in ms (u64, 0 = none), then u16 counts:
//! guard fields `ng`, fields to set `nset`, fields to delete `ndel`, index ops
//! `nidx`, conditions `ncond`, the KEYS position of a stream to `XADD` to
//! (0 = none), its field pairs `nx`, keys deleted with the entity `nextra`;
//! then per index op its kind (u8 `z`, `s`, `u`) and the KEYS positions of its
//! new and old key (u16, 0 = none). After the id come the `ng` guard names and
//! their expected values (`=value`, `-` absent, `?` unknown), the field/value
//! pairs, the deleted names, one score per index op, the condition names and
//! expected values, the stream entry's pairs, and the extra keys' positions.
//! Few arguments and one `struct.unpack` keep the script as cheap as a
//! hand-written one on the common paths: argument count is what a script pays for.

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, Script, Value};

use crate::entity::{EntityPatch, FieldWriter, RawHash, RedisEntity};
use crate::error::{Error, Result};
use crate::meta::{IndexKind, IndexMeta, KeyTemplate};
use crate::page::Page;

static WRITE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/write.lua")));
static REPAIR: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/repair.lua")));

/// How often a write retries after the hash changed under it.
///
/// A retry goes out at once: its snapshot of the indexed fields (from the
/// script's answer) only ages while it waits, so pausing would make a second
/// collision likelier, not rarer. Every retry means another writer of the same
/// entity succeeded, so the system always progresses; one writer gives up with
/// `Error::Contention` (having written nothing) only under a storm of writes
/// that move the same entity's index entries.
const MAX_ATTEMPTS: u32 = 16;

/// An entity's address: its key and id, and the key parts they were made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The hash key (`job:42`).
    pub key: String,
    /// The id that index entries hold: the key parts joined by `:`.
    pub id: String,
    parts: Vec<(&'static str, String)>,
}

impl Target {
    /// The target whose key parts are `parts`, in the key template's placeholder order.
    pub fn from_parts<E: RedisEntity>(parts: &[Cow<'_, str>]) -> Result<Self> {
        let template = &E::META.key;
        let key = template.build(parts)?;
        let fields: Vec<_> = template.placeholders().map(|(_, f)| f).collect();
        if parts.len() != fields.len() {
            return Err(Error::InvalidKeyPart {
                template: template.source,
                placeholder: "",
                value: parts.join(":"),
                reason: "has the wrong number of key parts",
            });
        }
        Ok(Target {
            key,
            id: parts.join(":"),
            parts: fields.into_iter().zip(parts.iter().map(|p| p.to_string())).collect(),
        })
    }

    /// The target whose id (key parts joined by `:`) is `id`.
    pub fn from_id<E: RedisEntity>(id: &str) -> Result<Self> {
        let parts: Vec<Cow<'_, str>> = id.split(':').map(Cow::Borrowed).collect();
        Target::from_parts::<E>(&parts)
    }

    /// The target of a whole entity.
    pub fn of<E: RedisEntity>(fields: &FieldWriter<'_>) -> Result<Self> {
        let template = &E::META.key;
        let parts = template
            .placeholders()
            .map(|(placeholder, field)| {
                fields
                    .get(field)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .map(Cow::Borrowed)
                    .ok_or(Error::InvalidKeyPart {
                        template: template.source,
                        placeholder,
                        value: String::new(),
                        reason: "is not valid UTF-8",
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Target::from_parts::<E>(&parts)
    }

    fn part(&self, field: &str) -> Option<&str> {
        self.parts.iter().find(|(f, _)| *f == field).map(|(_, v)| v.as_str())
    }
}

/// The key of an entity from its key parts (what the generated `key_for` calls).
pub fn key_for<E: RedisEntity>(parts: &[Cow<'_, str>]) -> Result<String> {
    E::META.key.build(parts)
}

fn writer_of<E: RedisEntity>(entity: &E) -> Result<FieldWriter<'_>> {
    let mut fields = FieldWriter::with_capacity(E::META.fields.len());
    entity.write_fields(&mut fields)?;
    Ok(fields)
}

/// The key of a whole entity.
pub fn entity_key<E: RedisEntity>(entity: &E) -> Result<String> {
    Ok(Target::of::<E>(&writer_of(entity)?)?.key)
}

/// The id of a whole entity (what its index entries hold).
pub fn entity_id<E: RedisEntity>(entity: &E) -> Result<String> {
    Ok(Target::of::<E>(&writer_of(entity)?)?.id)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Create,
    Save,
    Update,
    Delete,
    Expire,
    /// An update that also sets a new TTL.
    Refresh,
}

impl Mode {
    fn code(self) -> &'static str {
        match self {
            Mode::Create => "c",
            Mode::Save => "s",
            Mode::Update => "u",
            Mode::Delete => "d",
            Mode::Expire => "e",
            Mode::Refresh => "r",
        }
    }
}

/// The fields whose values decide an index key and are not part of the entity's key.
fn placeholder_fields(index: &IndexMeta, target: &Target) -> impl Iterator<Item = &'static str> {
    index
        .key
        .placeholders()
        .map(|(_, field)| field)
        .filter(|f| target.part(f).is_none())
        .collect::<Vec<_>>()
        .into_iter()
}

fn push_unique(list: &mut Vec<&'static str>, field: &'static str) {
    if !list.contains(&field) {
        list.push(field);
    }
}

/// One write in the making: which indexes it maintains, and what it knows of
/// the fields that decide their keys.
struct WritePlan<'w, 'a> {
    mode: Mode,
    target: &'w Target,
    fields: &'w FieldWriter<'a>,
    ttl: Option<Duration>,
    /// The indexes this write touches.
    indexes: Vec<&'static IndexMeta>,
    /// The guard fields: what decides the touched indexes' current keys (and scores).
    guards: Vec<&'static str>,
    /// What the hash holds in the guard fields; `None` = not known yet.
    current: Option<Vec<Option<Vec<u8>>>>,
    extras: Extras<'w>,
}

/// What a write does besides the entity and its indexes.
#[derive(Default)]
struct Extras<'w> {
    /// Fields that must hold these values (`None` = absent) for the write to happen.
    conditions: &'w [(&'static str, Option<&'w [u8]>)],
    /// A stream entry appended with the write.
    stream: Option<(&'w str, &'w [(&'w str, &'w str)])>,
    /// Keys deleted with the entity.
    delete_keys: &'w [String],
}

impl<'w, 'a> WritePlan<'w, 'a> {
    fn new<E: RedisEntity>(mode: Mode, target: &'w Target, fields: &'w FieldWriter<'a>, ttl: Option<Duration>) -> Self {
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
                if let (Mode::Update | Mode::Refresh, IndexKind::Sorted { score }) = (mode, ix.kind) {
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
            extras: Extras::default(),
        }
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
        if self.fields.touches(field) || !matches!(self.mode, Mode::Update | Mode::Refresh) {
            return self.fields.get(field);
        }
        self.before(field).flatten()
    }

    fn index_key<'v>(template: &KeyTemplate, value: impl Fn(&'static str) -> Option<&'v [u8]>) -> Result<String> {
        template.fill(|placeholder, field| {
            value(field)
                .ok_or(Error::InvalidKeyPart {
                    template: template.source,
                    placeholder,
                    value: String::new(),
                    reason: "is absent",
                })
                .and_then(|v| {
                    std::str::from_utf8(v).map_err(|_| Error::InvalidKeyPart {
                        template: template.source,
                        placeholder,
                        value: String::from_utf8_lossy(v).into_owned(),
                        reason: "is not valid UTF-8",
                    })
                })
        })
    }

    fn invocation(&self) -> Result<Cmd> {
        let t = self.target;
        let known = self.guards.is_empty() || self.current.is_some();
        // No indexed field at all: the entity is almost surely gone, and the
        // script answers `missing`. (A corrupt hash without any of them cannot
        // have index entries to maintain either.)
        let absent = !matches!(self.mode, Mode::Create | Mode::Save)
            && !self.guards.is_empty()
            && self.current.as_ref().is_some_and(|cur| cur.iter().all(Option::is_none));
        let mut keys: Vec<&str> = vec![&t.key];
        let mut index_keys: Vec<String> = Vec::new();
        // (kind, new key, old key, score) per index op; keys as positions in `index_keys`.
        let mut ops: Vec<(u8, Option<usize>, Option<usize>, String)> = Vec::new();
        if known && !absent {
            for ix in &self.indexes {
                let old = match self.mode {
                    Mode::Create | Mode::Expire => None,
                    // Keys built from corrupt values cannot hold an entry of ours.
                    _ => Self::index_key(&ix.key, |f| self.before(f).flatten()).ok(),
                };
                let new = match self.mode {
                    Mode::Delete => None,
                    Mode::Expire => old_or_current(self, ix),
                    _ => Some(Self::index_key(&ix.key, |f| self.after(f))?),
                };
                let score = match (self.mode, ix.kind) {
                    (Mode::Create | Mode::Save | Mode::Update | Mode::Refresh, IndexKind::Sorted { score }) => {
                        checked_score(score, self.after(score))?
                    }
                    _ => String::new(),
                };
                let old = old.filter(|o| Some(o) != new.as_ref());
                let mut pos = |k: Option<String>| {
                    k.map(|k| {
                        index_keys.push(k);
                        index_keys.len() - 1
                    })
                };
                let (new, old) = (pos(new), pos(old));
                ops.push((ix.kind.code().as_bytes()[0], new, old, score));
            }
        }
        keys.extend(index_keys.iter().map(String::as_str));
        let index_base = 2; // KEYS position of index_keys[0]
        let stream_pos = self.extras.stream.map_or(0, |(stream, _)| {
            keys.push(stream);
            keys.len()
        });
        let first_extra = keys.len() + 1;
        keys.extend(self.extras.delete_keys.iter().map(String::as_str));

        let (set, del): (&[_], &[_]) = match self.mode {
            Mode::Delete | Mode::Expire => (&[], &[]),
            _ => (&self.fields.set, &self.fields.del),
        };
        let ttl = match self.mode {
            Mode::Delete => 0,
            _ => self.ttl.map_or(0, |d| d.as_millis().max(1) as u64),
        };
        let conds = self.extras.conditions;
        let entry = self.extras.stream.map_or(&[][..], |(_, entry)| entry);
        let n_extra = self.extras.delete_keys.len();

        // The header: counts and positions as one binary string, which the
        // script reads with one `struct.unpack` (see `scripts/write.lua`).
        let mut header = Vec::with_capacity(25 + 5 * ops.len());
        header.push(self.mode.code().as_bytes()[0]);
        header.extend_from_slice(&ttl.to_be_bytes());
        for n in [
            self.guards.len(),
            set.len(),
            del.len(),
            ops.len(),
            conds.len(),
            stream_pos,
            entry.len(),
            n_extra,
        ] {
            header.extend_from_slice(&(n as u16).to_be_bytes());
        }
        let position = |p: Option<usize>| p.map_or(0, |i| (i + index_base) as u16);
        for (kind, new, old, _) in &ops {
            header.push(*kind);
            header.extend_from_slice(&position(*new).to_be_bytes());
            header.extend_from_slice(&position(*old).to_be_bytes());
        }

        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(WRITE.get_hash()).arg(keys.len()).arg(&keys);
        cmd.arg(header).arg(&t.id);
        cmd.arg(&self.guards);
        for (i, _) in self.guards.iter().enumerate() {
            match &self.current {
                None => cmd.arg("?"),
                Some(cur) => match &cur[i] {
                    Some(v) => cmd.arg([b"=".as_slice(), v].concat()),
                    None => cmd.arg("-"),
                },
            };
        }
        for (name, value) in set {
            cmd.arg(*name).arg(&**value);
        }
        cmd.arg(del);
        for (_, _, _, score) in &ops {
            cmd.arg(score);
        }
        for (name, _) in conds {
            cmd.arg(*name);
        }
        for (_, value) in conds {
            match value {
                Some(v) => cmd.arg([b"=".as_slice(), v].concat()),
                None => cmd.arg("-"),
            };
        }
        for (f, v) in entry {
            cmd.arg(*f).arg(*v);
        }
        for pos in first_extra..first_extra + n_extra {
            cmd.arg(pos);
        }
        Ok(cmd)
    }
}

fn old_or_current(plan: &WritePlan<'_, '_>, ix: &IndexMeta) -> Option<String> {
    WritePlan::index_key(&ix.key, |f| plan.before(f).flatten()).ok()
}

fn checked_score(field: &'static str, raw: Option<&[u8]>) -> Result<String> {
    let text = raw.and_then(|r| std::str::from_utf8(r).ok()).unwrap_or("");
    match text.parse::<f64>() {
        Ok(x) if !x.is_nan() => Ok(text.to_owned()),
        _ => Err(Error::Encode {
            field,
            message: format!("score {text:?} is not a number"),
        }),
    }
}

/// Runs `cmd` (an `EVALSHA`), loading the script on `NOSCRIPT` (after a server restart).
async fn eval<C: ConnectionLike + Send>(conn: &mut C, script: &Script, cmd: &Cmd) -> Result<Value> {
    match cmd.query_async::<Value>(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            script.load_async(conn).await?;
            Ok(cmd.query_async::<Value>(conn).await?)
        }
        other => Ok(other?),
    }
}

enum Outcome {
    Done(Option<String>),
    Missing,
}

/// What one reply of the write script means for its plan.
enum Step {
    Done(Outcome),
    /// The hash disagreed with the plan's assumption; the plan now knows better.
    Again,
}

impl WritePlan<'_, '_> {
    fn absorb(&mut self, reply: Value) -> Result<Step> {
        let key = &self.target.key;
        let items = match reply {
            Value::Int(1) => return Ok(Step::Done(Outcome::Done(None))),
            Value::Int(0) => return Ok(Step::Done(Outcome::Missing)),
            Value::Array(items) => items,
            Value::ServerError(e) => return Err(Error::from(redis::RedisError::from(e))),
            other => {
                return Err(Error::UnexpectedReply {
                    key: key.clone(),
                    detail: format!("write script answered {other:?}"),
                });
            }
        };
        let text = |v: Option<&Value>| match v {
            Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        };
        match text(items.first()).as_deref() {
            Some("ok") => Ok(Step::Done(Outcome::Done(text(items.get(1))))),
            Some("missing") => Ok(Step::Done(Outcome::Missing)),
            Some("stale") => {
                let current = items[1..]
                    .iter()
                    .map(|v| match v {
                        Value::BulkString(b) => Some(b.clone()),
                        _ => None,
                    })
                    .collect::<Vec<_>>();
                tracing::debug!(key = %key, "index fields moved; writing again with their current values");
                self.current = Some(current);
                Ok(Step::Again)
            }
            Some("conflict") => Err(Error::Conflict {
                key: key.clone(),
                field: text(items.get(1)).unwrap_or_default(),
            }),
            Some("exists") => Err(Error::AlreadyExists { key: key.clone() }),
            Some("unique") => {
                let pos: usize = text(items.get(1)).and_then(|p| p.parse().ok()).unwrap_or(1);
                let index = self.indexes.get(pos.max(1) - 1);
                Err(Error::UniqueViolation {
                    index: index.map_or("", |ix| ix.name),
                    index_key: index
                        .and_then(|ix| WritePlan::index_key(&ix.key, |f| self.after(f)).ok())
                        .unwrap_or_default(),
                    owner: text(items.get(2)).unwrap_or_default(),
                })
            }
            Some("wrongtype") => Err(Error::UnexpectedReply {
                key: text(items.get(1)).unwrap_or_else(|| key.clone()),
                detail: "the key holds the wrong kind of value".into(),
            }),
            _ => Err(Error::UnexpectedReply {
                key: key.clone(),
                detail: format!("write script answered {items:?}"),
            }),
        }
    }

    fn contention(&self) -> Error {
        Error::Contention {
            key: self.target.key.clone(),
            attempts: MAX_ATTEMPTS,
        }
    }
}

impl WritePlan<'_, '_> {
    /// The `HMGET` that learns the guard fields when the plan knows nothing of
    /// them (a delete, or a patch that moves an index entry): a plain read is
    /// far cheaper for the server than a script run that only reports them.
    fn lookup(&self) -> Option<Cmd> {
        if self.guards.is_empty() || self.current.is_some() {
            return None;
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&self.target.key).arg(&self.guards);
        Some(cmd)
    }

    fn learn(&mut self, reply: Value) -> Result<()> {
        let values = match reply {
            Value::Array(values) if values.len() == self.guards.len() => values,
            other => {
                return Err(Error::UnexpectedReply {
                    key: self.target.key.clone(),
                    detail: format!("HMGET answered {other:?}"),
                });
            }
        };
        self.current = Some(
            values
                .into_iter()
                .map(|v| match v {
                    Value::BulkString(b) => Some(b),
                    _ => None,
                })
                .collect(),
        );
        Ok(())
    }
}

async fn run_write<C: ConnectionLike + Send>(conn: &mut C, mut plan: WritePlan<'_, '_>) -> Result<Outcome> {
    if let Some(lookup) = plan.lookup() {
        let reply: Value = lookup.query_async(conn).await?;
        plan.learn(reply)?;
    }
    for _ in 0..MAX_ATTEMPTS {
        let cmd = plan.invocation()?;
        let reply = eval(conn, &WRITE, &cmd).await?;
        if let Step::Done(outcome) = plan.absorb(reply)? {
            return Ok(outcome);
        }
    }
    Err(plan.contention())
}

/// How many writes one pipeline of a bulk call carries.
const BULK_CHUNK: usize = 500;

/// Runs many writes, each atomic on its own, as pipelines of `BULK_CHUNK`:
/// one round trip per chunk, plus one for the writes that had to learn where
/// their index entries are. Returns each write's outcome in order.
async fn run_writes<C: ConnectionLike + Send>(
    conn: &mut C,
    mut plans: Vec<WritePlan<'_, '_>>,
) -> Result<Vec<Result<Outcome>>> {
    let mut results: Vec<Option<Result<Outcome>>> = (0..plans.len()).map(|_| None).collect();
    let lookups: Vec<(usize, Cmd)> = plans
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p.lookup()?)))
        .collect();
    for chunk in lookups.chunks(BULK_CHUNK) {
        let mut pipe = redis::pipe();
        for (_, cmd) in chunk {
            pipe.add_command(cmd.clone());
        }
        let replies: Vec<Value> = pipe.ignore_errors().query_async(conn).await?;
        for (&(i, _), reply) in chunk.iter().zip(replies) {
            if let Err(e) = plans[i].learn(reply) {
                results[i] = Some(Err(e));
            }
        }
    }
    let mut pending: Vec<usize> = (0..plans.len()).filter(|&i| results[i].is_none()).collect();
    let mut loaded = false;
    for _ in 0..MAX_ATTEMPTS {
        if pending.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for chunk in pending.chunks(BULK_CHUNK) {
            let mut pipe = redis::pipe();
            let mut sent = Vec::with_capacity(chunk.len());
            for &i in chunk {
                match plans[i].invocation() {
                    Ok(cmd) => {
                        pipe.add_command(cmd);
                        sent.push(i);
                    }
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            if sent.is_empty() {
                continue;
            }
            let replies: Vec<Value> = pipe.ignore_errors().query_async(conn).await?;
            if replies.len() != sent.len() {
                return Err(Error::UnexpectedReply {
                    key: plans[sent[0]].target.key.clone(),
                    detail: format!("{} replies to {} writes", replies.len(), sent.len()),
                });
            }
            for (i, reply) in sent.into_iter().zip(replies) {
                // A restarted server lost the script: load it and send again.
                if let Value::ServerError(e) = &reply
                    && e.kind() == Some(redis::ServerErrorKind::NoScript)
                {
                    if !loaded {
                        WRITE.load_async(conn).await?;
                        loaded = true;
                    }
                    next.push(i);
                    continue;
                }
                match plans[i].absorb(reply) {
                    Ok(Step::Done(outcome)) => results[i] = Some(Ok(outcome)),
                    Ok(Step::Again) => next.push(i),
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
        }
        pending = next;
    }
    for i in pending {
        results[i] = Some(Err(plans[i].contention()));
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every write has an outcome"))
        .collect())
}

/// Creates many entities, each atomically with its indexes and TTL, pipelined
/// in chunks (one round trip per 500). The outer error is the connection's;
/// the inner results say, per entity, `Ok` or why it was not created.
pub async fn create_many<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    entities: &[E],
) -> Result<Vec<Result<()>>> {
    bulk_upsert(conn, entities, Mode::Create).await
}

/// Saves many entities, each atomically with its indexes and TTL, pipelined in
/// chunks (one round trip per 500, plus one for those whose index entries moved).
pub async fn save_many<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    entities: &[E],
) -> Result<Vec<Result<()>>> {
    bulk_upsert(conn, entities, Mode::Save).await
}

async fn bulk_upsert<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    entities: &[E],
    mode: Mode,
) -> Result<Vec<Result<()>>> {
    let mut results: Vec<Option<Result<()>>> = (0..entities.len()).map(|_| None).collect();
    let mut prepared = Vec::with_capacity(entities.len());
    for (i, entity) in entities.iter().enumerate() {
        match writer_of(entity).and_then(|fields| Ok((Target::of::<E>(&fields)?, fields))) {
            Ok((target, fields)) => prepared.push((i, target, fields)),
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    let plans = prepared
        .iter()
        .map(|(_, target, fields)| WritePlan::new::<E>(mode, target, fields, E::META.ttl))
        .collect();
    let outcomes = run_writes(conn, plans).await?;
    for ((i, _, _), outcome) in prepared.iter().zip(outcomes) {
        results[*i] = Some(outcome.map(drop));
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every entity has an outcome"))
        .collect())
}

/// Deletes many entities by id (key parts joined by `:`), each atomically with
/// its index entries; `true` where one existed. Two pipelined round trips per
/// 500 for entities with indexes on non-key fields (the first learns where
/// their entries are), one otherwise.
pub async fn delete_many<E: RedisEntity, C: ConnectionLike + Send, S: AsRef<str>>(
    conn: &mut C,
    ids: &[S],
) -> Result<Vec<bool>> {
    let targets = ids
        .iter()
        .map(|id| Target::from_id::<E>(id.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    let fields = FieldWriter::default();
    let plans = targets
        .iter()
        .map(|t| WritePlan::new::<E>(Mode::Delete, t, &fields, None))
        .collect();
    run_writes(conn, plans)
        .await?
        .into_iter()
        .map(|r| r.map(|o| matches!(o, Outcome::Done(_))))
        .collect()
}

/// Creates the entity; `Err(AlreadyExists)` if its key is taken,
/// `Err(UniqueViolation)` if a unique value is. Writes nothing on error.
pub async fn create<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, entity: &E) -> Result<()> {
    let fields = writer_of(entity)?;
    let target = Target::of::<E>(&fields)?;
    let plan = WritePlan::new::<E>(Mode::Create, &target, &fields, E::META.ttl);
    run_write(conn, plan).await.map(drop)
}

/// Creates or replaces the entity's fields, moving index entries whose fields
/// changed and setting the full TTL. Fields other clients added are kept.
pub async fn save<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, entity: &E) -> Result<()> {
    let fields = writer_of(entity)?;
    let target = Target::of::<E>(&fields)?;
    let plan = WritePlan::new::<E>(Mode::Save, &target, &fields, E::META.ttl);
    run_write(conn, plan).await.map(drop)
}

/// Applies a patch to an existing entity; `Err(NotFound)` if it is absent
/// (never re-creates it). Keeps the remaining TTL.
pub async fn update<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    target: &Target,
    patch: &E::Patch,
) -> Result<()> {
    write_patch::<E, C>(conn, target, patch, Mode::Update, E::META.ttl, &[]).await
}

/// A patch write of `mode` that needs the entity to exist.
async fn write_patch<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    target: &Target,
    patch: &E::Patch,
    mode: Mode,
    ttl: Option<Duration>,
    conditions: &[(&'static str, Option<&[u8]>)],
) -> Result<()> {
    let mut fields = FieldWriter::default();
    patch.write_fields(&mut fields)?;
    let mut plan = WritePlan::new::<E>(mode, target, &fields, ttl);
    plan.extras.conditions = conditions;
    must_exist(run_write(conn, plan).await?, target)
}

fn must_exist(outcome: Outcome, target: &Target) -> Result<()> {
    match outcome {
        Outcome::Done(_) => Ok(()),
        Outcome::Missing => Err(Error::NotFound {
            key: target.key.clone(),
        }),
    }
}

/// Deletes the entity and its index entries; `false` if it was absent.
pub async fn delete<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, target: &Target) -> Result<bool> {
    let fields = FieldWriter::default();
    let plan = WritePlan::new::<E>(Mode::Delete, target, &fields, None);
    Ok(matches!(run_write(conn, plan).await?, Outcome::Done(_)))
}

/// Creates the entity and appends `entry` to `stream` in the same atomic
/// write; returns the stream entry id. A second create of the same entity
/// fails with `AlreadyExists` and appends nothing, so an entity is never
/// enqueued twice.
pub async fn create_and_append<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    entity: &E,
    stream: &str,
    entry: &[(&str, &str)],
) -> Result<String> {
    let fields = writer_of(entity)?;
    let target = Target::of::<E>(&fields)?;
    let mut plan = WritePlan::new::<E>(Mode::Create, &target, &fields, E::META.ttl);
    plan.extras.stream = Some((stream, entry));
    match run_write(conn, plan).await? {
        Outcome::Done(Some(id)) => Ok(id),
        _ => Err(Error::UnexpectedReply {
            key: target.key.clone(),
            detail: "XADD gave no entry id".into(),
        }),
    }
}

/// Applies a patch only if each field in `conditions` holds the given value
/// (`None` = absent) at the time of the write; `Err(Conflict)` names the first
/// field that did not, `Err(NotFound)` if the entity is absent.
pub async fn update_if<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    target: &Target,
    patch: &E::Patch,
    conditions: &[(&'static str, Option<&[u8]>)],
) -> Result<()> {
    write_patch::<E, C>(conn, target, patch, Mode::Update, E::META.ttl, conditions).await
}

/// Applies a patch and sets the entity's TTL to `ttl` in one atomic write
/// (a session's `expires_at` and its TTL move together); `Err(NotFound)` if absent.
pub async fn update_and_expire<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    target: &Target,
    patch: &E::Patch,
    ttl: Duration,
) -> Result<()> {
    write_patch::<E, C>(conn, target, patch, Mode::Refresh, Some(ttl), &[]).await
}

/// Deletes the entity, its index entries and the keys in `also` (data that
/// belongs to it, like a job's output list) atomically; `false` if it was absent.
pub async fn delete_with<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    target: &Target,
    also: &[String],
) -> Result<bool> {
    let fields = FieldWriter::default();
    let mut plan = WritePlan::new::<E>(Mode::Delete, target, &fields, None);
    plan.extras.delete_keys = also;
    Ok(matches!(run_write(conn, plan).await?, Outcome::Done(_)))
}

/// Sets the entity's TTL to `ttl` (index keys are lengthened to outlive it);
/// `Err(NotFound)` if it is absent.
pub async fn expire_in<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    target: &Target,
    ttl: Duration,
) -> Result<()> {
    let fields = FieldWriter::default();
    let plan = WritePlan::new::<E>(Mode::Expire, target, &fields, Some(ttl));
    must_exist(run_write(conn, plan).await?, target)
}

fn decode_reply<E: RedisEntity>(key: &str, reply: &Value) -> Result<Option<E>> {
    let hash = RawHash::from_reply(key, reply)?;
    if hash.is_empty() {
        return Ok(None);
    }
    E::read_fields(key, &hash).map(Some)
}

/// Reads the entity at `key`; `None` if it is absent or expired.
pub async fn get<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<Option<E>> {
    let reply: Value = redis::cmd("HGETALL").arg(key).query_async(conn).await?;
    decode_reply(key, &reply)
}

async fn get_keys<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, keys: &[String]) -> Result<Vec<Option<E>>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("HGETALL").arg(key);
    }
    let replies: Vec<Value> = pipe.ignore_errors().query_async(conn).await?;
    if replies.len() != keys.len() {
        return Err(Error::UnexpectedReply {
            key: keys[0].clone(),
            detail: format!("{} replies to {} commands", replies.len(), keys.len()),
        });
    }
    keys.iter().zip(&replies).map(|(k, r)| decode_reply(k, r)).collect()
}

/// Reads the entities with these ids (key parts joined by `:`) in one round
/// trip; `None` where one is absent. Every id is validated before any I/O.
pub async fn get_many<E: RedisEntity, C: ConnectionLike + Send, S: AsRef<str>>(
    conn: &mut C,
    ids: &[S],
) -> Result<Vec<Option<E>>> {
    let keys = ids
        .iter()
        .map(|id| E::META.key.key_from_id(id.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    get_keys(conn, &keys).await
}

/// Whether the entity at `key` exists.
pub async fn exists<C: ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<bool> {
    Ok(redis::cmd("EXISTS").arg(key).query_async::<i64>(conn).await? == 1)
}

/// The entity's remaining TTL; `None` if it is absent or has no TTL.
pub async fn ttl<C: ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<Option<Duration>> {
    let ms: i64 = redis::cmd("PTTL").arg(key).query_async(conn).await?;
    Ok(u64::try_from(ms).ok().map(Duration::from_millis))
}

/// Reads the entities of `ids` from the index at `index_key`, dropping (and
/// repairing) entries whose hash is gone; also says how many were gone.
async fn load_members<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
    ids: Vec<String>,
) -> Result<(Vec<E>, usize)> {
    let keys = ids
        .iter()
        .map(|id| E::META.key.key_from_id(id))
        .collect::<Result<Vec<_>>>();
    // An id that is not a valid key part cannot have been written by repobox;
    // it is skipped rather than failing the whole page.
    let (ids, keys): (Vec<String>, Vec<String>) = match keys {
        Ok(keys) => (ids, keys),
        Err(_) => ids
            .into_iter()
            .filter_map(|id| E::META.key.key_from_id(&id).ok().map(|k| (id, k)))
            .unzip(),
    };
    let loaded = get_keys::<E, C>(conn, &keys).await?;
    let mut ghosts = Vec::new();
    let mut found = Vec::with_capacity(loaded.len());
    for ((id, key), entity) in ids.into_iter().zip(keys).zip(loaded) {
        match entity {
            Some(e) => found.push(e),
            None => ghosts.push((id, key)),
        }
    }
    let n = ghosts.len();
    if n > 0 {
        repair(conn, index, index_key, &ghosts).await?;
    }
    Ok((found, n))
}

async fn repair<C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
    ghosts: &[(String, String)],
) -> Result<()> {
    tracing::debug!(
        index = index.name,
        key = index_key,
        ghosts = ghosts.len(),
        "repairing index"
    );
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(REPAIR.get_hash()).arg(ghosts.len() + 1).arg(index_key);
    for (_, key) in ghosts {
        cmd.arg(key);
    }
    cmd.arg(index.kind.code());
    for (id, _) in ghosts {
        cmd.arg(id);
    }
    eval(conn, &REPAIR, &cmd).await?;
    Ok(())
}

/// How many read-repair passes a page makes before it settles for a short page.
const REPAIR_PASSES: usize = 4;

/// A page of a sorted index: two round trips (`ZRANGE`, then one pipeline of
/// `HGETALL`s), plus a repair and a re-read when it met entries whose hash is gone.
pub async fn sorted_page<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
    page: Page,
) -> Result<Vec<E>> {
    if page.limit == 0 {
        return Ok(Vec::new());
    }
    let mut pass = 0;
    loop {
        pass += 1;
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(index_key)
            .arg(page.zrange_args())
            .query_async(conn)
            .await?;
        let (found, ghosts) = load_members::<E, C>(conn, index, index_key, ids).await?;
        // After a repair the page is read again, so that it is full.
        if ghosts == 0 || pass > REPAIR_PASSES {
            return Ok(found);
        }
    }
}

/// Every member of a set index: `SMEMBERS`, then one pipeline of `HGETALL`s.
pub async fn set_members<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
) -> Result<Vec<E>> {
    let ids: Vec<String> = redis::cmd("SMEMBERS").arg(index_key).query_async(conn).await?;
    Ok(load_members::<E, C>(conn, index, index_key, ids).await?.0)
}

/// The entity that a unique index maps its value to.
pub async fn unique_get<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
) -> Result<Option<E>> {
    let id: Option<String> = redis::cmd("GET").arg(index_key).query_async(conn).await?;
    let Some(id) = id else { return Ok(None) };
    let (mut found, _) = load_members::<E, C>(conn, index, index_key, vec![id]).await?;
    Ok(found.pop())
}

/// The number of live entities in an index. For TTL entities every member is
/// checked (and dead ones repaired away), so expired ones are never counted.
pub async fn count<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
) -> Result<u64> {
    let (card, members) = match index.kind {
        IndexKind::Sorted { .. } => ("ZCARD", ["ZRANGE", "0", "-1"].as_slice()),
        IndexKind::Set => ("SCARD", ["SMEMBERS"].as_slice()),
        IndexKind::Unique => ("EXISTS", ["GET"].as_slice()),
    };
    if E::META.ttl.is_none() {
        return Ok(redis::cmd(card).arg(index_key).query_async(conn).await?);
    }
    let mut cmd = redis::cmd(members[0]);
    cmd.arg(index_key).arg(&members[1..]);
    let ids: Vec<String> = match index.kind {
        IndexKind::Unique => cmd.query_async::<Option<String>>(conn).await?.into_iter().collect(),
        _ => cmd.query_async(conn).await?,
    };
    let keyed: Vec<(String, String)> = ids
        .into_iter()
        .filter_map(|id| E::META.key.key_from_id(&id).ok().map(|k| (id, k)))
        .collect();
    if keyed.is_empty() {
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    for (_, key) in &keyed {
        pipe.cmd("EXISTS").arg(key);
    }
    let alive: Vec<i64> = pipe.query_async(conn).await?;
    let ghosts: Vec<(String, String)> = keyed
        .into_iter()
        .zip(&alive)
        .filter(|(_, a)| **a == 0)
        .map(|(g, _)| g)
        .collect();
    if !ghosts.is_empty() {
        repair(conn, index, index_key, &ghosts).await?;
    }
    Ok(alive.iter().filter(|a| **a == 1).count() as u64)
}

/// Builds an index key from query arguments (placeholder order), validating each part.
pub fn index_key(index: &IndexMeta, parts: &[Cow<'_, str>]) -> Result<String> {
    index.key.build(parts)
}

/// What [`sweep`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// The index's name.
    pub index: &'static str,
    /// Index keys looked at.
    pub keys: u64,
    /// Entries looked at.
    pub entries: u64,
    /// Entries removed because their entity's hash is gone.
    pub removed: u64,
}

/// The `SCAN MATCH` pattern of a template: placeholders become `*`, glob
/// characters in the literal text are escaped.
fn scan_pattern(template: &KeyTemplate) -> String {
    let mut pattern = String::new();
    for segment in template.segments {
        match segment {
            crate::meta::Segment::Lit(text) => {
                for c in text.chars() {
                    if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                        pattern.push('\\');
                    }
                    pattern.push(c);
                }
            }
            crate::meta::Segment::Field { .. } => pattern.push('*'),
        }
    }
    pattern
}

/// Walks every key of an index (`SCAN`) and removes the entries whose entity
/// hash is gone: the offline counterpart of the read repair that pages do.
/// Safe to run while the application writes (an entry is only removed if its
/// hash is still absent when the repair runs).
pub async fn sweep<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &'static IndexMeta,
) -> Result<SweepReport> {
    let mut report = SweepReport {
        index: index.name,
        ..SweepReport::default()
    };
    let redis_type = match index.kind {
        IndexKind::Sorted { .. } => "zset",
        IndexKind::Set => "set",
        IndexKind::Unique => "string",
    };
    let pattern = scan_pattern(&index.key);
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(500)
            .arg("TYPE")
            .arg(redis_type)
            .query_async(conn)
            .await?;
        for key in keys {
            report.keys += 1;
            let ids: Vec<String> = match index.kind {
                IndexKind::Sorted { .. } => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query_async(conn).await?,
                IndexKind::Set => redis::cmd("SMEMBERS").arg(&key).query_async(conn).await?,
                IndexKind::Unique => redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<String>>(conn)
                    .await?
                    .into_iter()
                    .collect(),
            };
            report.entries += ids.len() as u64;
            for chunk in ids.chunks(500) {
                let keyed: Vec<(String, String)> = chunk
                    .iter()
                    .filter_map(|id| E::META.key.key_from_id(id).ok().map(|k| (id.clone(), k)))
                    .collect();
                if keyed.is_empty() {
                    continue;
                }
                let mut pipe = redis::pipe();
                for (_, k) in &keyed {
                    pipe.cmd("EXISTS").arg(k);
                }
                let alive: Vec<i64> = pipe.query_async(conn).await?;
                let ghosts: Vec<(String, String)> = keyed
                    .into_iter()
                    .zip(alive)
                    .filter(|(_, a)| *a == 0)
                    .map(|(g, _)| g)
                    .collect();
                if !ghosts.is_empty() {
                    let before = ghosts.len() as u64;
                    repair(conn, index, &key, &ghosts).await?;
                    report.removed += before;
                }
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(report)
}
