//! Creates of entities whose indexes are sorted or set indexes (no unique
//! one, whose claim needs the general script's owner checks), by the create
//! script (`scripts/create_entity.lua`): one at a time, and `create_many` at
//! pipeline speed, up to [`PER_CALL`] entities per script call and
//! [`BULK_CHUNK`] per round trip. Both check and write what a hand-written
//! create does (the hash absent, `EXISTS`; the entries; `HSET`; the TTL),
//! each entity atomic with its index entries and TTL and answered on its
//! own. A call whose keys a cluster keeps in several slots is refused
//! (`CROSSSLOT`): one entity goes the ordered way, a bulk call's entities
//! the per-entity way.

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};

use super::BULK_CHUNK;
use super::plan::{score_of, ttl_millis};
use crate::crypto::seal_fields;
use crate::engine::target::Encoded;
use crate::entity::RedisEntity;
use crate::error::{Error, Result};
use crate::meta::IndexKind;
use crate::scripts::{self, CREATE, CREATE_MANY};

/// Entities per script call: big enough to spread the call's cost, small
/// enough that one call never holds the server for long.
const PER_CALL: usize = 100;

/// Whether `create_many` of `E` can take this path.
pub(super) fn applies<E: RedisEntity>() -> bool {
    !E::META.indexes.iter().any(|ix| ix.kind == IndexKind::Unique)
}

/// An entity ready to send: its encoding, and per index its key and score.
struct Ready<'e> {
    encoded: Encoded<'e>,
    entries: Vec<(String, String)>,
}

fn ready<E: RedisEntity>(entity: &E) -> Result<Ready<'_>> {
    let mut encoded = Encoded::of(entity)?;
    seal_fields::<E>(&encoded.target.key, &mut encoded.fields)?;
    let entries = E::META
        .indexes
        .iter()
        .map(|ix| {
            let key = encoded.index_key(&ix.key)?;
            let score = match ix.kind {
                IndexKind::Sorted { score } => score_of(score, encoded.fields.get(score))?,
                _ => String::new(),
            };
            Ok((key, score))
        })
        .collect::<Result<_>>()?;
    Ok(Ready { encoded, entries })
}

fn kinds<E: RedisEntity>() -> String {
    E::META
        .indexes
        .iter()
        .map(|ix| {
            if matches!(ix.kind, IndexKind::Sorted { .. }) {
                'z'
            } else {
                's'
            }
        })
        .collect()
}

/// The create script's call for `r`.
fn create_call<E: RedisEntity>(r: &Ready<'_>, ttl_ms: u64) -> Cmd {
    let keys: Vec<&str> = std::iter::once(r.encoded.target.key.as_str())
        .chain(r.entries.iter().map(|(k, _)| k.as_str()))
        .collect();
    let mut cmd = scripts::evalsha(&CREATE, &keys);
    cmd.arg(kinds::<E>()).arg(ttl_ms).arg(&r.encoded.target.id);
    for (_, score) in &r.entries {
        cmd.arg(score);
    }
    for (name, value) in &r.encoded.fields.set {
        cmd.arg(*name).arg(value.as_ref());
    }
    cmd
}

/// Creates one entity with the create script; `ordered` creates it when its
/// keys are in several cluster slots.
pub(super) async fn create_one<E, C, F>(conn: &mut C, entity: &E, ordered: F) -> Result<()>
where
    E: RedisEntity,
    C: ConnectionLike + Send,
    F: AsyncFnOnce(&mut C, &E) -> Result<()>,
{
    let ttl_ms = E::META.ttl.map(ttl_millis).transpose()?.unwrap_or(0);
    let r = ready(entity)?;
    match scripts::run::<Value, C>(conn, &CREATE, &create_call::<E>(&r, ttl_ms)).await {
        Err(Error::Redis(e)) if scripts::is_cross_slot(&e) => ordered(conn, entity).await,
        Ok(code) => outcome(&r, Some(&code)),
        Err(e) => Err(e),
    }
}

/// One round trip of a bulk create: its entities (by position), encoded,
/// grouped into script calls, and the pipeline of those calls.
struct Round<'e> {
    start: usize,
    prepared: Vec<Result<Ready<'e>>>,
    /// Positions (in `prepared`) of each call's entities.
    batches: Vec<Vec<usize>>,
    pipe: redis::Pipeline,
}

fn round<'e, E: RedisEntity>(entities: &'e [E], start: usize, ttl_ms: u64) -> Round<'e> {
    let end = (start + BULK_CHUNK).min(entities.len());
    let mut prepared: Vec<Result<Ready<'_>>> = entities[start..end].iter().map(ready::<E>).collect();
    let live: Vec<usize> = (0..prepared.len()).filter(|&i| prepared[i].is_ok()).collect();
    let mut batches = Vec::new();
    let mut pipe = redis::pipe();
    for batch in live.chunks(PER_CALL) {
        let calls: Vec<Cmd> = batch
            .iter()
            .filter_map(|&i| prepared[i].as_ref().ok())
            .map(|r| create_call::<E>(r, ttl_ms))
            .collect();
        match scripts::joined(&calls, &CREATE_MANY) {
            Some(cmd) => {
                pipe.add_command(cmd);
                batches.push(batch.to_vec());
            }
            None => {
                for &i in batch {
                    prepared[i] = Err(Error::Encode {
                        field: "create",
                        message: "a create call that is not a script call".into(),
                    });
                }
            }
        }
    }
    Round {
        start,
        prepared,
        batches,
        pipe,
    }
}

