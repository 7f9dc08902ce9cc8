//! Reads of entities by key: `HGETALL`, alone or pipelined.

use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionLike;

use crate::engine::encoding;
use crate::engine::rekey;
use crate::entity::{RawHash, RedisEntity};
use crate::error::{Error, Result};
use crate::listing::Listing;

/// The entity in an `HGETALL` reply for `key`; `None` if the hash is absent.
fn decode<E: RedisEntity>(key: &str, reply: &Value) -> Result<Option<E>> {
    let shown = &E::META.key.shown(key);
    let hash = RawHash::from_reply(shown, reply)?;
    if hash.is_empty() {
        return Ok(None);
    }
    encoding::decode::<E>(key, shown, &hash).map(Some)
}

/// Reads the entity at `key`; `None` if it is absent or expired.
pub(crate) async fn get<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<Option<E>> {
    let reply: Value = redis::cmd("HGETALL").arg(key).query_async(conn).await?;
    let found = decode(key, &reply)?;
    or_moving(conn, key, found).await
}

/// `found`, or, when nothing was at `key` and the entity has a previous
/// key, the entity where a re-key may still have it (`rekey`).
async fn or_moving<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    found: Option<E>,
) -> Result<Option<E>> {
    match found {
        None if E::META.previous.is_some() => Ok(rekey::get_moving(conn, key).await?.map(|(e, _)| e)),
        found => Ok(found),
    }
}

/// Reads Redis's clock (`TIME`, in Unix milliseconds) and the entity at
/// `key` in one pipeline: the clock as the entity was read.
pub(crate) async fn get_with_clock<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
) -> Result<(i64, Option<E>)> {
    let cmds = [redis::cmd("TIME"), hgetall(key)];
    let replies = crate::engine::pipeline::query(conn, &cmds).await?;
    let [time, hash] = <[Value; 2]>::try_from(replies).map_err(|replies| Error::UnexpectedReply {
        key: E::META.key.shown(key).into_owned(),
        detail: format!("{} replies to TIME and HGETALL", replies.len()),
    })?;
    let found = decode_answer(key, &hash)?;
    Ok((clock_ms(&time)?, or_moving(conn, key, found).await?))
}

/// The entity in what `HGETALL` answered for `key`, an error reply included.
pub(crate) fn decode_answer<E: RedisEntity>(key: &str, answer: &Value) -> Result<Option<E>> {
    if let Value::ServerError(e) = answer {
        return Err(redis::RedisError::from(e.clone()).into());
    }
    decode(key, answer)
}

/// Redis's clock in a `TIME` reply, in Unix milliseconds.
pub(crate) fn clock_ms(time: &Value) -> Result<i64> {
    let unexpected = |detail: String| Error::UnexpectedReply {
        key: "TIME".into(),
        detail,
    };
    let (secs, micros): (i64, i64) = match time {
        Value::ServerError(e) => return Err(redis::RedisError::from(e.clone()).into()),
        _ => redis::from_redis_value_ref(time).map_err(|e| unexpected(format!("{e}")))?,
    };
    secs.checked_mul(1000)
        .and_then(|ms| ms.checked_add(micros / 1000))
        .ok_or_else(|| unexpected(format!("{secs} s is out of range")))
}

/// Reads the entities at `keys` in one pipeline, in order: `None` where
/// absent, `None` and an error (naming the key) where one does not decode.
pub(crate) async fn get_keys<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &[String],
) -> Result<Listing<Option<E>>> {
    let Some(first) = keys.first() else {
        return Ok(Listing::default());
    };
    let cmds: Vec<redis::Cmd> = keys.iter().map(|key| hgetall(key)).collect();
    let replies = crate::engine::pipeline::query(conn, &cmds).await?;
    if replies.len() != keys.len() {
        return Err(Error::UnexpectedReply {
            key: E::META.key.shown(first).into_owned(),
            detail: format!("{} replies to {} commands", replies.len(), keys.len()),
        });
    }
    let mut listing = Listing::complete(Vec::with_capacity(keys.len()));
    let mut failed = Vec::with_capacity(keys.len());
    for (key, reply) in keys.iter().zip(&replies) {
        match decode(key, reply) {
            Ok(entity) => {
                listing.items.push(entity);
                failed.push(false);
            }
            Err(e) => {
                listing.items.push(None);
                listing.errors.push(e);
                failed.push(true);
            }
        }
    }
    if E::META.previous.is_some() {
        let errors = rekey::fill_moving(conn, keys, &mut listing.items, &failed).await?;
        listing.errors.extend(errors);
    }
    Ok(listing)
}

/// Whether the entity at `key` exists.
pub(crate) async fn exists<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<bool> {
    if redis::cmd("EXISTS").arg(key).query_async::<i64>(conn).await? == 1 {
        return Ok(true);
    }
    match E::META.previous {
        Some(_) => Ok(rekey::get_moving::<E, C>(conn, key).await?.is_some()),
        None => Ok(false),
    }
}

/// The entity's remaining TTL; `None` if it is absent or has no TTL.
pub(crate) async fn ttl<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<Option<Duration>> {
    let pttl = |key: &str| {
        let mut cmd = redis::cmd("PTTL");
        cmd.arg(key);
        cmd
    };
    let mut ms: i64 = pttl(key).query_async(conn).await?;
    if ms == -2
        && let Some(Ok(old)) = rekey::previous_key(E::META, key)
    {
        // Where the entity is (a move may run between the looks).
        ms = match rekey::get_moving::<E, C>(conn, key).await? {
            Some((_, true)) => match pttl(&old).query_async(conn).await? {
                -2 => pttl(key).query_async(conn).await?,
                ms => ms,
            },
            Some((_, false)) => pttl(key).query_async(conn).await?,
            None => -2,
        };
    }
    Ok(u64::try_from(ms).ok().map(Duration::from_millis))
}

/// `HGETALL key`.
pub(crate) fn hgetall(key: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("HGETALL");
    cmd.arg(key);
    cmd
}
