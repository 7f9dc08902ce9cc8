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
            rekey::place(&p.new, &tombstone(&p.new), p.ttl_ms, prior, &p.hash)
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
        for e in &p.entries {
            cmds.push(add_entry(p, e));
            claimed.push((n, e));
        }
    }
    let mut added = Vec::new();
    for (reply, (n, e)) in send(conn, &cmds, reloads).await?.into_iter().zip(claimed) {
        match reply {
            Value::ServerError(e) => return Err(redis::RedisError::from(e).into()),
            Value::Int(1) => added.push((n, e)),
            _ => {}
        }
    }
    // A write may have deleted the placed hash (and its entries), or moved
    // it to another index key, before the entries above were added: an
    // entry added here under a key the hash no longer gives goes again.
    let mut placed_at: Vec<usize> = added.iter().map(|(n, _)| *n).collect();
    placed_at.dedup();
    let cmds: Vec<Cmd> = placed_at
        .iter()
        .map(|&n| crate::engine::read::hgetall(&live[n].1.new))
        .collect();
    let now: Vec<(usize, Value)> = placed_at.into_iter().zip(pipeline::query(conn, &cmds).await?).collect();
    let mut cmds = Vec::new();
    for (n, e) in &added {
        let p = &live[*n].1;
        let Some((_, reply)) = now.iter().find(|(m, _)| m == n) else {
            continue;
        };
        let hash = RawHash::from_reply(&p.new, reply)?;
        let at = p.entries.iter().position(|x| std::ptr::eq(x, *e));
        let belongs = at.is_some_and(|at| key_of(&p.indexes[at].key, &hash).as_deref() == Some(e.key.as_str()));
        if hash.is_empty() || !belongs {
            cmds.push(withdraw_entry(p, e));
        }
    }
    for reply in send(conn, &cmds, reloads).await? {
        if let Value::ServerError(e) = reply {
            return Err(redis::RedisError::from(e).into());
        }
    }
    // Not when the entity was deleted since it was read: then there is no
    // previous hash, or one written since by another client, which is kept.
    let (deleted, live): (Vec<_>, Vec<_>) = live.into_iter().partition(|(_, _, placed)| *placed == 3);
    out.extend(deleted.into_iter().map(|(i, _, _)| (i, Step::Done(Ok(Moved::Deleted)))));
    // 3. Remove the previous index entries.
    let cleanup: Vec<Cmd> = live
        .iter()
        .flat_map(|(_, p, _)| p.entries.iter().filter_map(|e| remove_entry(p, e)))
        .collect();
    for reply in send(conn, &cleanup, reloads).await? {
        if let Value::ServerError(e) = reply {
            return Err(redis::RedisError::from(e).into());
        }
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

/// The command that adds `p`'s new entry `e` where it is absent.
fn add_entry(p: &Plan, e: &Entry) -> Cmd {
    match e.kind {
        IndexKind::Sorted { .. } => {
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(&e.key)
                .arg("NX")
                .arg(e.score.as_deref().unwrap_or("0"))
                .arg(&p.new_id);
            cmd
        }
        IndexKind::Set => {
            let mut cmd = redis::cmd("SADD");
            cmd.arg(&e.key).arg(&p.new_id);
            cmd
        }
        IndexKind::Unique => rekey::unique(&e.key, &p.old_id, &p.new_id, p.ttl_ms),
    }
}

/// The command that removes the new entry `e` that `p` added.
fn withdraw_entry(p: &Plan, e: &Entry) -> Cmd {
    match e.kind {
        IndexKind::Sorted { .. } => {
            let mut cmd = redis::cmd("ZREM");
            cmd.arg(&e.key).arg(&p.new_id);
            cmd
        }
        IndexKind::Set => {
            let mut cmd = redis::cmd("SREM");
            cmd.arg(&e.key).arg(&p.new_id);
            cmd
        }
        IndexKind::Unique => rekey::unique(&e.key, &p.new_id, "", 0),
    }
}

/// The command that removes `p`'s previous entry `e` (none when the
/// previous id is the id).
fn remove_entry(p: &Plan, e: &Entry) -> Option<Cmd> {
    if p.old_id == p.new_id {
        return None;
    }
    Some(match e.kind {
        IndexKind::Sorted { .. } => {
            let mut cmd = redis::cmd("ZREM");
            cmd.arg(&e.key).arg(&p.old_id);
            cmd
        }
        IndexKind::Set => {
            let mut cmd = redis::cmd("SREM");
            cmd.arg(&e.key).arg(&p.old_id);
            cmd
        }
        IndexKind::Unique => rekey::unique(&e.key, &p.old_id, "", 0),
    })
}
