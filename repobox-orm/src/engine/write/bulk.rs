//! `create_many` at pipeline speed: entities whose indexes are sorted or set
//! indexes (no unique one) are created by `create_many.lua`, up to
//! [`PER_CALL`] entities per script call and [`BULK_CHUNK`] per round trip,
//! each entity still atomic with its index entries and TTL and answered on
//! its own. A call whose keys a cluster keeps in several slots is refused
//! (`CROSSSLOT`) and its entities go the per-entity way.

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};

use super::BULK_CHUNK;
use super::plan::{score_of, ttl_millis};
use crate::crypto::seal_fields;
use crate::engine::target::Encoded;
use crate::entity::RedisEntity;
use crate::error::{Error, Result};
use crate::meta::IndexKind;
use crate::scripts::{self, CREATE_MANY};

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

fn call<E: RedisEntity>(batch: &[&Ready<'_>], ttl_ms: u64) -> Cmd {
    let keys: Vec<&str> = batch
        .iter()
        .flat_map(|r| std::iter::once(r.encoded.target.key.as_str()).chain(r.entries.iter().map(|(k, _)| k.as_str())))
        .collect();
    let kinds: String = E::META
        .indexes
        .iter()
        .map(|ix| {
            if matches!(ix.kind, IndexKind::Sorted { .. }) {
                'z'
            } else {
                's'
            }
        })
        .collect();
    let mut cmd = scripts::evalsha(&CREATE_MANY, &keys);
    cmd.arg(batch.len()).arg(E::META.indexes.len()).arg(ttl_ms).arg(kinds);
    for r in batch {
        cmd.arg(&r.encoded.target.id).arg(r.encoded.fields.set.len());
        for (name, value) in &r.encoded.fields.set {
            cmd.arg(*name).arg(value.as_ref());
        }
        for (_, score) in &r.entries {
            cmd.arg(score);
        }
    }
    cmd
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
            detail: format!("create_many.lua answered {other:?}"),
        }),
    }
}

/// Creates `entities`; per entity `Ok` or why not, in order. `fallback`
/// creates the entities of a call the connection refused across slots.
pub(super) async fn create_many<E, C, F>(conn: &mut C, entities: &[E], fallback: F) -> Result<Vec<Result<()>>>
where
    E: RedisEntity,
    C: ConnectionLike + Send,
    F: AsyncFn(&mut C, &[&E]) -> Result<Vec<Result<()>>>,
{
    let ttl_ms = E::META.ttl.map(ttl_millis).transpose()?.unwrap_or(0);
    let prepared: Vec<Result<Ready<'_>>> = entities.iter().map(ready::<E>).collect();
    let mut results: Vec<Option<Result<()>>> = (0..entities.len()).map(|_| None).collect();
    let live: Vec<usize> = (0..entities.len()).filter(|&i| prepared[i].is_ok()).collect();
    let mut refused: Vec<usize> = Vec::new();
    for round in live.chunks(BULK_CHUNK) {
        let batches: Vec<&[usize]> = round.chunks(PER_CALL).collect();
        let cmds: Vec<Cmd> = batches
            .iter()
            .map(|b| {
                let refs: Vec<&Ready<'_>> = b.iter().filter_map(|&i| prepared[i].as_ref().ok()).collect();
                call::<E>(&refs, ttl_ms)
            })
            .collect();
        let mut replies = crate::engine::pipeline::query(conn, &cmds).await?;
        if replies.iter().any(scripts::is_noscript) {
            CREATE_MANY.load_async(conn).await?;
            replies = crate::engine::pipeline::query(conn, &cmds).await?;
        }
        for (batch, reply) in batches.into_iter().zip(replies) {
            if scripts::is_cross_slot_reply(&reply) {
                refused.extend_from_slice(batch);
                continue;
            }
            let codes = match reply {
                Value::Array(codes) if codes.len() == batch.len() => codes,
                Value::ServerError(e) => {
                    let e: redis::RedisError = e.into();
                    for &i in batch {
                        results[i] = Some(Err(Error::WriteOutcomeUnknown(e.to_string())));
                    }
                    continue;
                }
                other => {
                    for &i in batch {
                        results[i] = Some(Err(Error::UnexpectedReply {
                            key: String::new(),
                            detail: format!("create_many.lua answered {other:?}"),
                        }));
                    }
                    continue;
                }
            };
            for (&i, code) in batch.iter().zip(&codes) {
                if let Ok(r) = &prepared[i] {
                    results[i] = Some(outcome(r, Some(code)));
                }
            }
        }
    }
    if !refused.is_empty() {
        let subset: Vec<&E> = refused.iter().map(|&i| &entities[i]).collect();
        for (i, r) in refused.into_iter().zip(fallback(conn, &subset).await?) {
            results[i] = Some(r);
        }
    }
    Ok(prepared
        .into_iter()
        .zip(results)
        .map(|(p, r)| match (p, r) {
            (Err(e), _) => Err(e),
            (Ok(_), Some(r)) => r,
            (Ok(ready), None) => Err(Error::UnexpectedReply {
                key: ready.encoded.target.shown().into_owned(),
                detail: "the write got no outcome".into(),
            }),
        })
        .collect())
}
