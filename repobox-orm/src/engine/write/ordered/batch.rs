//! Ordered writes in bulk: each step of many ordered writes goes as one
//! pipeline per chunk (see the parent module for the steps themselves).

use redis::Cmd;
use redis::aio::ConnectionLike;

use super::super::BULK_CHUNK;
use super::super::plan::{EntryAction, Outcome, Step, WritePlan};
use super::super::protocol::{IndexOp, Mode};
use super::{Entry, after_hash, parse_entry, release, run_ordered, send_steps};
use crate::error::{Error, Result};
use crate::scripts::{self, WRITE};

/// Runs many ordered writes with each step batched across them: the
/// lookups, the claims, the hashes and the last steps each go as one
/// pipeline (per [`BULK_CHUNK`](BULK_CHUNK)), which a
/// [`Store`](crate::Store) on a cluster sends to every slot concurrently.
/// A write that meets anything but the plain path (a unique value held by
/// another entity, fields that moved, a TTL to read) finishes on its own
/// through [`run_ordered`]. Outcomes in the order of `plans`.
pub(crate) async fn run_ordered_many<C: ConnectionLike + Send>(
    conn: &mut C,
    plans: &mut [&mut WritePlan<'_, '_>],
) -> Vec<Result<Outcome>> {
    let mut results: Vec<Option<Result<Outcome>>> = (0..plans.len()).map(|_| None).collect();
    let mut alone = Vec::new();
    for chunk in (0..plans.len()).collect::<Vec<_>>().chunks(BULK_CHUNK) {
        if let Err(e) = ordered_chunk(conn, plans, chunk, &mut results, &mut alone).await {
            for &i in chunk {
                if results[i].is_none() && !alone.contains(&i) {
                    // Some steps of the chunk may have run: an outcome to
                    // read, whatever refused the later one.
                    results[i] = Some(Err(Error::WriteOutcomeUnknown(e.to_string())));
                }
            }
        }
    }
    for i in alone {
        results[i] = Some(run_ordered(conn, plans[i]).await);
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(Error::UnexpectedReply {
                    key: String::new(),
                    detail: "the write got no outcome".into(),
                })
            })
        })
        .collect()
}

async fn ordered_chunk<C: ConnectionLike + Send>(
    conn: &mut C,
    plans: &mut [&mut WritePlan<'_, '_>],
    chunk: &[usize],
    results: &mut [Option<Result<Outcome>>],
    alone: &mut Vec<usize>,
) -> Result<()> {
    // Lookups of the guard fields, where a plan must learn them.
    for &i in chunk {
        plans[i].read_before_save();
    }
    let lookups: Vec<(usize, Cmd)> = chunk.iter().filter_map(|&i| Some((i, plans[i].lookup()?))).collect();
    let cmds: Vec<Cmd> = lookups.iter().map(|(_, c)| c.clone()).collect();
    for ((i, _), reply) in lookups.iter().zip(send_steps(conn, &cmds).await?) {
        if let Err(e) = plans[*i].learn(reply) {
            results[*i] = Some(Err(e));
        }
    }
    // Each plan's entries and the TTL its index keys need.
    let mut live: Vec<(usize, Vec<IndexOp>, u64)> = Vec::new();
    for &i in chunk {
        if results[i].is_some() {
            continue;
        }
        let plan = &plans[i];
        if plan.extras.stream.is_some() {
            alone.push(i);
            continue;
        }
        match (plan.entries(), plan.life_ms()) {
            (Ok(ops), Ok(Some(life))) => live.push((i, ops, life)),
            (Ok(_), Ok(None)) => alone.push(i),
            (Err(e), _) | (_, Err(e)) => results[i] = Some(Err(e)),
        }
    }
    // Claims (not for deletes, which go hash first).
    let mut added: Vec<(usize, Vec<(usize, String)>)> = Vec::new();
    let mut claims: Vec<(usize, usize, String, Cmd)> = Vec::new();
    for (i, ops, life) in &live {
        let plan = &plans[*i];
        if matches!(plan.mode, Mode::Delete | Mode::Expire) {
            continue;
        }
        for (j, op) in ops.iter().enumerate() {
            if let Some(key) = op.new.as_deref() {
                claims.push((
                    *i,
                    j,
                    key.to_owned(),
                    plan.entry_cmd(EntryAction::Claim, op, key, *life, j),
                ));
            }
        }
    }
    let cmds: Vec<Cmd> = claims.iter().map(|(_, _, _, c)| c.clone()).collect();
    let mut off_path: Vec<usize> = Vec::new();
    for ((i, j, key, _), reply) in claims.into_iter().zip(send_steps(conn, &cmds).await?) {
        match parse_entry(&key, reply) {
            Ok(Entry::Changed(true)) => match added.iter_mut().find(|(p, _)| *p == i) {
                Some((_, list)) => list.push((j, key)),
                None => added.push((i, vec![(j, key)])),
            },
            Ok(Entry::Changed(false)) => {}
            Ok(Entry::Unique(_)) => off_path.push(i),
            Err(e) => {
                if results[i].is_none() {
                    results[i] = Some(Err(e));
                }
            }
        }
    }
    let added_of = |i: usize| {
        added
            .iter()
            .find(|(p, _)| *p == i)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    };
    // Plans off the plain path let go of what they claimed and run alone;
    // plans whose claims failed let go and report.
    for (i, ops, _) in &live {
        let failed = results[*i].is_some();
        if failed || off_path.contains(i) {
            release(conn, plans[*i], ops, &added_of(*i)).await;
            if !failed {
                alone.push(*i);
            }
        }
    }
    // The hashes.
    let writes: Vec<&(usize, Vec<IndexOp>, u64)> = live
        .iter()
        .filter(|(i, _, _)| results[*i].is_none() && !alone.contains(i))
        .collect();
    let mut cmds = Vec::with_capacity(writes.len());
    let mut sent = Vec::with_capacity(writes.len());
    for w in &writes {
        match plans[w.0].hash_invocation() {
            Ok(cmd) => {
                cmds.push(cmd);
                sent.push(*w);
            }
            Err(e) => {
                release(conn, plans[w.0], &w.1, &added_of(w.0)).await;
                results[w.0] = Some(Err(e));
            }
        }
    }
    let mut replies = send_steps(conn, &cmds).await?;
    scripts::resend_unknown(conn, &cmds, &mut replies, &WRITE, &mut scripts::Reloads::default()).await?;
    let mut after = Vec::new();
    let mut done = Vec::new();
    for ((i, ops, life), reply) in sent.into_iter().zip(replies) {
        let plan = &mut plans[*i];
        match plan.absorb(reply) {
            Ok(Step::Done(Outcome::Done(_))) => {
                after.extend(after_hash(plan, ops, *life, plan.mode == Mode::Delete));
                done.push(*i);
            }
            Ok(Step::Done(Outcome::Missing)) => {
                release(conn, plans[*i], ops, &added_of(*i)).await;
                results[*i] = Some(Ok(Outcome::Missing));
            }
            Ok(Step::Again | Step::CheckOwner { .. }) => {
                release(conn, plans[*i], ops, &added_of(*i)).await;
                alone.push(*i);
            }
            Err(e) => {
                release(conn, plans[*i], ops, &added_of(*i)).await;
                results[*i] = Some(Err(e));
            }
        }
    }
    for reply in send_steps(conn, &after).await? {
        if let Err(e) = parse_entry("", reply) {
            tracing::warn!(error = %e, "an index step after a bulk hash write failed; a repair fixes the index");
        }
    }
    for i in done {
        results[i] = Some(Ok(Outcome::Done(None)));
    }
    Ok(())
}
