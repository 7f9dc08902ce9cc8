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
//!    removed them), the stream entry appended and taken out of the outbox.
//!
//! A delete removes the hash first, then its index entries and the keys
//! deleted with it. Index entries of an entity that is not (yet, or any
//! more) there are what every index read already filters out.
//!
//! The engine takes this path when the atomic script is refused with
//! `CROSSSLOT`, which a [`Store`](crate::Store) on a cluster answers without
//! a round trip, so it needs no flag and never runs on a single server.

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};

use super::plan::{EntryAction, Outcome, Step, WritePlan};
use super::protocol::{IndexOp, Mode};
use super::run::MAX_ATTEMPTS;
use crate::error::{Error, Result};
use crate::queue::outbox;
use crate::scripts::{self, INDEX_ENTRY, WRITE};

#[cfg(feature = "testing")]
use crate::testing::faults::OrderedStep;

/// Stops the write here when a test armed a fault for this step.
#[cfg(feature = "testing")]
fn checkpoint(plan: &WritePlan<'_, '_>, step: OrderedStep) -> Result<()> {
    if crate::testing::faults::fires(&plan.target.key, step) {
        return Err(Error::Redis(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            format!("injected fault after {step:?}"),
        ))));
    }
    Ok(())
}

#[cfg(not(feature = "testing"))]
macro_rules! checkpoint {
    ($($t:tt)*) => {};
}

#[cfg(feature = "testing")]
macro_rules! checkpoint {
    ($plan:expr, $step:ident) => {
        checkpoint($plan, OrderedStep::$step)?
    };
}

/// What one index-entry step answered.
enum Entry {
    /// 1 when it changed the key, 0 when there was nothing to do.
    Changed(bool),
    /// The unique value is held by this owner.
    Unique(String),
}

fn parse_entry(key: &str, reply: Value) -> Result<Entry> {
    match reply {
        Value::Int(n) => Ok(Entry::Changed(n > 0)),
        Value::Array(items) => {
            let text = |v: Option<&Value>| match v {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::SimpleString(s)) => s.clone(),
                _ => String::new(),
            };
            match text(items.first()).as_str() {
                "unique" => Ok(Entry::Unique(text(items.get(1)))),
                "wrongtype" => Err(Error::UnexpectedReply {
                    key: text(items.get(1)),
                    detail: "the key holds the wrong kind of value".into(),
                }),
                _ => Err(Error::UnexpectedReply {
                    key: key.to_owned(),
                    detail: format!("index step answered {items:?}"),
                }),
            }
        }
        Value::ServerError(e) => Err(Error::Redis(e.into())),
        other => Err(Error::UnexpectedReply {
            key: key.to_owned(),
            detail: format!("index step answered {other:?}"),
        }),
    }
}

/// Sends single-slot steps as one pipeline (a [`Store`](crate::Store) on a
/// cluster splits it per slot and sends the parts concurrently), or one by
/// one where the connection refuses a pipeline across slots.
pub(crate) async fn send_steps<C: ConnectionLike + Send>(conn: &mut C, cmds: &[Cmd]) -> Result<Vec<Value>> {
    if cmds.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for cmd in cmds {
        pipe.add_command(cmd.clone());
    }
    let mut replies: Vec<Value> = match pipe.ignore_errors().query_async(conn).await {
        Ok(replies) => replies,
        // redis-rs's own cluster connection refuses pipelines across slots.
        Err(e) if e.kind() == redis::ErrorKind::Client || scripts::is_cross_slot(&e) => {
            let mut replies = Vec::with_capacity(cmds.len());
            for cmd in cmds {
                replies.push(scripts::run::<Value, C>(conn, &INDEX_ENTRY, cmd).await?);
            }
            replies
        }
        Err(e) => return Err(e.into()),
    };
    if replies.iter().any(scripts::is_noscript) {
        INDEX_ENTRY.load_async(conn).await?;
        let again: Vec<usize> = (0..replies.len())
            .filter(|&i| scripts::is_noscript(&replies[i]))
            .collect();
        for i in again {
            replies[i] = cmds[i].query_async(conn).await?;
        }
    }
    Ok(replies)
}

