//! Sending write plans: one at a time with retries, or many in pipelined chunks.

use redis::aio::ConnectionLike;
use redis::{Cmd, Script, Value};

use super::ordered::{run_ordered, run_ordered_many};
use super::plan::{Outcome, Step, WritePlan};
use super::protocol::Mode;
use crate::error::{Error, Result};
use crate::scripts;

/// How often a write retries after the hash changed under it.
///
/// A retry goes out at once: its snapshot of the indexed fields (from the
/// script's answer) only ages while it waits, so pausing would make a second
/// collision likelier, not rarer. Every retry means another writer of the same
/// entity succeeded, so the system always progresses; one writer gives up with
/// `Error::Contention` (having written nothing) only under a storm of writes
/// that move the same entity's index entries.
pub(crate) const MAX_ATTEMPTS: u32 = 16;

/// How many commands one pipeline of a bulk call carries.
pub(crate) const BULK_CHUNK: usize = 500;

/// Writes per call of a script of many (`many.lua`): a script call costs the
/// server more than the commands in it, and 100 keep one call short.
const PER_CALL: usize = 100;

fn contention(plan: &WritePlan<'_, '_>) -> Error {
    Error::Contention {
        key: plan.target.shown().into_owned(),
        attempts: MAX_ATTEMPTS,
    }
}

/// Runs one write: a lookup first when it must learn where its index entries
/// are, then the script, again while the hash keeps moving under it.
pub(crate) async fn run_write<C: ConnectionLike + Send>(conn: &mut C, mut plan: WritePlan<'_, '_>) -> Result<Outcome> {
    if let Some(lookup) = plan.lookup() {
        let reply: Value = lookup.query_async(conn).await?;
        plan.learn(reply)?;
    }
    for _ in 0..MAX_ATTEMPTS {
        let cmd = plan.invocation()?;
        let reply: Value = match scripts::run(conn, plan.script(), &cmd).await {
            // The entity's keys are in several cluster slots.
            Err(Error::Redis(e)) if scripts::is_cross_slot(&e) => return run_ordered(conn, &mut plan).await,
            other => other?,
        };
        match plan.absorb(reply)? {
            Step::Done(outcome) => return Ok(outcome),
            Step::Again => {}
            Step::CheckOwner { op, owner } => check_owner(conn, &mut plan, op, owner).await?,
        }
    }
    Err(contention(&plan))
}

/// Reads a unique value's owner and lets the plan judge whether to take it over.
async fn check_owner<C: ConnectionLike + Send>(
    conn: &mut C,
    plan: &mut WritePlan<'_, '_>,
    op: usize,
    owner: String,
) -> Result<()> {
    let reply = match plan.owner_lookup(&owner) {
        Some(cmd) => Some(cmd.query_async::<Value>(conn).await?),
        None => None,
    };
    plan.judge_owner(op, owner, reply)
}

/// Sends `cmds` as one pipeline and checks that every command got its reply.
async fn pipeline<C: ConnectionLike + Send>(conn: &mut C, cmds: &[Cmd], key: &str) -> Result<Vec<Value>> {
    let n = cmds.len();
    let replies = crate::engine::pipeline::query(conn, cmds).await?;
    if replies.len() != n {
        return Err(Error::UnexpectedReply {
            key: key.to_owned(),
            detail: format!("{} replies to {n} commands", replies.len()),
        });
    }
    Ok(replies)
}

