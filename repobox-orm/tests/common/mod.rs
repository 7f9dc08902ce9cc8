//! What the CRUD and write-path suites share: the `Task` entity (a sorted,
//! a set and a unique index) and helpers that read the server directly.

#![allow(dead_code)]

use std::collections::HashMap;

use redis::AsyncCommands;
use repobox_orm::prelude::*;

/// A task's status: the key of its set index.
#[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Queued,
    Running,
}

/// Every kind of index, none of them co-located with the key.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("task:<id>")]
#[index(sorted = "tasks:owner:<owner>", score = created_at)]
#[index(set = "tasks:status:<status>")]
#[index(unique = "task:slug:<slug>")]
pub struct Task {
    pub id: String,
    pub owner: String,
    pub slug: String,
    pub status: Status,
    pub created_at: i64,
    pub note: Option<String>,
}

/// A queued task of `owner`, with the slug `slug-<id>`.
pub fn task(id: &str, owner: &str, created_at: i64) -> Task {
    Task {
        id: id.into(),
        owner: owner.into(),
        slug: format!("slug-{id}"),
        status: Status::Queued,
        created_at,
        note: None,
    }
}

/// The hash at `key`, as the server holds it.
pub async fn hgetall(conn: &mut Store, key: &str) -> HashMap<String, String> {
    conn.hgetall(key).await.unwrap()
}

/// The `DUMP` of `key` (`None`: absent): equal dumps, equal values.
pub async fn dump<C: redis::aio::ConnectionLike + Send>(conn: &mut C, key: &str) -> Option<Vec<u8>> {
    redis::cmd("DUMP").arg(key).query_async(conn).await.unwrap()
}

/// `EVALSHA` calls since the last `CONFIG RESETSTAT` (`INFO commandstats`).
pub async fn script_calls<C: redis::aio::ConnectionLike + Send>(conn: &mut C) -> u32 {
    let stats: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.unwrap();
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|l| l.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// Resets the server's command statistics (`CONFIG RESETSTAT`).
pub async fn reset_stats<C: redis::aio::ConnectionLike + Send>(conn: &mut C) {
    let () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(conn).await.unwrap();
}
