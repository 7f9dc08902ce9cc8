//! Moving entities from their previous key to their key, each with its
//! index entries and its TTL.
//!
//! Where every key of a move is in one slot (one server, or keys a cluster
//! keeps together), `rekey.lua` moves it in one script, only while the
//! previous hash is still what was read. Across slots the move is
//! single-slot steps in an order that never loses the entity and never
//! brings back a deleted one:
//!
//! 1. the hash is written at the key, unless the key is taken (another
//!    mover, or a write, got there first) or its tombstone says the entity
//!    was deleted since it was read (deletes of an entity that has a
//!    previous key leave one first, in the key's slot);
//! 2. the new index entries are added where absent (`ZADD NX`: an entry a
//!    write has set since is kept);
//! 3. the previous index entries are removed;
//! 4. the previous hash is deleted, only if it still holds what was read
//!    (else the move starts again, replacing the hash it placed).
//!
//! After a crash between steps both hashes may exist with the same fields:
//! reads take the key's, and the next move (of the migration, or of a
//! write) finishes the job; the previous hash goes last, so that a move
//! that stopped is found again by the walk of previous keys.

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};

use super::{id_of, key_of};
use crate::engine::pipeline::{self, Reloads};
use crate::engine::write::route::{Route, Router};
use crate::entity::RawHash;
use crate::error::{Error, Result};
use crate::meta::{EntityMeta, IndexKind, IndexMeta};
use crate::scripts::REKEY;
use crate::scripts::rekey::{self, Entry, MoveAnswer};
use crate::store::slot::key_slot;

/// How long a tombstone outlives a delete: longer than any mover holds a
/// copy of a hash between reading it and placing it.
const TOMBSTONE_MS: u64 = 10 * 60 * 1000;

/// How often a move whose previous hash keeps changing is tried.
const ATTEMPTS: u32 = 8;

/// One entity to move: its previous key and, for a write, the key the
/// write is for (a previous hash whose fields give another key is another
/// entity's and is left alone).
pub(crate) struct Wanted {
    pub old: String,
    pub new: Option<String>,
}

/// What a move did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moved {
    /// Nothing at the previous key.
    Absent,
    /// Moved.
    Done,
    /// The key was taken: the previous hash was removed.
    Taken,
    /// The previous key holds another entity, or a hash that gives no key.
    Other,
    /// The entity was deleted while it was being moved: nothing placed.
    Deleted,
}

/// The key of the tombstone a delete of the entity at `key` leaves: in the
/// key's slot (after its hash tag, or with the key as its tag).
pub(crate) fn tombstone(key: &str) -> String {
    let tagged = format!("repobox:gone:{key}");
    if key_slot(tagged.as_bytes()) == key_slot(key.as_bytes()) {
        return tagged;
    }
    format!("repobox:gone:{{{key}}}")
}

/// The `SET` of the tombstone for the entity at `key`.
pub(crate) fn tombstone_command(key: &str) -> Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(tombstone(key)).arg(1).arg("PX").arg(TOMBSTONE_MS);
    cmd
}

/// A hash's field, value pairs as read.
pub(super) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// One move in the making, from the previous hash as read.
pub(super) struct Plan {
    pub old: String,
    pub old_id: String,
    pub new: String,
    pub new_id: String,
    pub hash: Pairs,
    /// When the hash expires, in Unix ms (0: never).
    pub expire_at_ms: u64,
    pub entries: Vec<Entry>,
    /// The index of each of `entries`.
    pub indexes: Vec<&'static IndexMeta>,
    /// The entries under the indexes' previous templates, removed.
    pub previous_entries: Vec<Entry>,
    /// A hash this mover placed at the key, which a later attempt replaces.
    pub placed: Option<Pairs>,
}

/// Reads a previous hash: `Err(moved)` when there is nothing to move.
fn plan(
    meta: &'static EntityMeta,
    wanted: &Wanted,
    reply: &Value,
    expires: &Value,
) -> Result<std::result::Result<Plan, Moved>> {
    let Some(previous) = &meta.previous else {
        return Ok(Err(Moved::Absent));
    };
    // A key of another type at the previous key is not an entity of ours.
    if matches!(reply, Value::ServerError(e) if e.code() == "WRONGTYPE") {
        return Ok(Err(Moved::Other));
    }
    // An absolute expiry: a move keeps it whenever it lands. A hash that
    // expired between the two reads is gone.
    let expire_at_ms = match expires {
        Value::Int(-2) => return Ok(Err(Moved::Absent)),
        Value::Int(ms) => u64::try_from(*ms).unwrap_or(0),
        _ => 0,
    };
    let hash = RawHash::from_reply(&previous.shown(&wanted.old), reply)?;
    if hash.is_empty() {
        return Ok(Err(Moved::Absent));
    }
    let (Some(new), Some(new_id), Some(old_id)) = (
        key_of(&meta.key, &hash),
        id_of(&meta.key, &hash),
        id_of(previous, &hash),
    ) else {
        return Ok(Err(Moved::Other));
    };
    if key_of(previous, &hash).as_deref() != Some(&wanted.old) || wanted.new.as_ref().is_some_and(|w| *w != new) {
        return Ok(Err(Moved::Other));
    }
    let (indexes, entries) = meta
        .indexes
        .iter()
        .filter_map(|ix| {
            let key = key_of(&ix.key, &hash)?;
            let score = match ix.kind {
                IndexKind::Sorted { score } => {
                    let text = std::str::from_utf8(hash.get(score)?).ok()?;
                    text.parse::<f64>().ok().filter(|x| !x.is_nan())?;
                    Some(text.to_owned())
                }
                _ => None,
            };
            Some((
                ix,
                Entry {
                    key,
                    kind: ix.kind,
                    score,
                    previous: false,
                },
            ))
        })
        .unzip();
    // The entries under an index's previous template that the hash gives
    // (not one that is also a key of the index's template: that is the
    // index's own), which the move empties of the previous id.
    let previous_entries = meta
        .indexes
        .iter()
        .filter_map(|ix| {
            let key = key_of(ix.previous.as_ref()?, &hash)?;
            ix.key.parse_key(&key).is_none().then_some(Entry {
                key,
                kind: ix.kind,
                score: None,
                previous: true,
            })
        })
        .collect();
    Ok(Ok(Plan {
        old: wanted.old.clone(),
        old_id,
        new,
        new_id,
        hash: hash.pairs().iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect(),
        expire_at_ms,
        entries,
        indexes,
        previous_entries,
        placed: None,
    }))
}

