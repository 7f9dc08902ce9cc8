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

mod batch;

pub(crate) use self::batch::run_ordered_many;

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
pub(super) enum Entry {
    /// 1 when it changed the key, 0 when there was nothing to do.
    Changed(bool),
    /// The unique value is held by this owner.
    Unique(String),
}

pub(super) fn parse_entry(key: &str, reply: Value) -> Result<Entry> {
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
        // A key of another type fails the step's first command, before it writes.
        Value::ServerError(e) if e.code() == "WRONGTYPE" => Err(Error::UnexpectedReply {
            key: key.to_owned(),
            detail: "WRONGTYPE: the key holds the wrong kind of value".into(),
        }),
        Value::ServerError(e) => Err(Error::from(redis::RedisError::from(e))),
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
    let mut replies = crate::engine::pipeline::query(conn, cmds).await?;
    // Steps a server answered NOSCRIPT (a restart, a new node, a flush): the
    // script is loaded (on every primary, through a cluster client) and they
    // go again.
    scripts::resend_unknown(conn, cmds, &mut replies, &INDEX_ENTRY, &mut scripts::Reloads::default()).await?;
    Ok(replies)
}

/// The hash's remaining TTL in ms (0 when it has none).
async fn remaining_ttl<C: ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<u64> {
    let ms: i64 = redis::cmd("PTTL").arg(key).query_async(conn).await?;
    Ok(u64::try_from(ms).unwrap_or(0))
}

/// Removes the members that step 2 added (op, key), after a refused or failed write.
pub(super) async fn release<C: ConnectionLike + Send>(
    conn: &mut C,
    plan: &WritePlan<'_, '_>,
    ops: &[IndexOp],
    added: &[(usize, String)],
) {
    let cmds: Vec<Cmd> = added
        .iter()
        .map(|(i, key)| plan.entry_cmd(EntryAction::Remove, &ops[*i], key, 0, *i))
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
        return run_steps(conn, plan, None).await;
    };
    let attempt = outbox::attempt_id()?;
    outbox::record(conn, stream, &attempt, &plan.target.key, entry).await?;
    checkpoint!(plan, Outboxed);
    let result = run_steps(conn, plan, Some(&attempt)).await;
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
                | Error::OutOfMemory(_)
                | Error::UnexpectedReply { .. })
    ) && let Err(e) = outbox::clear(conn, stream, &attempt).await
    {
        tracing::warn!(key = %plan.target.shown(), error = %e, "could not clear the outbox entry of a refused write");
    }
    result
}

