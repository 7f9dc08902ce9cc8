//! Ordered writes: an entity whose keys are in several cluster slots cannot
//! be written by one script, so its write becomes single-slot steps in an
//! order that leaves, after a crash between any two, only states that reads
//! ignore and `repair_indexes` repairs:
//!
//! 1. (a stream entry only) the entry is recorded in the stream's outbox;
//! 2. the new index entries are claimed (a unique value first checks its
//!    owner, as the atomic write does);
//! 3. the hash is written by the write script, with the same guards and
//!    conditions: a refused write releases the claims of step 2;
//! 4. the old index entries are removed, the new ones asserted again with
//!    their final score and TTL (a repair that ran between the steps may have
//!    removed them), the stream entry appended and taken out of the outbox,
//!    and a delivery the write acknowledges acknowledged.
//!
//! A delete removes the hash first, then its index entries and the keys
//! deleted with it. Index entries of an entity that is not (yet, or any
//! more) there are what every index read already filters out.
//!
//! This is the one state machine of those steps. It drives a batch of
//! writes (a single write is a batch of one): each step of every write in
//! the batch goes as one pipeline, which a [`Store`](crate::Store) on a
//! cluster sends to every slot concurrently. A write that must try again
//! (its indexed fields moved, a unique owner was judged) goes round again
//! with the claims it still wants. Fault checkpoints (tests only) sit
//! between the steps here, so every crash test covers batches too.

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};

use super::atomic::MAX_ATTEMPTS;
use super::outbox;
use super::plan::{Next, Outcome, WritePlan};
use crate::engine::pipeline;
use crate::error::{Error, Result};
use crate::scripts::WRITE;
use crate::scripts::index_entry::Action as EntryAction;
use crate::scripts::write_entity::Mode;

#[cfg(feature = "testing")]
use super::faults::OrderedStep;

use crate::scripts::index_entry::EntryReply;

pub(crate) use self::batch::send_steps;
use self::batch::{Batch, Write, after_hash, clear_refused, prepare, refuse, release};

/// Whether a test armed a fault for this write at this step: the write then
/// ends here as a dropped connection would end it (`true`).
#[cfg(feature = "testing")]
macro_rules! crashed {
    ($batch:expr, $plans:expr, $w:expr, $step:ident) => {{
        let plan = $batch.writes[$w].plan;
        match crate::engine::write::faults::checkpoint(&$plans[plan].target.key, OrderedStep::$step) {
            Ok(()) => false,
            Err(e) => {
                $batch.end(plan, Err(e));
                true
            }
        }
    }};
}

#[cfg(not(feature = "testing"))]
macro_rules! crashed {
    ($($t:tt)*) => {
        false
    };
}

mod batch;
mod claims;

/// Runs the writes `which` of `plans` as ordered steps; each outcome goes
/// to its place in `results`.
pub(super) async fn run<C: ConnectionLike + Send>(
    conn: &mut C,
    plans: &mut [WritePlan<'_, '_>],
    which: Vec<usize>,
    results: &mut [Option<Result<Outcome>>],
) {
    let writes = which.into_iter().map(Write::new).collect();
    // Writes that met a unique value's owner go again, each on its own, once
    // the rest of the batch is written: the owner may be one of them.
    for write in run_batch(conn, plans, writes, results).await {
        run_batch(conn, plans, vec![write], results).await;
    }
}

/// Runs `writes` through the steps; returns those set aside (see
/// [`Write::deferred`]), never any when there is one write.
async fn run_batch<C: ConnectionLike + Send>(
    conn: &mut C,
    plans: &mut [WritePlan<'_, '_>],
    writes: Vec<Write>,
    results: &mut [Option<Result<Outcome>>],
) -> Vec<Write> {
    let mut batch = Batch { writes, results };
    if let Err((members, e)) = prepare(conn, plans, &mut batch).await {
        batch.fail(&members, e, false);
    }
    for _ in 0..MAX_ATTEMPTS {
        let live = batch.live();
        if live.is_empty() {
            break;
        }
        if let Err((members, e, after_hash)) = round(conn, plans, &mut batch, &live).await {
            batch.fail(&members, e, after_hash);
        }
    }
    for w in batch.live() {
        let plan = batch.writes[w].plan;
        if let Ok(ops) = plans[plan].index_ops() {
            let added = std::mem::take(&mut batch.writes[w].added);
            release(conn, &plans[plan], &ops, &added).await;
        }
        let e = Error::Contention {
            key: plans[plan].target.shown().into_owned(),
            attempts: MAX_ATTEMPTS,
        };
        batch.end(plan, Err(e));
    }
    clear_refused(conn, plans, &batch).await;
    let Batch { writes, results } = batch;
    writes
        .into_iter()
        .filter(|w| w.deferred && results[w.plan].is_none())
        .map(|w| {
            Write {
                deferred: false,
                ..Write::new(w.plan)
            }
            .with_outbox(w.outboxed)
        })
        .collect()
}