/// Moves each of `wanted` (of the entity `meta`) that is still at its
/// previous key; per entity what happened, in order.
pub(crate) async fn relocate<C: ConnectionLike + Send>(
    conn: &mut C,
    router: &mut Router,
    meta: &'static EntityMeta,
    wanted: &[Wanted],
) -> Result<Vec<Result<Moved>>> {
    let mut results: Vec<Option<Result<Moved>>> = (0..wanted.len()).map(|_| None).collect();
    let mut pending: Vec<(usize, Option<Pairs>)> = (0..wanted.len()).map(|i| (i, None)).collect();
    let mut reloads = Reloads::default();
    for _ in 0..ATTEMPTS {
        if pending.is_empty() {
            break;
        }
        let mut cmds = Vec::with_capacity(pending.len() * 2);
        for (i, _) in &pending {
            cmds.push(crate::engine::read::hgetall(&wanted[*i].old));
            let mut expires = redis::cmd("PEXPIRETIME");
            expires.arg(&wanted[*i].old);
            cmds.push(expires);
        }
        let replies = pipeline::query(conn, &cmds).await?;
        let mut atomic = Vec::new();
        let mut ordered = Vec::new();
        for ((i, placed), read) in std::mem::take(&mut pending).into_iter().zip(replies.chunks(2)) {
            let [reply, expires] = read else { continue };
            match plan(meta, &wanted[i], reply, expires) {
                Err(e) => results[i] = Some(Err(e)),
                Ok(Err(moved)) => results[i] = Some(Ok(moved)),
                Ok(Ok(mut p)) => {
                    p.placed = placed;
                    let keys = [p.old.as_str(), p.new.as_str()];
                    let entries = p.entries.iter().chain(&p.previous_entries);
                    let keys = keys.into_iter().chain(entries.map(|e| e.key.as_str()));
                    match router.route(false, keys) {
                        Route::Atomic => atomic.push((i, p)),
                        Route::Ordered => ordered.push((i, p)),
                    }
                }
            }
        }
        let cmds: Vec<Cmd> = atomic
            .iter()
            .map(|(_, p)| {
                let entries: Vec<&Entry> = p.entries.iter().chain(&p.previous_entries).collect();
                rekey::move_command((&p.old, &p.old_id), (&p.new, &p.new_id), &p.hash, &entries)
            })
            .collect();
        let mut replies = pipeline::query(conn, &cmds).await?;
        pipeline::resend_unknown(conn, &cmds, &mut replies, &REKEY, &mut reloads).await?;
        for ((i, p), reply) in atomic.into_iter().zip(replies) {
            // A connection that does not say it is a cluster learns it here:
            // the move goes again, ordered.
            if router.refused(&reply) {
                pending.push((i, None));
                continue;
            }
            results[i] = match rekey::parse_move(&meta.key.shown(&p.old), reply) {
                Ok(MoveAnswer::Changed) => {
                    pending.push((i, None));
                    continue;
                }
                Ok(MoveAnswer::Absent) => Some(Ok(Moved::Absent)),
                Ok(MoveAnswer::Moved) => Some(Ok(Moved::Done)),
                Ok(MoveAnswer::Taken) => Some(Ok(Moved::Taken)),
                Err(e) => Some(Err(e)),
            };
        }
        for (i, outcome) in super::ordered::steps(conn, meta, ordered, &mut reloads).await? {
            match outcome {
                super::ordered::Step::Again(placed) => pending.push((i, placed)),
                super::ordered::Step::Done(r) => results[i] = Some(r),
            }
        }
    }
    Ok(results
        .into_iter()
        .zip(wanted)
        .map(|(r, w)| {
            r.unwrap_or_else(|| {
                Err(Error::Contention {
                    key: meta
                        .previous
                        .as_ref()
                        .map_or(w.old.clone(), |p| p.shown(&w.old).into_owned()),
                    attempts: ATTEMPTS,
                })
            })
        })
        .collect())
}
