//! The ordered steps of moves whose keys a cluster keeps in several slots
//! (the order and why it is safe: `moves`).

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};

use super::key_of;
use super::moves::{Moved, Pairs, Plan, tombstone};
use crate::engine::pipeline::{self, Reloads};
use crate::entity::RawHash;
use crate::error::Result;
use crate::meta::{EntityMeta, IndexKind};
use crate::scripts::REKEY_STEP;
use crate::scripts::rekey::{self, Entry};

/// How one move's steps ended.
pub(super) enum Step {
    /// Read the previous hash again (it changed); with what this mover placed.
    Again(Option<Pairs>),
    Done(Result<Moved>),
}

/// Sends one step's commands (each an `EVALSHA` of `rekey_step.lua`, or a
/// plain command) and reads their replies.
async fn send<C: ConnectionLike + Send>(conn: &mut C, cmds: &[Cmd], reloads: &mut Reloads) -> Result<Vec<Value>> {
    let mut replies = pipeline::query(conn, cmds).await?;
    pipeline::resend_unknown(conn, cmds, &mut replies, &REKEY_STEP, reloads).await?;
    Ok(replies)
}

/// The ordered steps of `plans`, each step one pipeline for all of them.
pub(super) async fn steps<C: ConnectionLike + Send>(
    conn: &mut C,
    meta: &EntityMeta,
    plans: Vec<(usize, Plan)>,
    reloads: &mut Reloads,
) -> Result<Vec<(usize, Step)>> {
    let mut out = Vec::with_capacity(plans.len());
    if plans.is_empty() {
        return Ok(out);
    }
    let shown = |key: &str| meta.key.shown(key).into_owned();
    // 1. Place the hash.
    let cmds: Vec<Cmd> = plans
        .iter()
        .map(|(_, p)| {
            let prior = p.placed.as_deref().unwrap_or(&[]);
            rekey::place(&p.new, &tombstone(&p.new), p.expire_at_ms, prior, &p.hash)
        })
        .collect();
    let placed = send(conn, &cmds, reloads).await?;
    let mut live = Vec::with_capacity(plans.len());
    for ((i, p), reply) in plans.into_iter().zip(placed) {
        match rekey::parse_step(&shown(&p.new), reply) {
            Err(e) => out.push((i, Step::Done(Err(e)))),
            Ok(n) => live.push((i, p, n)),
        }
    }
    // 2. The new index entries, where absent (only for a hash placed here).
    let mut cmds = Vec::new();
    let mut claimed = Vec::new();
    for (n, (_, p, placed)) in live.iter().enumerate() {
        if *placed != 1 && *placed != 4 {
            continue;
        }
        for (at, e) in p.entries.iter().enumerate() {
            cmds.push(add_entry(p, e, e.score.as_deref()));
            claimed.push((n, at));
        }
    }
    let mut added = Vec::new();
    for (reply, claim) in send(conn, &cmds, reloads).await?.into_iter().zip(claimed) {
        if checked(reply)? == Some(1) {
            added.push(claim);
        }
    }
    // A write may have deleted the placed hash (and its entries), or moved
    // it to another index key, before the entries above were added: an
    // entry added under a key the hash no longer gives goes again; and as a
    // write may have moved it back meanwhile, what the hash gives after
    // that is added again where absent (at worst an entry that reads
    // filter out and repair removes, never a missing one).
    let withdrawn = stray(conn, meta, &live, &added).await?;
    let cmds: Vec<Cmd> = withdrawn
        .iter()
        .map(|&(n, at)| withdraw_entry(&live[n].1, &live[n].1.entries[at]))
        .collect();
    for reply in send(conn, &cmds, reloads).await? {
        checked(reply)?;
    }
    let kept = stray(conn, meta, &live, &withdrawn).await?;
    let mut cmds = Vec::new();
    for &(n, at) in withdrawn.iter().filter(|w| !kept.contains(w)) {
        let p = &live[n].1;
        cmds.push(add_entry(p, &p.entries[at], p.entries[at].score.as_deref()));
    }
    for reply in send(conn, &cmds, reloads).await? {
        checked(reply)?;
    }
    // Not when the entity was deleted since it was read: then there is no
    // previous hash, or one written since by another client, which is kept.
    let (deleted, live): (Vec<_>, Vec<_>) = live.into_iter().partition(|(_, _, placed)| *placed == 3);
    out.extend(deleted.into_iter().map(|(i, _, _)| (i, Step::Done(Ok(Moved::Deleted)))));
    // 3. Remove the previous index entries.
    let cleanup: Vec<Cmd> = live
        .iter()
        .flat_map(|(_, p, _)| {
            let previous = p.previous_entries.iter().map(|e| remove_member(e, &p.old_id));
            p.entries.iter().filter_map(|e| remove_entry(p, e)).chain(previous)
        })
        .collect();
    for reply in send(conn, &cleanup, reloads).await? {
        checked(reply)?;
    }
    // 4. Release the previous hash.
    let cmds: Vec<Cmd> = live.iter().map(|(_, p, _)| rekey::release(&p.old, &p.hash)).collect();
    let released = send(conn, &cmds, reloads).await?;
    for ((i, p, placed), reply) in live.into_iter().zip(released) {
        match rekey::parse_step(
            &meta
                .previous
                .as_ref()
                .map_or_else(|| p.old.clone(), |t| t.shown(&p.old).into_owned()),
            reply,
        ) {
            Err(e) => out.push((i, Step::Done(Err(e)))),
            // Changed since it was read: read it again, and replace what was placed.
            Ok(-1) => out.push((i, Step::Again((placed == 1).then(|| p.hash.clone())))),
            Ok(_) => {
                let moved = match placed {
                    1 | 4 => Moved::Done,
                    _ => Moved::Taken,
                };
                out.push((i, Step::Done(Ok(moved))));
            }
        }
    }
    Ok(out)
}

