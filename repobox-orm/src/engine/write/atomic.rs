//! Atomic writes: each write one script call that changes the hash, its
//! index entries and its TTL together. Writes go in pipelines of
//! [`BULK_CHUNK`] calls, joined [`PER_CALL`] to a call of the script of many
//! where they may share one (a single write is a batch of one: one call, one
//! round trip). A write whose hash moved under it goes again.

use redis::aio::ConnectionLike;
use redis::{Cmd, Script, Value};

use super::plan::{Next, Outcome, WritePlan};
use super::route::Router;
use crate::engine::pipeline;
use crate::error::{Error, Result};
use crate::scripts;
use crate::scripts::write_entity::Mode;

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
pub(crate) const PER_CALL: usize = 100;

/// One script call of a round: the writes it carries, and the script of
/// many when it carries several (the call itself is in the round's commands).
struct Call {
    members: Vec<usize>,
    many: Option<&'static Script>,
}

/// Runs the writes `pending` of `plans` atomically, each outcome to its place
/// in `results`. Returns the writes the connection refused across cluster
/// slots (nothing of them ran): they go ordered.
pub(super) async fn run<C: ConnectionLike + Send>(
    conn: &mut C,
    router: &mut Router,
    plans: &mut [WritePlan<'_, '_>],
    mut pending: Vec<usize>,
    results: &mut [Option<Result<Outcome>>],
) -> Result<Vec<usize>> {
    let mut refused = Vec::new();
    let mut reloads = pipeline::Reloads::default();
    for _ in 0..MAX_ATTEMPTS {
        if pending.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for chunk in pending.chunks(BULK_CHUNK) {
            let (calls, cmds) = calls(router, plans, chunk, results);
            let mut replies = pipeline::query(conn, &cmds).await?;
            // A server that lost the scripts (a restart, a flush): each is
            // loaded once and its calls go again, as often as it takes.
            let script_of = |i: usize| Some(calls[i].many.unwrap_or_else(|| plans[calls[i].members[0]].script()));
            pipeline::resend_unknown_of(conn, &cmds, &mut replies, script_of, &mut reloads).await?;
            for (call, reply) in calls.into_iter().zip(replies) {
                if router.refused(&reply) {
                    refused.extend(call.members);
                    continue;
                }
                if call.many.is_none() {
                    let i = call.members[0];
                    settle(conn, &mut plans[i], reply, &mut next, i, results).await;
                    continue;
                }
                match reply {
                    Value::Array(answers) if answers.len() == call.members.len() => {
                        for (i, answer) in call.members.into_iter().zip(answers) {
                            settle(conn, &mut plans[i], answer, &mut next, i, results).await;
                        }
                    }
                    other => {
                        for i in call.members {
                            results[i] = Some(Err(match &other {
                                // A call of many that failed part-way may
                                // have written the writes before.
                                Value::ServerError(e) => Error::from(redis::RedisError::from(e.clone())).part_way(),
                                _ => Error::UnexpectedReply {
                                    key: plans[i].target.shown().into_owned(),
                                    detail: format!("a script of many writes answered {other:?}"),
                                },
                            }));
                        }
                    }
                }
            }
        }
        pending = next;
    }
    for i in pending {
        results[i] = Some(Err(Error::Contention {
            key: plans[i].target.shown().into_owned(),
            attempts: MAX_ATTEMPTS,
        }));
    }
    Ok(refused)
}

/// Writes that may share a call: deletes or not, and on a cluster their slot.
type JoinGroup = (bool, Option<u16>);

/// The script calls of `chunk`: deletes and other writes apart, joined
/// [`PER_CALL`] to a call where the router lets them share one.
fn calls(
    router: &Router,
    plans: &[WritePlan<'_, '_>],
    chunk: &[usize],
    results: &mut [Option<Result<Outcome>>],
) -> (Vec<Call>, Vec<Cmd>) {
    let mut groups: Vec<(JoinGroup, Vec<(usize, scripts::Call)>)> = Vec::new();
    for &i in chunk {
        let plan = &plans[i];
        let cmd = match plan.call() {
            Ok(cmd) => cmd,
            Err(e) => {
                results[i] = Some(Err(e));
                continue;
            }
        };
        let slot = match router.is_cluster() {
            true => router.join_group(plan.keys().unwrap_or_default().iter().map(String::as_str)),
            false => None,
        };
        // Deletes go to the delete script, unless they have conditions.
        let group = (plan.mode == Mode::Delete && plan.options.conditions.is_empty(), slot);
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, members)) => members.push((i, cmd)),
            None => groups.push((group, vec![(i, cmd)])),
        }
    }
    let mut calls = Vec::new();
    let mut cmds = Vec::new();
    for (_, mut members) in groups {
        for part in members.chunks_mut(PER_CALL) {
            let first = part[0].0;
            if let [(i, call)] = part {
                calls.push(Call {
                    members: vec![*i],
                    many: None,
                });
                cmds.push(call.command(plans[*i].script()));
                continue;
            }
            let many = plans[first].many_script();
            let members = part.iter().map(|(i, _)| *i).collect();
            let mut parts: Vec<scripts::Call> = part.iter_mut().map(|(_, c)| std::mem::take(c)).collect();
            calls.push(Call {
                members,
                many: Some(many),
            });
            cmds.push(scripts::Call::joined(&mut parts, many));
        }
    }
    (calls, cmds)
}

/// Takes in the answer to write `i`: done, refused, or to send again.
async fn settle<C: ConnectionLike + Send>(
    conn: &mut C,
    plan: &mut WritePlan<'_, '_>,
    reply: Value,
    next: &mut Vec<usize>,
    i: usize,
    results: &mut [Option<Result<Outcome>>],
) {
    match plan.take_answer(reply) {
        Ok(Next::Done(outcome)) => results[i] = Some(Ok(outcome)),
        Ok(Next::Again) => next.push(i),
        // Rare: a unique value held by an owner that may be gone.
        Ok(Next::CheckOwner { op, owner }) => match check_owner(conn, plan, op, owner).await {
            Ok(()) => next.push(i),
            Err(e) => results[i] = Some(Err(e)),
        },
        Err(e) => results[i] = Some(Err(e)),
    }
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
    plan.decide_takeover(op, owner, reply)
}
