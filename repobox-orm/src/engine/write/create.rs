//! Creates of entities whose indexes are sorted or set indexes (no unique
//! one, whose claim needs the general script's owner checks), by the create
//! script (`scripts/create_entity.lua`, protocol in `scripts/create_entity.rs`):
//! one entity or many, [`PER_CALL`] entities per script call and
//! [`BULK_CHUNK`] per round trip (a single create is a batch of one). Each
//! checks and writes what a hand-written create does (the hash absent,
//! `EXISTS`; the entries; `HSET`; the TTL), atomic with its index entries and
//! TTL and answered on its own.
//!
//! Each entity is routed first: one whose keys a cluster keeps in several
//! slots becomes a write plan and goes the ordered way, as does one the
//! connection refused across slots.

use redis::Value;
use redis::aio::ConnectionLike;

use super::atomic::{BULK_CHUNK, PER_CALL};
use super::plan::{Outcome, WritePlan, checked_score, ttl_millis};
use super::route::{self, Route, Router};
use crate::engine::encoding::Encoded;
use crate::engine::pipeline;
use crate::entity::RedisEntity;
use crate::error::{Error, Result};
use crate::meta::IndexKind;
use crate::scripts::create_entity::{CreateCall, CreateReply};
use crate::scripts::write_entity::Mode;
use crate::scripts::{CREATE, CREATE_MANY, Call};

/// Whether creates of `E` can take this path.
pub(super) fn applies<E: RedisEntity>() -> bool {
    // An entity with a previous key is moved first, by `route`.
    E::META.previous.is_none()
        && !E::META.indexes.is_empty()
        && !E::META.indexes.iter().any(|ix| ix.kind == IndexKind::Unique)
}

/// An entity ready to send: its encoding, and per index its kind, key and score.
struct Ready<'e> {
    encoded: Encoded<'e>,
    entries: Vec<(IndexKind, String, String)>,
}

impl Ready<'_> {
    fn create_call(&self, ttl_ms: u64) -> CreateCall<'_> {
        CreateCall {
            hash_key: &self.encoded.target.key,
            id: &self.encoded.target.id,
            ttl_ms,
            entries: &self.entries,
            fields: &self.encoded.fields.set,
        }
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.encoded.target.key.as_str()).chain(self.entries.iter().map(|(_, k, _)| k.as_str()))
    }
}

fn ready<E: RedisEntity>(entity: &E) -> Result<Ready<'_>> {
    let encoded = Encoded::sealed(entity)?;
    let entries = E::META
        .indexes
        .iter()
        // A sorted index whose score is absent holds no entry of the entity.
        .filter(|ix| !matches!(ix.kind, IndexKind::Sorted { score } if encoded.fields.get(score).is_none()))
        .map(|ix| {
            let key = encoded.index_key(&ix.key)?;
            let score = match ix.kind {
                IndexKind::Sorted { score } => checked_score(score, encoded.fields.get(score))?,
                _ => String::new(),
            };
            Ok((ix.kind, key, score))
        })
        .collect::<Result<_>>()?;
    Ok(Ready { encoded, entries })
}

/// One round trip of creates: its entities (by position in the batch),
/// encoded, and the script calls that carry them.
struct Round<'e> {
    start: usize,
    prepared: Vec<Result<Ready<'e>>>,
    /// Positions (in `prepared`) of each call's entities...
    calls: Vec<Vec<usize>>,
    /// ...and the calls, in that order.
    pipe: redis::Pipeline,
    /// Positions (in `prepared`) whose keys are in several cluster slots.
    split: Vec<usize>,
}

fn round<'e, E: RedisEntity>(router: &Router, entities: &'e [E], start: usize, ttl_ms: u64) -> Round<'e> {
    let end = (start + BULK_CHUNK).min(entities.len());
    let prepared: Vec<Result<Ready<'_>>> = entities[start..end].iter().map(ready::<E>).collect();
    let mut split = Vec::new();
    let mut groups: Vec<(Option<u16>, Vec<usize>)> = Vec::new();
    for (i, r) in prepared.iter().enumerate() {
        let Ok(r) = r else { continue };
        // On a cluster, creates share a call only where they share a slot
        // (co-located entities of different tags do not).
        let group = match router.route(E::META.co_located, r.keys()) {
            Route::Ordered => {
                split.push(i);
                continue;
            }
            Route::Atomic => router.join_group(r.keys()),
        };
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, members)) => members.push(i),
            None => groups.push((group, vec![i])),
        }
    }
    let mut calls = Vec::new();
    let mut pipe = redis::pipe();
    for (_, members) in groups {
        for part in members.chunks(PER_CALL) {
            let ready = part.iter().filter_map(|&i| prepared[i].as_ref().ok());
            let cmd = match part {
                [_] => match ready.map(|r| r.create_call(ttl_ms).command()).next() {
                    Some(cmd) => cmd,
                    None => continue,
                },
                _ => {
                    let mut parts: Vec<Call> = ready.map(|r| r.create_call(ttl_ms).call()).collect();
                    Call::joined(&mut parts, &CREATE_MANY)
                }
            };
            calls.push(part.to_vec());
            pipe.add_command(cmd);
        }
    }
    Round {
        start,
        prepared,
        calls,
        pipe,
        split,
    }
}

/// What the create script's answer for `ready` means.
fn outcome(ready: &Ready<'_>, answer: Value) -> Result<()> {
    let target = &ready.encoded.target;
    match CreateReply::parse(&target.shown(), &target.key, answer)? {
        CreateReply::Created => Ok(()),
        CreateReply::Exists => Err(Error::AlreadyExists {
            key: target.shown().into_owned(),
        }),
    }
}

