//! The one path that checks index members against their entities: every index
//! read and every sweep goes through it. A member is live when its hash
//! decodes and its entity still belongs under the index key (and, in a sorted
//! index, has the member's score). Otherwise it is gone (no hash), mismatched
//! (the entity moved on, or the member was written by hand), needs a new
//! score, or is bad (undecodable hash, or not an id): the first three are
//! repaired by `repair.lua` only if the entity is still as it was seen; a bad
//! one is reported and left alone.

use std::collections::HashSet;

use redis::aio::ConnectionLike;

use crate::engine::encoding::Encoded;
use crate::engine::encoding::{decode, decode_previous};
use crate::engine::pipeline;
use crate::engine::read::hgetall;
use crate::engine::rekey;
use crate::engine::target::fill;
use crate::engine::write::route;
use crate::entity::{RawHash, RedisEntity};
use crate::error::{Error, Result, Shown};
use crate::meta::{IndexKind, IndexMeta};
use crate::scripts::REPAIR;
use crate::scripts::repair::{self, MemberRepair, RepairAction, RepairCall};

/// An index member as Redis holds it.
pub(crate) struct Member {
    pub raw: Vec<u8>,
    /// Its score, in a sorted index read with scores.
    pub score: Option<f64>,
}

/// What a check found.
pub(crate) struct Verified<E> {
    /// The live entities, in member order.
    pub live: Vec<E>,
    /// For each of `live`, its member's position in the members checked.
    pub at: Vec<usize>,
    /// One error per bad member.
    pub errors: Vec<Error>,
    /// Members whose entity is gone.
    pub gone: u64,
    /// Members whose entity no longer belongs under the key.
    pub mismatched: u64,
    /// Sorted members whose score was not their entity's.
    pub rescored: u64,
}

impl<E> Verified<E> {
    /// How many members needed a repair (made or not).
    pub fn repairs(&self) -> u64 {
        self.gone + self.mismatched + self.rescored
    }
}

pub(crate) enum Action {
    Gone,
    Mismatch,
    Rescore(String),
    /// Add a missing member (with its score, in a sorted index).
    Add(String),
}

pub(crate) struct Repair {
    pub id: String,
    pub hash_key: String,
    pub action: Action,
    /// What the engine saw in [`check_fields`], in order.
    pub seen: Vec<Option<Vec<u8>>>,
}

/// The fields whose values decide where a member belongs: the index key's
/// placeholders, and the score of a sorted index.
pub(crate) fn check_fields(index: &IndexMeta) -> Vec<&'static str> {
    let mut fields: Vec<&'static str> = index.key.placeholders().map(|(_, f)| f).collect();
    if let IndexKind::Sorted { score } = index.kind
        && !fields.contains(&score)
    {
        fields.push(score);
    }
    fields
}

fn bad_member<E: RedisEntity>(index_key: &str, raw: &[u8], reason: String) -> Error {
    let member = String::from_utf8_lossy(raw);
    let member = if E::META.key.secret {
        member.chars().take(8).chain(['…']).collect()
    } else {
        member.into_owned()
    };
    Error::BadIndexMember {
        index_key: index_key.to_owned(),
        member: Shown::new(&member),
        reason,
    }
}

