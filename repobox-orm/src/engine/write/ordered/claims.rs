//! Step 2 of the ordered writes: the new entries claimed, with the keys the
//! write will touch checked for another type, and the owners of unique
//! values that are taken judged (see the parent module).

use redis::Cmd;
use redis::aio::ConnectionLike;

use super::batch::{Batch, refuse, release};
use super::send_steps;
use crate::engine::pipeline;
use crate::engine::write::plan::WritePlan;
use crate::error::Error;
use crate::scripts::index_entry::{Action as EntryAction, EntryReply, check_stream};
use crate::scripts::write_entity::Mode;

/// Claims the new entries of the writes `live`; returns those that go on
/// to their hash write this round (the others are refused, set aside, or
/// go round again after a takeover).
pub(super) async fn claim<C: ConnectionLike + Send>(
    conn: &mut C,
    plans: &mut [WritePlan<'_, '_>],
    batch: &mut Batch<'_>,
    live: Vec<usize>,
) -> std::result::Result<Vec<usize>, (Vec<usize>, Error, bool)> {
    let before = |members: &[usize]| members.to_vec();
    let live: Vec<usize> = live
        .into_iter()
        .filter(|&w| batch.results[batch.writes[w].plan].is_none())
        .collect();
    let mut claims: Vec<(usize, usize, String, Cmd)> = Vec::new();
    for &w in &live {
        let write = &batch.writes[w];
        let plan = &plans[write.plan];
        if matches!(plan.mode, Mode::Delete | Mode::SetTtl) {
            continue;
        }
        for (i, op) in write.ops.iter().enumerate() {
            let Some(key) = op.new.as_deref() else { continue };
            if write.held.iter().any(|(j, k)| *j == i && k == key) {
                continue;
            }
            let life = write.life.unwrap_or(0);
            claims.push((
                w,
                i,
                key.to_owned(),
                plan.entry_cmd(EntryAction::Claim, op, key, life, i),
            ));
        }
    }
    // With the claims, the other keys the write will touch are checked for
    // another type (the old entries' keys, the stream it appends to, the
    // stream whose delivery it acknowledges): refused before the hash is
    // written, as the atomic write refuses them.
    let mut checks: Vec<(usize, String, Cmd)> = Vec::new();
    let with_streams = live.iter().copied().filter(|&w| {
        let plan = &plans[batch.writes[w].plan];
        !matches!(plan.mode, Mode::Delete | Mode::SetTtl)
            && (plan.options.stream.is_some() || plan.options.ack.is_some())
    });
    let checked: std::collections::BTreeSet<usize> = claims.iter().map(|(w, ..)| *w).chain(with_streams).collect();
    for &w in &checked {
        let write = &batch.writes[w];
        let plan = &plans[write.plan];
        for (i, op) in write.ops.iter().enumerate() {
            if let Some(old) = op.old.as_deref() {
                checks.push((w, old.to_owned(), plan.entry_cmd(EntryAction::Check, op, old, 0, i)));
            }
        }
        if let Some((stream, _)) = plan.options.stream {
            checks.push((w, stream.to_owned(), check_stream(stream)));
        }
        if let Some(ack) = plan.options.ack {
            checks.push((w, ack.stream.to_owned(), check_stream(ack.stream)));
        }
    }
    let cmds: Vec<Cmd> = claims
        .iter()
        .map(|(_, _, _, c)| c.clone())
        .chain(checks.iter().map(|(_, _, c)| c.clone()))
        .collect();
    let mut replies = send_steps(conn, &cmds).await.map_err(|e| (before(&live), e, false))?;
    let mut taken: Vec<(usize, usize, String)> = Vec::new();
    let mut failed: Vec<(usize, Error)> = Vec::new();
    for ((w, key, _), reply) in checks.into_iter().zip(replies.split_off(claims.len())) {
        if let Err(e) = EntryReply::parse(&key, reply) {
            failed.push((w, e));
        }
    }
    for ((w, i, key, _), reply) in claims.into_iter().zip(replies) {
        match EntryReply::parse(&key, reply) {
            Ok(EntryReply::Changed(new)) => {
                let write = &mut batch.writes[w];
                if new {
                    write.added.push((i, key.clone()));
                }
                write.held.push((i, key));
            }
            Ok(EntryReply::Unique(owner)) => taken.push((w, i, owner)),
            Err(e) => failed.push((w, e)),
        }
    }
    for (w, e) in failed {
        if batch.results[batch.writes[w].plan].is_none() {
            refuse(conn, plans, batch, w, Err(e)).await;
        }
    }
    // A unique value held by another entity: a stale owner judged before
    // that still holds it is live; any other owner is read and judged.
    let mut owners: Vec<(usize, usize, String, Option<Cmd>)> = Vec::new();
    for (w, op, owner) in taken {
        let plan = batch.writes[w].plan;
        if batch.results[plan].is_some() || owners.iter().any(|(v, ..)| *v == w) {
            continue;
        }
        if batch.writes.len() > 1 {
            // The owner may be another write of this batch whose hash is not
            // written yet: judged once the rest of the batch is.
            let write = &mut batch.writes[w];
            let added = std::mem::take(&mut write.added);
            write.held.clear();
            write.deferred = true;
            release(conn, &plans[plan], &write.ops, &added).await;
            continue;
        }
        if plans[plan].stale_owner(op) == Some(owner.as_str()) {
            let e = plans[plan].unique_violation(op, owner);
            refuse(conn, plans, batch, w, Err(e)).await;
            continue;
        }
        let lookup = plans[plan].owner_lookup(&owner);
        owners.push((w, op, owner, lookup));
    }
    let cmds: Vec<Cmd> = owners.iter().filter_map(|(.., c)| c.clone()).collect();
    let members: Vec<usize> = owners.iter().map(|(w, ..)| *w).collect();
    let mut replies = pipeline::query(conn, &cmds)
        .await
        .map_err(|e| (members, e, false))?
        .into_iter();
    let mut again: Vec<usize> = Vec::new();
    for (w, op, owner, lookup) in owners {
        let reply = lookup.and_then(|_| replies.next());
        let plan = batch.writes[w].plan;
        match plans[plan].decide_takeover(op, owner, reply) {
            Ok(()) => again.push(w),
            Err(e) => refuse(conn, plans, batch, w, Err(e)).await,
        }
    }
    let live: Vec<usize> = live
        .into_iter()
        .filter(|&w| batch.results[batch.writes[w].plan].is_none() && !again.contains(&w) && !batch.writes[w].deferred)
        .collect();
    Ok(live)
}