fn outcome(ready: &Ready<'_>, code: Option<&Value>) -> Result<()> {
    let key = || ready.encoded.target.shown().into_owned();
    let wrong = |key: String| Error::UnexpectedReply {
        key,
        detail: "the key holds the wrong kind of value".into(),
    };
    match code {
        Some(Value::Int(1)) => Ok(()),
        Some(Value::Int(0)) => Err(Error::AlreadyExists { key: key() }),
        Some(Value::Int(-1)) => Err(wrong(key())),
        Some(Value::Int(n)) if *n < -1 => {
            let i = usize::try_from(-1 - *n).unwrap_or(0);
            match ready.entries.get(i.wrapping_sub(1)) {
                Some((index_key, _)) => Err(wrong(index_key.clone())),
                None => Err(wrong(key())),
            }
        }
        other => Err(Error::UnexpectedReply {
            key: key(),
            detail: format!("the create script answered {other:?}"),
        }),
    }
}

/// Creates `entities`; per entity `Ok` or why not, in order. `fallback`
/// creates the entities of a call the connection refused across slots.
///
/// Each round trip carries [`BULK_CHUNK`] entities; the next round is
/// encoded while the server works on the current one.
pub(super) async fn create_many<E, C, F>(conn: &mut C, entities: &[E], fallback: F) -> Result<Vec<Result<()>>>
where
    E: RedisEntity,
    C: ConnectionLike + Send,
    F: AsyncFn(&mut C, &[&E]) -> Result<Vec<Result<()>>>,
{
    let ttl_ms = E::META.ttl.map(ttl_millis).transpose()?.unwrap_or(0);
    let mut results: Vec<Option<Result<()>>> = (0..entities.len()).map(|_| None).collect();
    let mut refused: Vec<usize> = Vec::new();
    let mut next = (!entities.is_empty()).then(|| round::<E>(entities, 0, ttl_ms));
    let mut reloads = scripts::Reloads::default();
    while let Some(mut current) = next.take() {
        let following = current.start + BULK_CHUNK;
        let (sent, upcoming) = tokio::join!(crate::engine::pipeline::send(conn, &mut current.pipe), async {
            (following < entities.len()).then(|| round::<E>(entities, following, ttl_ms))
        });
        next = upcoming;
        let mut replies = sent?;
        if replies.iter().any(scripts::is_noscript) {
            let cmds: Vec<redis::Cmd> = current.pipe.cmd_iter().cloned().collect();
            scripts::resend_unknown(conn, &cmds, &mut replies, &CREATE_MANY, &mut reloads).await?;
        }
        settle(current, replies, &mut results, &mut refused);
    }
    if !refused.is_empty() {
        let subset: Vec<&E> = refused.iter().map(|&i| &entities[i]).collect();
        for (i, r) in refused.into_iter().zip(fallback(conn, &subset).await?) {
            results[i] = Some(r);
        }
    }
    Ok(results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                Err(Error::UnexpectedReply {
                    key: String::new(),
                    detail: format!("entity {i} of the bulk create got no outcome"),
                })
            })
        })
        .collect())
}

/// Takes in the replies of `round`: each entity's outcome into `results`,
/// the entities of calls refused across slots into `refused`.
fn settle(round: Round<'_>, replies: Vec<Value>, results: &mut [Option<Result<()>>], refused: &mut Vec<usize>) {
    for (batch, reply) in round.batches.iter().zip(replies) {
        let at = |i: usize| round.start + i;
        if scripts::is_cross_slot_reply(&reply) {
            refused.extend(batch.iter().map(|&i| at(i)));
            continue;
        }
        let codes = match reply {
            Value::Array(codes) if codes.len() == batch.len() => codes,
            Value::ServerError(e) => {
                // A script that fails part-way may have written the entities
                // before: their outcome is unknown. An OOM refusal comes before
                // a script's first write: nothing was written.
                let e = Error::from(redis::RedisError::from(e)).part_way();
                for &i in batch {
                    results[at(i)] = Some(Err(e.part_way()));
                }
                continue;
            }
            other => {
                for &i in batch {
                    results[at(i)] = Some(Err(Error::UnexpectedReply {
                        key: String::new(),
                        detail: format!("the create script answered {other:?}"),
                    }));
                }
                continue;
            }
        };
        for (&i, code) in batch.iter().zip(&codes) {
            if let Ok(r) = &round.prepared[i] {
                results[at(i)] = Some(outcome(r, Some(code)));
            }
        }
    }
    for (i, p) in round.prepared.into_iter().enumerate() {
        if let Err(e) = p {
            results[round.start + i] = Some(Err(e));
        }
    }
}