/// Creates one entity: the route and the script of a batch, without a
/// batch's bookkeeping (one call, one round trip).
pub(super) async fn create_one<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, entity: &E) -> Result<()> {
    let ttl_ms = E::META.ttl.map(ttl_millis).transpose()?.unwrap_or(0);
    let mut router = Router::new(conn);
    let ready = ready::<E>(entity)?;
    if router.route(E::META.co_located, ready.keys()) == Route::Atomic {
        let cmd = ready.create_call(ttl_ms).command();
        let reply = pipeline::send_loading(conn, &CREATE, &cmd, &mut pipeline::Reloads::default()).await?;
        if !router.refused(&reply) {
            return outcome(&ready, reply);
        }
    }
    let plan = WritePlan::new::<E>(Mode::Create, &ready.encoded.target, &ready.encoded.fields, E::META.ttl);
    let key = plan.target.shown().into_owned();
    match route::run_routed(conn, &mut router, vec![plan]).await?.pop() {
        Some(outcome) => outcome.map(drop),
        None => Err(Error::UnexpectedReply {
            key,
            detail: "the create got no outcome".into(),
        }),
    }
}

/// Creates `entities`; per entity `Ok` or why not, in order.
///
/// Each round trip carries [`BULK_CHUNK`] entities; the next round is
/// encoded while the server works on the current one.
pub(super) async fn create_many<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    entities: &[E],
) -> Result<Vec<Result<()>>> {
    let ttl_ms = E::META.ttl.map(ttl_millis).transpose()?.unwrap_or(0);
    let mut router = Router::new(conn);
    let mut results: Vec<Option<Result<()>>> = (0..entities.len()).map(|_| None).collect();
    // Entities to write as plans: split across slots, or refused across them.
    let mut planned: Vec<(usize, Ready<'_>)> = Vec::new();
    let mut next = (!entities.is_empty()).then(|| round::<E>(&router, entities, 0, ttl_ms));
    let mut reloads = pipeline::Reloads::default();
    while let Some(mut current) = next.take() {
        let following = current.start + BULK_CHUNK;
        let (sent, upcoming) = tokio::join!(pipeline::send(conn, &mut current.pipe), async {
            (following < entities.len()).then(|| round::<E>(&router, entities, following, ttl_ms))
        });
        next = upcoming;
        let mut replies = sent?;
        // A server that lost the scripts (a restart, a flush): each is
        // loaded once and its calls go again.
        if replies.iter().any(pipeline::is_noscript) {
            let cmds: Vec<redis::Cmd> = current.pipe.cmd_iter().cloned().collect();
            let script_of = |i: usize| match current.calls[i].len() {
                1 => Some(&*CREATE),
                _ => Some(&*CREATE_MANY),
            };
            pipeline::resend_unknown_of(conn, &cmds, &mut replies, script_of, &mut reloads).await?;
        }
        settle(&mut router, current, replies, &mut results, &mut planned);
    }
    if !planned.is_empty() {
        let plans: Vec<WritePlan<'_, '_>> = planned
            .iter()
            .map(|(_, r)| WritePlan::new::<E>(Mode::Create, &r.encoded.target, &r.encoded.fields, E::META.ttl))
            .collect();
        let outcomes = route::run_routed(conn, &mut router, plans).await?;
        for ((i, _), outcome) in planned.iter().zip(outcomes) {
            results[*i] = Some(outcome.map(|_: Outcome| ()));
        }
    }
    Ok(results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                Err(Error::UnexpectedReply {
                    key: String::new(),
                    detail: format!("entity {i} of the create got no outcome"),
                })
            })
        })
        .collect())
}

/// Takes in the replies of `round`: each entity's outcome into `results`;
/// the entities to write as plans (split across slots, or refused across
/// them) into `planned`.
fn settle<'e>(
    router: &mut Router,
    round: Round<'e>,
    replies: Vec<Value>,
    results: &mut [Option<Result<()>>],
    planned: &mut Vec<(usize, Ready<'e>)>,
) {
    let start = round.start;
    let mut prepared: Vec<Option<Result<Ready<'e>>>> = round.prepared.into_iter().map(Some).collect();
    let mut to_plan: Vec<usize> = round.split;
    for (members, reply) in round.calls.iter().zip(replies) {
        if router.refused(&reply) {
            to_plan.extend(members);
            continue;
        }
        let answers = match (members.len(), reply) {
            (1, answer) => vec![answer],
            (n, Value::Array(answers)) if answers.len() == n => answers,
            (_, Value::ServerError(e)) => {
                // A script that fails part-way may have written the entities
                // before: their outcome is unknown. An OOM refusal comes before
                // a script's first write: nothing was written.
                let e = Error::from(redis::RedisError::from(e)).part_way();
                for &i in members {
                    results[start + i] = Some(Err(e.part_way()));
                }
                continue;
            }
            (_, other) => {
                for &i in members {
                    results[start + i] = Some(Err(Error::UnexpectedReply {
                        key: String::new(),
                        detail: format!("the create script answered {other:?}"),
                    }));
                }
                continue;
            }
        };
        for (&i, answer) in members.iter().zip(answers) {
            if let Some(Some(Ok(r))) = prepared.get(i) {
                results[start + i] = Some(outcome(r, answer));
            }
        }
    }
    to_plan.sort_unstable();
    for i in to_plan {
        if let Some(Some(Ok(r))) = prepared.get_mut(i).map(Option::take) {
            planned.push((start + i, r));
        }
    }
    for (i, p) in prepared.into_iter().enumerate() {
        if let Some(Err(e)) = p {
            results[start + i] = Some(Err(e));
        }
    }
}