/// What a step's command answered: its number, if it answered one. An
/// index key of another type is skipped (as the move in one script skips
/// it, leaving it to `index check`); any other error fails the batch.
fn checked(reply: Value) -> Result<Option<i64>> {
    match reply {
        Value::Int(n) => Ok(Some(n)),
        Value::ServerError(e) if e.code() == "WRONGTYPE" => Ok(None),
        Value::ServerError(e) => Err(redis::RedisError::from(e).into()),
        _ => Ok(None),
    }
}

/// Which of `entries` (`(plan, entry)` positions in `live`) are under an
/// index key the hash placed at the plan's key no longer gives (or the
/// hash is gone): read now, one pipeline.
async fn stray<C: ConnectionLike + Send>(
    conn: &mut C,
    meta: &EntityMeta,
    live: &[(usize, Plan, i64)],
    entries: &[(usize, usize)],
) -> Result<Vec<(usize, usize)>> {
    let mut plans: Vec<usize> = entries.iter().map(|(n, _)| *n).collect();
    plans.dedup();
    let cmds: Vec<Cmd> = plans
        .iter()
        .map(|&n| crate::engine::read::hgetall(&live[n].1.new))
        .collect();
    let now = pipeline::query(conn, &cmds).await?;
    let mut out = Vec::new();
    for &(n, at) in entries {
        let Some(reply) = plans.iter().position(|m| *m == n).and_then(|i| now.get(i)) else {
            continue;
        };
        let p = &live[n].1;
        let hash = RawHash::from_reply(&meta.key.shown(&p.new), reply)?;
        let e = &p.entries[at];
        if hash.is_empty() || key_of(&p.indexes[at].key, &hash).as_deref() != Some(e.key.as_str()) {
            out.push((n, at));
        }
    }
    Ok(out)
}

/// The command that adds `p`'s new entry `e` (with `score`, in a sorted
/// index) where it is absent.
fn add_entry(p: &Plan, e: &Entry, score: Option<&str>) -> Cmd {
    match e.kind {
        IndexKind::Sorted { .. } => {
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(&e.key).arg("NX").arg(score.unwrap_or("0")).arg(&p.new_id);
            cmd
        }
        IndexKind::Set => {
            let mut cmd = redis::cmd("SADD");
            cmd.arg(&e.key).arg(&p.new_id);
            cmd
        }
        IndexKind::Unique => rekey::unique(&e.key, &p.old_id, &p.new_id, p.expire_at_ms),
    }
}

/// The command that removes the member `id` from `e`'s index key (from a
/// unique key only while it holds `id`).
fn remove_member(e: &Entry, id: &str) -> Cmd {
    let remove = match e.kind {
        IndexKind::Sorted { .. } => "ZREM",
        IndexKind::Set => "SREM",
        IndexKind::Unique => return rekey::unique(&e.key, id, "", 0),
    };
    let mut cmd = redis::cmd(remove);
    cmd.arg(&e.key).arg(id);
    cmd
}

/// The command that removes the new entry `e` that `p` added.
fn withdraw_entry(p: &Plan, e: &Entry) -> Cmd {
    remove_member(e, &p.new_id)
}

/// The command that removes `p`'s previous entry `e` (none when the
/// previous id is the id).
fn remove_entry(p: &Plan, e: &Entry) -> Option<Cmd> {
    (p.old_id != p.new_id).then(|| remove_member(e, &p.old_id))
}