/// The hash's remaining TTL in ms (0 when it has none).
async fn remaining_ttl<C: ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<u64> {
    let ms: i64 = redis::cmd("PTTL").arg(key).query_async(conn).await?;
    Ok(u64::try_from(ms).unwrap_or(0))
}

/// Removes the members that step 2 added, after a refused or failed write.
async fn release<C: ConnectionLike + Send>(conn: &mut C, plan: &WritePlan<'_, '_>, ops: &[IndexOp], added: &[usize]) {
    let cmds: Vec<Cmd> = added
        .iter()
        .filter_map(|&i| {
            let op = &ops[i];
            Some(plan.entry_cmd(EntryAction::Remove, op, op.new.as_deref()?, 0, i))
        })
        .collect();
    if let Err(e) = send_steps(conn, &cmds).await {
        tracing::warn!(key = %plan.target.shown(), error = %e, "could not release index entries of a refused write; a repair removes them");
    }
}

/// Runs `plan` as ordered single-slot steps.
pub(crate) async fn run_ordered<C: ConnectionLike + Send>(
    conn: &mut C,
    plan: &mut WritePlan<'_, '_>,
) -> Result<Outcome> {
    if let Some(lookup) = plan.lookup() {
        let reply: Value = lookup.query_async(conn).await?;
        plan.learn(reply)?;
    }
    let Some((stream, entry)) = plan.extras.stream else {
        return run_steps(conn, plan, false).await;
    };
    outbox::record(conn, stream, &plan.target.key, entry).await?;
    checkpoint!(plan, Outboxed);
    let result = run_steps(conn, plan, true).await;
    // A write that was refused leaves nothing for the sweep to append.
    if matches!(
        &result,
        Ok(Outcome::Missing)
            | Err(Error::AlreadyExists { .. }
                | Error::UniqueViolation { .. }
                | Error::Conflict { .. }
                | Error::Contention { .. }
                | Error::InvalidArgument { .. }
                | Error::Encode { .. }
                | Error::UnexpectedReply { .. })
    ) && let Err(e) = outbox::clear(conn, stream, &plan.target.key).await
    {
        tracing::warn!(key = %plan.target.shown(), error = %e, "could not clear the outbox entry of a refused write");
    }
    result
}

