//! Index reads, and the one path that finds and repairs ghosts: members whose
//! entity hash is gone (expired, or deleted by a client that did not maintain
//! the index).

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};

use crate::engine::read::get_keys;
use crate::engine::write::BULK_CHUNK;
use crate::engine::write::protocol::kind_byte;
use crate::entity::RedisEntity;
use crate::error::Result;
use crate::meta::{IndexKind, IndexMeta};
use crate::page::Page;
use crate::scripts::{self, REPAIR};

impl IndexKind {
    /// The Redis type of the index key, as `TYPE` names it.
    pub(crate) fn redis_type(self) -> &'static str {
        match self {
            IndexKind::Sorted { .. } => "zset",
            IndexKind::Set => "set",
            IndexKind::Unique => "string",
        }
    }

    /// The command that reads every member id of the index key.
    fn members(self, key: &str) -> Cmd {
        match self {
            IndexKind::Sorted { .. } => redis::cmd("ZRANGE").arg(key).arg(0).arg(-1).clone(),
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

/// Every member id of the index at `key`.
pub(crate) async fn member_ids<C: ConnectionLike + Send>(
    conn: &mut C,
    kind: IndexKind,
    key: &str,
) -> Result<Vec<String>> {
    let cmd = kind.members(key);
    Ok(match kind {
        IndexKind::Unique => cmd.query_async::<Option<String>>(conn).await?.into_iter().collect(),
        _ => cmd.query_async(conn).await?,
    })
}

/// `(id, hash key)` of each member; an id that is not a valid key part cannot
/// have been written by repobox and is skipped rather than failing the read.
fn keyed<E: RedisEntity>(ids: Vec<String>) -> Vec<(String, String)> {
    ids.into_iter()
        .filter_map(|id| E::META.key.key_from_id(&id).ok().map(|k| (id, k)))
        .collect()
}

/// Removes `ghosts` (`(id, hash key)`) from the index at `index_key`; each
/// only if its hash is still absent when the script runs, so an entity
/// re-created since the caller looked keeps its entry.
async fn repair<C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
    ghosts: &[(String, String)],
) -> Result<()> {
    tracing::debug!(
        index = index.name,
        key = index_key,
        ghosts = ghosts.len(),
        "repairing index"
    );
    let keys: Vec<&str> = std::iter::once(index_key)
        .chain(ghosts.iter().map(|(_, key)| key.as_str()))
        .collect();
    let mut cmd = scripts::evalsha(&REPAIR, &keys);
    cmd.arg(&[kind_byte(index.kind)][..]);
    for (id, _) in ghosts {
        cmd.arg(id);
    }
    scripts::run::<Value, C>(conn, &REPAIR, &cmd).await?;
    Ok(())
}

/// Which of `ids` are alive (`EXISTS`, pipelined in chunks) and which are
/// ghosts, repaired on the way; returns `(alive, removed)`.
pub(crate) async fn drop_ghosts<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
    ids: Vec<String>,
) -> Result<(u64, u64)> {
    let (mut alive, mut removed) = (0, 0);
    let members = keyed::<E>(ids);
    for chunk in members.chunks(BULK_CHUNK) {
        let mut pipe = redis::pipe();
        for (_, key) in chunk {
            pipe.cmd("EXISTS").arg(key);
        }
        let exists: Vec<i64> = pipe.query_async(conn).await?;
        let ghosts: Vec<(String, String)> = chunk
            .iter()
            .zip(&exists)
            .filter(|(_, e)| **e == 0)
            .map(|(member, _)| member.clone())
            .collect();
        alive += exists.iter().filter(|e| **e == 1).count() as u64;
        if !ghosts.is_empty() {
            repair(conn, index, index_key, &ghosts).await?;
            removed += ghosts.len() as u64;
        }
    }
    Ok((alive, removed))
}

/// Loads the entities of `ids` from the index at `index_key`, dropping (and
/// repairing) the ghosts; also says how many there were.
async fn load_members<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
    ids: Vec<String>,
) -> Result<(Vec<E>, usize)> {
    let members = keyed::<E>(ids);
    let keys: Vec<String> = members.iter().map(|(_, key)| key.clone()).collect();
    let loaded = get_keys::<E, C>(conn, &keys).await?;
    let mut ghosts = Vec::new();
    let mut found = Vec::with_capacity(loaded.len());
    for (member, entity) in members.into_iter().zip(loaded) {
        match entity {
            Some(e) => found.push(e),
            None => ghosts.push(member),
        }
    }
    if !ghosts.is_empty() {
        repair(conn, index, index_key, &ghosts).await?;
    }
    Ok((found, ghosts.len()))
}

/// How many read-repair passes a page makes before it settles for a short page.
const REPAIR_PASSES: usize = 4;

/// A page of a sorted index: two round trips (`ZRANGE`, then one pipeline of
/// `HGETALL`s), plus a repair and a re-read when it met ghosts.
pub(crate) async fn sorted_page<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
    page: Page,
) -> Result<Vec<E>> {
    if page.limit == 0 {
        return Ok(Vec::new());
    }
    let args = page.zrange_args()?;
    let mut pass = 0;
    loop {
        pass += 1;
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(index_key)
            .arg(&args)
            .query_async(conn)
            .await?;
        let (found, ghosts) = load_members::<E, C>(conn, index, index_key, ids).await?;
        // After a repair the page is read again, so that it is full.
        if ghosts == 0 || pass > REPAIR_PASSES {
            return Ok(found);
        }
    }
}

/// Every member of a set index: `SMEMBERS`, then one pipeline of `HGETALL`s.
pub(crate) async fn set_members<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
) -> Result<Vec<E>> {
    let ids = member_ids(conn, index.kind, index_key).await?;
    Ok(load_members::<E, C>(conn, index, index_key, ids).await?.0)
}

/// The entity that a unique index maps its value to.
pub(crate) async fn unique_get<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
) -> Result<Option<E>> {
    let ids = member_ids(conn, index.kind, index_key).await?;
    if ids.is_empty() {
        return Ok(None);
    }
    let (mut found, _) = load_members::<E, C>(conn, index, index_key, ids).await?;
    Ok(found.pop())
}

/// The number of live entities in an index. For TTL entities every member is
/// checked (and ghosts repaired away), so expired ones are never counted.
pub(crate) async fn count<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
) -> Result<u64> {
    if E::META.ttl.is_none() {
        return Ok(index.kind.cardinality(index_key).query_async(conn).await?);
    }
    let ids = member_ids(conn, index.kind, index_key).await?;
    Ok(drop_ghosts::<E, C>(conn, index, index_key, ids).await?.0)
}