/// Checks `members` of the index at `index_key` against their entities (one
/// pipeline of `HGETALL`s) and, when `repair` is set, repairs what needs it
/// (one script call, when anything does). `from_query`: the key was built
/// from a query's arguments (canonical), so stored bytes that match it show a
/// member belongs without re-encoding the entity. `listed`: the entities
/// listed by an earlier check of the same read (a read merging an index key
/// and its previous key), which this one skips, and adds to. Callers chunk
/// what they pass.
pub(crate) async fn verify<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
    members: Vec<Member>,
    repair: bool,
    from_query: bool,
    listed: Option<&mut HashSet<String>>,
) -> Result<Verified<E>> {
    let mut out = Verified {
        live: Vec::with_capacity(members.len()),
        at: Vec::with_capacity(members.len()),
        errors: Vec::new(),
        gone: 0,
        mismatched: 0,
        rescored: 0,
    };
    let fields = check_fields(index);
    let mut keyed = Vec::with_capacity(members.len());
    let mut position = Vec::with_capacity(members.len());
    for (n, member) in members.iter().enumerate() {
        let id = match std::str::from_utf8(&member.raw) {
            Ok(id) => id,
            Err(_) => {
                out.errors
                    .push(bad_member::<E>(index_key, &member.raw, "is not UTF-8".into()));
                continue;
            }
        };
        match rekey::member_key(E::META, id) {
            Ok((key, at_previous)) => {
                keyed.push((id, key, member.score, at_previous));
                position.push(n);
            }
            Err(e) => {
                let reason = if E::META.key.secret {
                    "is not an id of the entity".to_owned()
                } else {
                    e.to_string()
                };
                out.errors.push(bad_member::<E>(index_key, &member.raw, reason));
            }
        }
    }
    if keyed.is_empty() {
        return Ok(out);
    }
    let cmds: Vec<redis::Cmd> = keyed.iter().map(|(_, key, _, _)| hgetall(key)).collect();
    let mut replies = pipeline::query(conn, &cmds).await?;
    if replies.len() != keyed.len() {
        return Err(Error::UnexpectedReply {
            key: index_key.to_owned(),
            detail: format!("{} replies to {} reads", replies.len(), keyed.len()),
        });
    }
    if E::META.previous.is_some() {
        rekey::read_previous_members::<E, C>(conn, &mut keyed, &mut replies).await?;
    }
    // An entity between two keys may be named by two members (or by a
    // member of each of two index keys a read merges): it is listed once.
    let mut own = HashSet::new();
    let (listed, dedupe) = match listed {
        Some(listed) => (listed, true),
        None => (&mut own, E::META.previous.is_some()),
    };
    let mut repairs = Vec::new();
    for (((id, key, score, at_previous), reply), n) in keyed.into_iter().zip(&replies).zip(position) {
        let shown = E::META.key.shown(&key);
        let hash = match RawHash::from_reply(&shown, reply) {
            Ok(hash) => hash,
            Err(e) => {
                out.errors.push(e);
                continue;
            }
        };
        let seen = || fields.iter().map(|f| hash.get(f).map(<[u8]>::to_vec)).collect();
        let action = if hash.is_empty() {
            Action::Gone
        } else {
            let decoded = match at_previous {
                false => decode::<E>(&key, &shown, &hash),
                true => decode_previous::<E>(&key, &shown, &hash),
            };
            let entity = match decoded {
                Ok(entity) => entity,
                Err(e) => {
                    out.errors.push(e);
                    continue;
                }
            };
            let listed_as = if dedupe {
                rekey::key_of(&E::META.key, &hash)
            } else {
                None
            };
            if listed_as.as_ref().is_some_and(|k| listed.contains(k)) {
                continue;
            }
            let verdict = match from_query && belongs_as_stored(&hash, index, index_key, score) {
                true => Ok(None),
                false => belongs(&entity, index, index_key, score),
            };
            match verdict {
                Ok(None) => {
                    listed.extend(listed_as);
                    out.live.push(entity);
                    out.at.push(n);
                    continue;
                }
                Ok(Some(action)) => action,
                Err(e) => {
                    out.errors.push(e);
                    continue;
                }
            }
        };
        repairs.push(Repair {
            id: id.to_owned(),
            hash_key: key,
            action,
            seen: seen(),
        });
    }
    // A check counts what a second look sees again; a repair's script
    // checks each member inside itself.
    let seen_again = if repair || from_query {
        vec![true; repairs.len()]
    } else {
        super::confirm(conn, index, index_key, &fields, &repairs).await?
    };
    for (r, _) in repairs.iter().zip(seen_again).filter(|(_, again)| *again) {
        match r.action {
            Action::Gone => out.gone += 1,
            Action::Mismatch => out.mismatched += 1,
            Action::Rescore(_) => out.rescored += 1,
            Action::Add(_) => {}
        }
    }
    if repair && !repairs.is_empty() {
        match run_repair(conn, index, index_key, &fields, &repairs, 0).await {
            Ok(()) => {}
            // A read repairs on the side: on a read-only replica, or when
            // the repair fails, the read still answers (without the members
            // it found wrong); a sweep that was asked to repair fails.
            Err(e) if from_query => {
                tracing::warn!(index = index.name, key = index_key, error = %e, "could not repair an index while reading it")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Whether the stored bytes alone show that the member belongs: its fields
/// fill `index_key` exactly and its score field parses to the member's score.
/// Only for an `index_key` built from a query, which is in canonical form, so
/// that equal bytes mean equal values; anything else takes the full check.
fn belongs_as_stored(hash: &RawHash<'_>, index: &IndexMeta, index_key: &str, score: Option<f64>) -> bool {
    if fill(&index.key, |f| hash.get(f)).ok().as_deref() != Some(index_key) {
        return false;
    }
    match (index.kind, score) {
        (IndexKind::Sorted { score: field }, Some(held)) => hash
            .get(field)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|t| t.parse::<f64>().ok())
            .is_some_and(|x| x == held),
        _ => true,
    }
}

/// `None` when the entity belongs under `index_key` with `score`; else what to do.
fn belongs<E: RedisEntity>(
    entity: &E,
    index: &IndexMeta,
    index_key: &str,
    score: Option<f64>,
) -> Result<Option<Action>> {
    let encoded = Encoded::plain(entity)?;
    match encoded.index_key(&index.key) {
        Ok(key) if key == index_key => {}
        _ => return Ok(Some(Action::Mismatch)),
    }
    if let (IndexKind::Sorted { score: field }, Some(held)) = (index.kind, score) {
        let text = encoded.fields.get(field).and_then(|b| std::str::from_utf8(b).ok());
        match text.and_then(|t| t.parse::<f64>().ok().filter(|x| !x.is_nan()).map(|x| (t, x))) {
            Some((_, want)) if want == held => {}
            Some((t, _)) => return Ok(Some(Action::Rescore(t.to_owned()))),
            None => return Ok(Some(Action::Mismatch)),
        }
    }
    Ok(None)
}

pub(crate) async fn run_repair<C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
    fields: &[&'static str],
    repairs: &[Repair],
    ttl_ms: u64,
) -> Result<()> {
    tracing::debug!(
        index = index.name,
        key = index_key,
        members = repairs.len(),
        "repairing index"
    );
    let keys: Vec<&str> = std::iter::once(index_key)
        .chain(repairs.iter().map(|r| r.hash_key.as_str()))
        .collect();
    // The members' hashes are in other cluster slots than the index key.
    if route::splits(conn, keys.iter().copied()) {
        return super::ordered::repair_ordered(conn, index, index_key, fields, repairs, ttl_ms).await;
    }
    let members: Vec<MemberRepair<'_>> = repairs
        .iter()
        .map(|r| MemberRepair {
            id: &r.id,
            hash_key: &r.hash_key,
            action: match &r.action {
                Action::Gone => RepairAction::Gone,
                Action::Mismatch => RepairAction::Mismatch,
                Action::Rescore(score) => RepairAction::Rescore(score),
                Action::Add(score) => RepairAction::Add(score),
            },
            seen: &r.seen,
        })
        .collect();
    let cmd = RepairCall {
        index_key,
        kind: index.kind,
        ttl_ms,
        fields,
        members: &members,
    }
    .command();
    let reply = pipeline::send_loading(conn, &REPAIR, &cmd, &mut pipeline::Reloads::default()).await?;
    match repair::parse(index_key, reply) {
        // A connection the engine cannot see into refused it across slots.
        Err(Error::Redis(e)) if crate::engine::pipeline::is_refused_across_slots(&e) => {
            super::ordered::repair_ordered(conn, index, index_key, fields, repairs, ttl_ms).await
        }
        other => other.map(drop),
    }
}