async fn run_steps<C: ConnectionLike + Send>(
    conn: &mut C,
    plan: &mut WritePlan<'_, '_>,
    outboxed: bool,
) -> Result<Outcome> {
    for _ in 0..MAX_ATTEMPTS {
        let ops = plan.entries()?;
        if plan.mode == Mode::Delete {
            let reply: Value = scripts::run(conn, &WRITE, &plan.hash_invocation()?).await?;
            match plan.absorb(reply)? {
                Step::Done(outcome) => {
                    checkpoint!(plan, HashWritten);
                    let mut after: Vec<Cmd> = ops
                        .iter()
                        .enumerate()
                        .filter_map(|(i, op)| Some(plan.entry_cmd(EntryAction::Remove, op, op.old.as_deref()?, 0, i)))
                        .collect();
                    if matches!(outcome, Outcome::Done(_)) {
                        after.extend(plan.extras.delete_keys.iter().map(|k| {
                            let mut del = redis::cmd("DEL");
                            del.arg(k);
                            del
                        }));
                    }
                    finish(conn, plan, &after).await?;
                    return Ok(outcome);
                }
                Step::Again => continue,
                Step::CheckOwner { .. } => return Err(unexpected(plan, "a delete met a unique claim")),
            }
        }
        let life = match plan.life_ms()? {
            Some(ms) => ms,
            None => remaining_ttl(conn, &plan.target.key).await?,
        };
        // Step 2: claim the new entries.
        let mut added = Vec::new();
        if plan.mode != Mode::Expire {
            let claims: Vec<(usize, Cmd)> = ops
                .iter()
                .enumerate()
                .filter_map(|(i, op)| Some((i, plan.entry_cmd(EntryAction::Claim, op, op.new.as_deref()?, life, i))))
                .collect();
            let cmds: Vec<Cmd> = claims.iter().map(|(_, c)| c.clone()).collect();
            let replies = send_steps(conn, &cmds).await?;
            let mut held = None;
            let mut failed = None;
            for ((i, _), reply) in claims.iter().zip(replies) {
                match parse_entry(&plan.target.shown(), reply) {
                    Ok(Entry::Changed(true)) => added.push(*i),
                    Ok(Entry::Changed(false)) => {}
                    Ok(Entry::Unique(owner)) => held = Some((*i, owner)),
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(e) = failed {
                release(conn, plan, &ops, &added).await;
                return Err(e);
            }
            if let Some((op, owner)) = held {
                release(conn, plan, &ops, &added).await;
                if plan.stale_owner(op) == Some(owner.as_str()) {
                    return Err(plan.unique_violation(op, owner));
                }
                let reply = match plan.owner_lookup(&owner) {
                    Some(cmd) => Some(cmd.query_async::<Value>(conn).await?),
                    None => None,
                };
                plan.judge_owner(op, owner, reply)?;
                continue;
            }
        }
        checkpoint!(plan, Claimed);
        // Step 3: the hash.
        let written = match plan.hash_invocation() {
            Ok(cmd) => scripts::run::<Value, C>(conn, &WRITE, &cmd)
                .await
                .and_then(|r| plan.absorb(r)),
            Err(e) => Err(e),
        };
        match written {
            Ok(Step::Done(Outcome::Done(_))) => {}
            Ok(Step::Done(Outcome::Missing)) => {
                release(conn, plan, &ops, &added).await;
                return Ok(Outcome::Missing);
            }
            Ok(Step::Again) => {
                release(conn, plan, &ops, &added).await;
                continue;
            }
            Ok(Step::CheckOwner { .. }) => return Err(unexpected(plan, "the hash write met a unique claim")),
            Err(e) => {
                release(conn, plan, &ops, &added).await;
                return Err(e);
            }
        }
        checkpoint!(plan, HashWritten);
        // Step 4: old entries go, new ones get their final score and TTL.
        let after: Vec<Cmd> = ops
            .iter()
            .enumerate()
            .flat_map(|(i, op)| {
                let old = op
                    .old
                    .as_deref()
                    .map(|k| plan.entry_cmd(EntryAction::Remove, op, k, 0, i));
                let action = if plan.mode == Mode::Expire {
                    EntryAction::Touch
                } else {
                    EntryAction::Add
                };
                let new = op.new.as_deref().map(|k| plan.entry_cmd(action, op, k, life, i));
                old.into_iter().chain(new)
            })
            .collect();
        finish(conn, plan, &after).await?;
        let id = match plan.extras.stream {
            Some((stream, entry)) if outboxed => {
                let id = outbox::append(conn, stream, entry).await?;
                checkpoint!(plan, Appended);
                outbox::clear(conn, stream, &plan.target.key).await?;
                Some(id)
            }
            _ => None,
        };
        return Ok(Outcome::Done(id));
    }
    Err(Error::Contention {
        key: plan.target.shown().into_owned(),
        attempts: MAX_ATTEMPTS,
    })
}

/// The last steps: their failure leaves entries that reads filter out and a
/// repair removes, so it is logged, not returned, unless the connection failed.
async fn finish<C: ConnectionLike + Send>(conn: &mut C, plan: &WritePlan<'_, '_>, cmds: &[Cmd]) -> Result<()> {
    for reply in send_steps(conn, cmds).await? {
        if let Err(e) = parse_entry(&plan.target.shown(), reply) {
            tracing::warn!(key = %plan.target.shown(), error = %e, "an index step after the hash write failed; a repair fixes the index");
        }
    }
    Ok(())
}

fn unexpected(plan: &WritePlan<'_, '_>, detail: &str) -> Error {
    Error::UnexpectedReply {
        key: plan.target.shown().into_owned(),
        detail: detail.into(),
    }
}