/// Runs many writes, each atomic on its own, as pipelines of [`BULK_CHUNK`]:
/// one round trip per chunk, plus one for the writes that had to learn where
/// their index entries are. Returns each write's outcome in order.
pub(crate) async fn run_writes<C: ConnectionLike + Send>(
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
        let key = plans[chunk[0].0].target.shown().into_owned();
        let lookups: Vec<Cmd> = chunk.iter().map(|(_, c)| c.clone()).collect();
        let replies = pipeline(conn, &lookups, &key).await?;
        for (&(i, _), reply) in chunk.iter().zip(replies) {
            if let Err(e) = plans[i].learn(reply) {
                results[i] = Some(Err(e));
            }
        }
    }
    let mut pending: Vec<usize> = (0..plans.len()).filter(|&i| results[i].is_none()).collect();
    let mut state = Settling {
        results,
        next: Vec::new(),
        ordered: Vec::new(),
        reloads: scripts::Reloads::default(),
    };
    // Writes go PER_CALL to a call of their script of many; once such a call
    // is refused across cluster slots, each goes on its own.
    let mut together = true;
    for _ in 0..MAX_ATTEMPTS {
        if pending.is_empty() {
            break;
        }
        for chunk in pending.chunks(BULK_CHUNK) {
            let mut cmds = Vec::with_capacity(chunk.len());
            // The plans each command carries, and the script of a call of many.
            let mut sent: Vec<(Vec<usize>, Option<&'static Script>)> = Vec::with_capacity(chunk.len());
            // Deletes and other writes, each in calls of up to PER_CALL.
            let (deletes, writes): (Vec<usize>, Vec<usize>) =
                chunk.iter().partition(|&&i| plans[i].mode == Mode::Delete);
            let per_call = if together { PER_CALL } else { 1 };
            for group in deletes.chunks(per_call).chain(writes.chunks(per_call)) {
                let mut calls = Vec::with_capacity(group.len());
                let mut members = Vec::with_capacity(group.len());
                for &i in group {
                    match plans[i].invocation() {
                        Ok(cmd) => {
                            calls.push(cmd);
                            members.push(i);
                        }
                        Err(e) => state.results[i] = Some(Err(e)),
                    }
                }
                let many = plans[group[0]].many_script();
                match (members.len() > 1).then(|| scripts::joined(&calls, many)).flatten() {
                    Some(cmd) => {
                        cmds.push(cmd);
                        sent.push((members, Some(many)));
                    }
                    _ => {
                        for (i, cmd) in members.into_iter().zip(calls) {
                            cmds.push(cmd);
                            sent.push((vec![i], None));
                        }
                    }
                }
            }
            let Some((first, _)) = sent.first() else { continue };
            let key = plans[first[0]].target.shown().into_owned();
            let replies = pipeline(conn, &cmds, &key).await?;
            for (((members, many), reply), cmd) in sent.into_iter().zip(replies).zip(&cmds) {
                // A server that lost the script (a restart, a flush): load
                // it and send this call again, as often as it takes.
                let reply = if scripts::is_noscript(&reply) {
                    let script = many.unwrap_or_else(|| plans[members[0]].script());
                    scripts::send_loading(conn, script, cmd, &mut state.reloads).await?
                } else {
                    reply
                };
                if many.is_some() {
                    if scripts::is_cross_slot_reply(&reply) {
                        together = false;
                        state.next.extend(members);
                    } else {
                        match reply {
                            Value::Array(answers) if answers.len() == members.len() => {
                                for (i, answer) in members.into_iter().zip(answers) {
                                    state.settle(conn, &mut plans[i], i, answer).await?;
                                }
                            }
                            other => {
                                for i in members {
                                    state.results[i] = Some(Err(match &other {
                                        // A call of many that failed part-way
                                        // may have written the writes before.
                                        Value::ServerError(e) => {
                                            Error::from(redis::RedisError::from(e.clone())).part_way()
                                        }
                                        _ => Error::UnexpectedReply {
                                            key: plans[i].target.shown().into_owned(),
                                            detail: format!("a script of many writes answered {other:?}"),
                                        },
                                    }));
                                }
                            }
                        }
                    }
                    continue;
                }
                let i = members[0];
                if scripts::is_cross_slot_reply(&reply) {
                    state.ordered.push(i);
                    continue;
                }
                state.settle(conn, &mut plans[i], i, reply).await?;
            }
        }
        pending = std::mem::take(&mut state.next);
    }
    let Settling {
        mut results,
        mut ordered,
        ..
    } = state;
    for i in pending {
        results[i] = Some(Err(contention(&plans[i])));
    }
    ordered.sort_unstable();
    let mut picked: Vec<&mut WritePlan<'_, '_>> = plans
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| ordered.binary_search(i).is_ok())
        .map(|(_, p)| p)
        .collect();
    let outcomes = run_ordered_many(conn, &mut picked).await;
    for (i, outcome) in ordered.into_iter().zip(outcomes) {
        results[i] = Some(outcome);
    }
    Ok(results
        .into_iter()
        .zip(&plans)
        .map(|(r, plan)| {
            r.unwrap_or_else(|| {
                Err(Error::UnexpectedReply {
                    key: plan.target.shown().into_owned(),
                    detail: "the write got no outcome".into(),
                })
            })
        })
        .collect())
}

/// What the answers of one round of [`run_writes`] leave to do.
struct Settling {
    results: Vec<Option<Result<Outcome>>>,
    /// Writes to send again.
    next: Vec<usize>,
    /// Writes whose keys a cluster keeps in several slots: ordered steps.
    ordered: Vec<usize>,
    /// Loads of scripts a server lost during the run.
    reloads: scripts::Reloads,
}

impl Settling {
    /// Takes in the answer to write `i`: done, refused, or to send again.
    async fn settle<C: ConnectionLike + Send>(
        &mut self,
        conn: &mut C,
        plan: &mut WritePlan<'_, '_>,
        i: usize,
        reply: Value,
    ) -> Result<()> {
        match plan.absorb(reply) {
            Ok(Step::Done(outcome)) => self.results[i] = Some(Ok(outcome)),
            Ok(Step::Again) => self.next.push(i),
            // Rare: a unique value held by an owner that may be gone.
            Ok(Step::CheckOwner { op, owner }) => match check_owner(conn, plan, op, owner).await {
                Ok(()) => self.next.push(i),
                Err(e) => self.results[i] = Some(Err(e)),
            },
            Err(e) => self.results[i] = Some(Err(e)),
        }
        Ok(())
    }
}
