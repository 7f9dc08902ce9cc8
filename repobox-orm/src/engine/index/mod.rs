//! Index reads. Every member an index read returns has been checked against
//! its entity (`verify`): what is gone or no longer belongs is not returned
//! and is repaired, what cannot be read is reported.

mod confirm;
mod count;
mod merged;
mod ordered;
mod verify;

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};

pub(crate) use self::confirm::confirm;
pub(crate) use self::count::count_existing;
pub(crate) use self::merged::{previous_index_key, previous_view};
pub(crate) use self::verify::{Action, Member, Repair, check_fields, run_repair, verify};
use crate::entity::RedisEntity;
use crate::error::{Error, Result};
use crate::listing::Listing;
use crate::meta::{IndexKind, IndexMeta};
use crate::page::Page;

impl IndexKind {
    /// The Redis type of the index key, as `TYPE` names it.
    pub(crate) fn redis_type(self) -> &'static str {
        match self {
            IndexKind::Sorted { .. } => "zset",
            IndexKind::Set => "set",
            IndexKind::Unique => "string",
        }
    }

    /// The command that reads every member of the index key (with scores).
    fn members(self, key: &str) -> Cmd {
        match self {
            IndexKind::Sorted { .. } => redis::cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES").clone(),
            IndexKind::Set => redis::cmd("SMEMBERS").arg(key).clone(),
            IndexKind::Unique => redis::cmd("GET").arg(key).clone(),
        }
    }

    /// The command that counts the members of the index key.
    fn cardinality(self, key: &str) -> Cmd {
        match self {
            IndexKind::Sorted { .. } => redis::cmd("ZCARD").arg(key).clone(),
            IndexKind::Set => redis::cmd("SCARD").arg(key).clone(),
            IndexKind::Unique => redis::cmd("EXISTS").arg(key).clone(),
        }
    }
}

fn unexpected(key: &str, what: &str, reply: &Value) -> Error {
    Error::UnexpectedReply {
        key: key.to_owned(),
        detail: format!("{what} answered {reply:?}"),
    }
}

fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

fn score(value: &Value) -> Option<f64> {
    match value {
        Value::Double(x) => Some(*x),
        Value::Int(i) => Some(*i as f64),
        other => std::str::from_utf8(&bytes(other)?).ok()?.parse().ok(),
    }
}

/// The members in a `ZRANGE ... WITHSCORES` reply (RESP3 pairs or a RESP2 flat list).
fn scored_members(key: &str, reply: &Value) -> Result<Vec<Member>> {
    let items = match reply {
        Value::Array(items) => items,
        Value::Nil => return Ok(Vec::new()),
        other => return Err(unexpected(key, "ZRANGE", other)),
    };
    let pair = |m: &Value, s: &Value| {
        Some(Member {
            raw: bytes(m)?,
            score: Some(score(s)?),
        })
    };
    let members: Option<Vec<Member>> = if items.iter().all(|i| matches!(i, Value::Array(p) if p.len() == 2)) {
        items
            .iter()
            .map(|i| match i {
                Value::Array(p) => pair(&p[0], &p[1]),
                _ => None,
            })
            .collect()
    } else if items.len() % 2 == 0 {
        items.chunks_exact(2).map(|p| pair(&p[0], &p[1])).collect()
    } else {
        None
    };
    members.ok_or_else(|| unexpected(key, "ZRANGE", reply))
}

/// The members in a `SMEMBERS` or `GET` reply.
fn plain_members(key: &str, reply: &Value) -> Result<Vec<Member>> {
    let member = |v: &Value| bytes(v).map(|raw| Member { raw, score: None });
    match reply {
        Value::Nil => Ok(Vec::new()),
        Value::Array(items) | Value::Set(items) => items
            .iter()
            .map(member)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| unexpected(key, "SMEMBERS", reply)),
        single => member(single)
            .map(|m| vec![m])
            .ok_or_else(|| unexpected(key, "GET", reply)),
    }
}

/// A window of the members of the index at `key` (with scores for a
/// sorted index), from `cursor` (0: the start) and about `count` of them
/// (`ZSCAN`, `SSCAN`; a unique key's one member at once), and the cursor of
/// the next window (0: the last). A member present for the whole walk comes
/// at least once; one may come twice while the key is rehashed.
pub(crate) async fn scan_members<C: ConnectionLike + Send>(
    conn: &mut C,
    kind: IndexKind,
    key: &str,
    cursor: u64,
    count: usize,
) -> Result<(u64, Vec<Member>)> {
    let command = match kind {
        IndexKind::Sorted { .. } => "ZSCAN",
        IndexKind::Set => "SSCAN",
        IndexKind::Unique => return Ok((0, all_members(conn, kind, key).await?)),
    };
    let reply: Value = redis::cmd(command)
        .arg(key)
        .arg(cursor)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    let Value::Array(mut parts) = reply else {
        return Err(unexpected(key, command, &reply));
    };
    let (Some(items), Some(next)) = (parts.pop(), parts.pop()) else {
        return Err(unexpected(key, command, &Value::Array(parts)));
    };
    let next = bytes(&next)
        .and_then(|b| std::str::from_utf8(&b).ok()?.parse::<u64>().ok())
        .ok_or_else(|| unexpected(key, command, &next))?;
    let members = match kind {
        IndexKind::Sorted { .. } => scored_members(key, &items)?,
        _ => plain_members(key, &items)?,
    };
    Ok((next, members))
}