/// One round of steps 2 to 4 for the writes `live`.
async fn round<C: ConnectionLike + Send>(
    conn: &mut C,
    plans: &mut [WritePlan<'_, '_>],
    batch: &mut Batch<'_>,
    live: &[usize],
) -> std::result::Result<(), (Vec<usize>, Error, bool)> {
    let before = |members: &[usize]| members.to_vec();
    // Each write's entries this round; claims an earlier round made that
    // this one no longer wants go.
    let mut stale = Vec::new();
    for &w in live {
        let plan = batch.writes[w].plan;
        match plans[plan].index_ops() {
            Ok(ops) => {
                let write = &mut batch.writes[w];
                let wanted = |i: usize, key: &str| ops[i].new.as_deref() == Some(key);
                for (i, key) in write.added.iter().filter(|(i, k)| !wanted(*i, k)) {
                    stale.push(plans[plan].entry_cmd(EntryAction::Remove, &ops[*i], key, 0, *i));
                }
                write.held.retain(|(i, k)| wanted(*i, k));
                write.added.retain(|(i, k)| wanted(*i, k));
                write.ops = ops;
            }
            Err(e) => {
                let added = std::mem::take(&mut batch.writes[w].added);
                let ops = std::mem::take(&mut batch.writes[w].ops);
                release(conn, &plans[plan], &ops, &added).await;
                batch.end(plan, Err(e));
            }
        }
    }
    if let Err(e) = send_steps(conn, &stale).await {
        tracing::warn!(error = %e, "could not release index entries an earlier attempt claimed; a repair removes them");
    }
    // The TTL of the index keys: an update keeps the entity's remaining one.
    let live: Vec<usize> = live
        .iter()
        .copied()
        .filter(|&w| batch.results[batch.writes[w].plan].is_none())
        .collect();
    let mut ttls = Vec::new();
    for &w in &live {
        let plan = batch.writes[w].plan;
        match plans[plan].life_ms() {
            Ok(Some(ms)) => batch.writes[w].life = Some(ms),
            Ok(None) => {
                let mut pttl = redis::cmd("PTTL");
                pttl.arg(&plans[plan].target.key);
                ttls.push((w, pttl));
            }
            Err(e) => batch.end(plan, Err(e)),
        }
    }
    let cmds: Vec<Cmd> = ttls.iter().map(|(_, c)| c.clone()).collect();
    let replies = pipeline::query(conn, &cmds)
        .await
        .map_err(|e| (before(&live), e, false))?;
    for ((w, _), reply) in ttls.iter().zip(replies) {
        let ms = match reply {
            Value::Int(ms) => u64::try_from(ms).unwrap_or(0),
            _ => 0,
        };
        batch.writes[*w].life = Some(ms);
    }

    // Step 2: claim the new entries (a delete and an expire claim nothing).
    let live = claims::claim(conn, plans, batch, live).await?;
    for &w in &live {
        if plans[batch.writes[w].plan].mode != Mode::Delete {
            let _ = crashed!(batch, plans, w, Claimed);
        }
    }

    // Step 3: the hashes.
    let live: Vec<usize> = live
        .into_iter()
        .filter(|&w| batch.results[batch.writes[w].plan].is_none())
        .collect();
    let mut hashes = Vec::new();
    for &w in &live {
        match plans[batch.writes[w].plan].hash_invocation() {
            Ok(cmd) => hashes.push((w, cmd)),
            Err(e) => refuse(conn, plans, batch, w, Err(e)).await,
        }
    }
    let cmds: Vec<Cmd> = hashes.iter().map(|(_, c)| c.clone()).collect();
    let members: Vec<usize> = hashes.iter().map(|(w, _)| *w).collect();
    let mut replies = pipeline::query(conn, &cmds)
        .await
        .map_err(|e| (members.clone(), e, false))?;
    pipeline::resend_unknown(conn, &cmds, &mut replies, &WRITE, &mut pipeline::Reloads::default())
        .await
        .map_err(|e| (members, e, false))?;
    let mut written: Vec<(usize, bool)> = Vec::new();
    for ((w, _), reply) in hashes.into_iter().zip(replies) {
        let plan = batch.writes[w].plan;
        match plans[plan].take_answer(reply) {
            Ok(Next::Done(Outcome::Done(_))) => written.push((w, true)),
            Ok(Next::Done(Outcome::Missing)) if plans[plan].mode == Mode::Delete => written.push((w, false)),
            Ok(Next::Done(Outcome::Missing)) => refuse(conn, plans, batch, w, Ok(Outcome::Missing)).await,
            // The indexed fields moved: the next round keeps the claims it still wants.
            Ok(Next::Again) => {}
            Ok(Next::CheckOwner { .. }) => {
                let e = Error::UnexpectedReply {
                    key: plans[plan].target.shown().into_owned(),
                    detail: "the hash write met a unique claim".into(),
                };
                refuse(conn, plans, batch, w, Err(e)).await;
            }
            Err(e) => refuse(conn, plans, batch, w, Err(e)).await,
        }
    }
    #[cfg(feature = "testing")]
    for &(w, _) in &written {
        let _ = crashed!(batch, plans, w, HashWritten);
    }

    // Step 4: old entries go, new ones get their final score and TTL, a
    // delete's other keys go. The hash is written: a failure from here on is
    // not "nothing was written" but an outcome to read (an OOM on the
    // stream's node included); the outbox sweep finishes a stream entry left
    // behind. A failed entry step leaves entries that reads filter out and a
    // repair fixes, so it is logged.
    let written: Vec<(usize, bool)> = written
        .into_iter()
        .filter(|(w, _)| batch.results[batch.writes[*w].plan].is_none())
        .collect();
    let members: Vec<usize> = written.iter().map(|(w, _)| *w).collect();
    let mut after = Vec::new();
    for &(w, found) in &written {
        let write = &batch.writes[w];
        after.extend(after_hash(
            &plans[write.plan],
            &write.ops,
            write.life.unwrap_or(0),
            found,
        ));
    }
    for reply in send_steps(conn, &after).await.map_err(|e| (members.clone(), e, true))? {
        if let Err(e) = EntryReply::parse("", reply) {
            tracing::warn!(error = %e, "an index step after the hash write failed; a repair fixes the index");
        }
    }
    let appends: Vec<(usize, Cmd)> = written
        .iter()
        .filter_map(|&(w, _)| {
            let (stream, entry) = plans[batch.writes[w].plan].options.stream?;
            batch.writes[w].outboxed.as_ref()?;
            Some((w, outbox::append(stream, entry)))
        })
        .collect();
    let cmds: Vec<Cmd> = appends.iter().map(|(_, c)| c.clone()).collect();
    let appended: Vec<usize> = appends.iter().map(|(w, _)| *w).collect();
    let replies = pipeline::query(conn, &cmds)
        .await
        .map_err(|e| (appended.clone(), e, true))?;
    let mut ids: Vec<(usize, String)> = Vec::new();
    let mut clears = Vec::new();
    for ((w, _), reply) in appends.into_iter().zip(replies) {
        let plan = batch.writes[w].plan;
        let appended = match reply {
            Value::ServerError(e) => Err(Error::from(redis::RedisError::from(e))),
            reply => redis::from_redis_value::<String>(reply).map_err(|e| Error::from(redis::RedisError::from(e))),
        };
        match appended {
            Ok(id) => {
                if crashed!(batch, plans, w, Appended) {
                    continue;
                }
                if let (Some((stream, _)), Some(attempt)) = (plans[plan].options.stream, &batch.writes[w].outboxed) {
                    clears.push(outbox::clear(stream, attempt));
                }
                ids.push((w, id));
            }
            Err(e) => batch.end(plan, Err(e.after_writes())),
        }
    }
    // A delivery the write acknowledges goes last: one left pending is
    // delivered again, and its consumer finds the write done.
    for &(w, found) in &written {
        let plan = batch.writes[w].plan;
        if let (true, None, Some(ack)) = (found, &batch.results[plan], plans[plan].options.ack) {
            clears.push(redis::cmd("XACK").arg(ack.stream).arg(ack.group).arg(ack.id).clone());
        }
    }
    // The entry is appended; a record left behind only makes the sweep
    // append it again, which a consumer must take anyway.
    if let Err(e) = pipeline::query(conn, &clears).await {
        tracing::warn!(error = %e, "could not clear an outbox record or acknowledge a delivery; the sweep appends the entry again, the delivery comes again");
    }
    for (w, found) in written {
        let plan = batch.writes[w].plan;
        let id = ids.iter().find(|(v, _)| *v == w).map(|(_, id)| id.clone());
        batch.end(plan, Ok(if found { Outcome::Done(id) } else { Outcome::Missing }));
    }
    Ok(())
}