async fn run_steps<C: ConnectionLike + Send>(
    conn: &mut C,
    plan: &mut WritePlan<'_, '_>,
    outboxed: Option<&str>,
) -> Result<Outcome> {
    // Entries this write has claimed (op, key), and those it added itself
    // (released if the write is refused); kept across attempts while the
    // entity's new index keys stay the same.
    let mut held: Vec<(usize, String)> = Vec::new();
    let mut added: Vec<(usize, String)> = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        let ops = plan.entries()?;
        if plan.mode == Mode::Delete {
            let reply: Value = scripts::run(conn, &WRITE, &plan.hash_invocation()?).await?;
            match plan.absorb(reply)? {
                Step::Done(outcome) => {
                    checkpoint!(plan, HashWritten);
                    let after = after_hash(plan, &ops, 0, matches!(outcome, Outcome::Done(_)));
                    // The hash is gone: a failure now leaves entries that
                    // reads skip, and the caller an outcome to read.
                    finish(conn, plan, &after).await.map_err(Error::after_writes)?;
                    return Ok(outcome);
                }
                Step::Again => continue,
                Step::CheckOwner { .. } => return Err(unexpected(plan, "a delete met a unique claim")),
            }
        }
        // Claims of an earlier attempt that this one no longer wants go.
        let wanted = |i: usize, key: &str| ops[i].new.as_deref() == Some(key);
        let stale: Vec<(usize, String)> = added.iter().filter(|(i, k)| !wanted(*i, k)).cloned().collect();
        if !stale.is_empty() {
            release(conn, plan, &ops, &stale).await;
        }
        held.retain(|(i, k)| wanted(*i, k));
        added.retain(|(i, k)| wanted(*i, k));
        let life = match plan.life_ms()? {
            Some(ms) => ms,
            None => remaining_ttl(conn, &plan.target.key).await?,
        };
        // Step 2: claim the new entries.
        if plan.mode != Mode::Expire {
            let claims: Vec<(usize, String, Cmd)> = ops
                .iter()
                .enumerate()
                .filter_map(|(i, op)| {
                    let key = op.new.as_deref()?;
                    if held.iter().any(|(j, k)| *j == i && k == key) {
                        return None;
                    }
                    Some((i, key.to_owned(), plan.entry_cmd(EntryAction::Claim, op, key, life, i)))
                })
                .collect();
            let cmds: Vec<Cmd> = claims.iter().map(|(_, _, c)| c.clone()).collect();
            let replies = send_steps(conn, &cmds).await?;
            let mut taken = None;
            let mut failed = None;
            for ((i, key, _), reply) in claims.into_iter().zip(replies) {
                match parse_entry(&key, reply) {
                    Ok(Entry::Changed(new)) => {
                        if new {
                            added.push((i, key.clone()));
                        }
                        held.push((i, key));
                    }
                    Ok(Entry::Unique(owner)) => taken = Some((i, owner)),
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(e) = failed {
                release(conn, plan, &ops, &added).await;
                return Err(e);
            }
            if let Some((op, owner)) = taken {
                if plan.stale_owner(op) == Some(owner.as_str()) {
                    release(conn, plan, &ops, &added).await;
                    return Err(plan.unique_violation(op, owner));
                }
                let reply = match plan.owner_lookup(&owner) {
                    Some(cmd) => Some(cmd.query_async::<Value>(conn).await?),
                    None => None,
                };
                if let Err(e) = plan.judge_owner(op, owner, reply) {
                    release(conn, plan, &ops, &added).await;
                    return Err(e);
                }
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
            // The indexed fields moved: the next attempt keeps the claims it still wants.
            Ok(Step::Again) => continue,
            Ok(Step::CheckOwner { .. }) => return Err(unexpected(plan, "the hash write met a unique claim")),
            Err(e) => {
                release(conn, plan, &ops, &added).await;
                return Err(e);
            }
        }
        checkpoint!(plan, HashWritten);
        // Step 4: old entries go, new ones get their final score and TTL.
        // The hash is written: a failure from here on is not "nothing was
        // written" (an OOM on the stream's node included), but an outcome
        // to read; the outbox sweep finishes a stream entry left behind.
        let after = after_hash(plan, &ops, life, false);
        finish(conn, plan, &after).await.map_err(Error::after_writes)?;
        let id = match plan.extras.stream {
            Some((stream, entry)) if let Some(attempt) = outboxed => {
                let id = outbox::append(conn, stream, entry).await.map_err(Error::after_writes)?;
                checkpoint!(plan, Appended);
                // The entry is appended; a record left behind only makes the
                // sweep append it again, which a consumer must take anyway.
                if let Err(e) = outbox::clear(conn, stream, attempt).await {
                    tracing::warn!(key = %plan.target.shown(), error = %e, "could not clear an outbox record; the sweep will append its entry again");
                }
                Some(id)
            }
            _ => None,
        };
        return Ok(Outcome::Done(id));
    }
    if let Ok(ops) = plan.entries() {
        release(conn, plan, &ops, &added).await;
    }
    Err(Error::Contention {
        key: plan.target.shown().into_owned(),
        attempts: MAX_ATTEMPTS,
    })
}

/// The steps after the hash write: old entries removed; new ones given their
/// final score and TTL (an expire only lengthens their TTL); for a delete that
/// found the entity (`deleted`), the keys deleted with it.
pub(super) fn after_hash(plan: &WritePlan<'_, '_>, ops: &[IndexOp], life: u64, deleted: bool) -> Vec<Cmd> {
    let mut cmds = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if let Some(old) = op.old.as_deref() {
            cmds.push(plan.entry_cmd(EntryAction::Remove, op, old, 0, i));
        }
        let action = match plan.mode {
            Mode::Delete => continue,
            Mode::Expire => EntryAction::Touch,
            _ => EntryAction::Add,
        };
        if let Some(new) = op.new.as_deref() {
            cmds.push(plan.entry_cmd(action, op, new, life, i));
        }
    }
    if deleted {
        cmds.extend(plan.extras.delete_keys.iter().map(|k| {
            let mut del = redis::cmd("DEL");
            del.arg(k);
            del
        }));
    }
    cmds
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