/// Every member of the index at `key`, with scores for a sorted index.
pub(crate) async fn all_members<C: ConnectionLike + Send>(
    conn: &mut C,
    kind: IndexKind,
    key: &str,
) -> Result<Vec<Member>> {
    let reply: Value = kind.members(key).query_async(conn).await?;
    match kind {
        IndexKind::Sorted { .. } => scored_members(key, &reply),
        _ => plain_members(key, &reply),
    }
}

/// How many read-repair passes a page makes before it settles for a short page.
const REPAIR_PASSES: usize = 4;

/// A page of a sorted index: two round trips (`ZRANGE`, then one pipeline of
/// `HGETALL`s), plus a repair and a re-read when it met members that are gone
/// or no longer belong, so that the page is full.
pub(crate) async fn sorted_page<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
    page: Page,
) -> Result<Listing<E>> {
    if page.limit == 0 {
        return Ok(Listing::default());
    }
    if let Some(old) = merged::previous_index_key(index, index_key) {
        return merged::sorted_page(conn, index, index_key, &old, page).await;
    }
    page_of(conn, index, index_key, page, None).await
}

/// [`sorted_page`] of one index key, from `first` when the first `ZRANGE`
/// of the page was read already.
async fn page_of<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
    page: Page,
    mut first: Option<Value>,
) -> Result<Listing<E>> {
    let args = page.zrange_args()?;
    let mut pass = 0;
    loop {
        pass += 1;
        let reply: Value = match first.take() {
            Some(reply) => reply,
            None => {
                redis::cmd("ZRANGE")
                    .arg(index_key)
                    .arg(&args)
                    .arg("WITHSCORES")
                    .query_async(conn)
                    .await?
            }
        };
        let members = scored_members(index_key, &reply)?;
        let repair = repairs_on_read(conn);
        let found = verify::<E, C>(conn, index, index_key, members, repair, true, None).await?;
        // Without a repair, reading again would find the same.
        if !repair || found.repairs() == 0 || pass > REPAIR_PASSES {
            return Ok(Listing {
                items: found.live,
                errors: found.errors,
            });
        }
    }
}

/// Every member of a set index: `SMEMBERS`, then one pipeline of `HGETALL`s.
pub(crate) async fn set_members<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
) -> Result<Listing<E>> {
    if let Some(old) = merged::previous_index_key(index, index_key) {
        return merged::set_members(conn, index, index_key, &old).await;
    }
    let members = all_members(conn, index.kind, index_key).await?;
    let repair = repairs_on_read(conn);
    let found = verify::<E, C>(conn, index, index_key, members, repair, true, None).await?;
    Ok(Listing {
        items: found.live,
        errors: found.errors,
    })
}

/// The entity that a unique index maps its value to, if it still holds it.
pub(crate) async fn unique_get<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
) -> Result<Option<E>> {
    let members = all_members(conn, index.kind, index_key).await?;
    if members.is_empty() {
        return Ok(None);
    }
    let repair = repairs_on_read(conn);
    let mut found = verify::<E, C>(conn, index, index_key, members, repair, true, None).await?;
    match found.errors.pop() {
        Some(e) => Err(e),
        None => Ok(found.live.pop()),
    }
}

/// How many members the index holds. Without a TTL that is one `ZCARD`/
/// `SCARD`: members whose entity is gone or moved on are counted until a read
/// or `index repair` removes them. For TTL entities each member's hash is
/// checked (and the gone ones removed), so an expired entity is never counted.
pub(crate) async fn count<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
) -> Result<u64> {
    if let Some(old) = merged::previous_index_key(index, index_key)
        && let Some(n) = merged::count::<E, C>(conn, index, index_key, &old).await?
    {
        return Ok(n);
    }
    if E::META.ttl.is_none() {
        return Ok(index.kind.cardinality(index_key).query_async(conn).await?);
    }
    let members = all_members(conn, index.kind, index_key).await?;
    count_existing::<E, C>(conn, index, index_key, members).await
}

/// Whether reads on `conn` repair indexes on the side: a [`Store`](crate::Store)
/// says ([`StoreConfig::repair_on_read`](crate::StoreConfig::repair_on_read));
/// any other connection does.
fn repairs_on_read<C>(conn: &C) -> bool {
    crate::engine::write::route::store_of(conn).is_none_or(|store| store.config().repairs_on_read())
}
