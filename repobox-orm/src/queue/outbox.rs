//! The outbox of a stream: where an ordered write (an entity created with a
//! stream entry on a cluster, where the two are in different slots) records
//! the entry before it writes anything else, and clears it once the entry is
//! appended. A writer that dies between the steps leaves its entry here;
//! [`Queue::sweep_outbox`] appends it for the entity that exists, so no
//! created entity loses its stream entry. An entry may then be appended
//! twice; consumers must be idempotent (the runner's status compare-and-set
//! keeps a job from running twice).
//!
//! The outbox is the hash `<stream>:outbox`: field = the entity's hash key,
//! value = JSON `{"at": <unix ms>, "entry": [[field, value], ...]}`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;

use super::Queue;
use crate::error::Result;

/// The outbox key of `stream`.
pub fn key(stream: &str) -> String {
    format!("{stream}:outbox")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Records `entry` for the entity at `hash_key`.
pub(crate) async fn record<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    hash_key: &str,
    entry: &[(&str, &str)],
) -> Result<()> {
    let value = serde_json::json!({ "at": now_ms(), "entry": entry });
    let () = redis::cmd("HSET")
        .arg(key(stream))
        .arg(hash_key)
        .arg(value.to_string())
        .query_async(conn)
        .await?;
    Ok(())
}

/// Appends `entry` to `stream`; returns its id.
pub(crate) async fn append<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    entry: &[(&str, &str)],
) -> Result<String> {
    Ok(redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg(entry)
        .query_async(conn)
        .await?)
}

/// Takes the entity's entry out of the outbox.
pub(crate) async fn clear<C: ConnectionLike + Send>(conn: &mut C, stream: &str, hash_key: &str) -> Result<()> {
    let _: i64 = redis::cmd("HDEL")
        .arg(key(stream))
        .arg(hash_key)
        .query_async(conn)
        .await?;
    Ok(())
}

/// What [`Queue::sweep_outbox`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxSweep {
    /// Entries appended to the stream for entities that exist.
    pub appended: usize,
    /// Entries dropped because their entity was never written (or is gone).
    pub dropped: usize,
    /// Entries left because they are younger than the grace period.
    pub young: usize,
    /// Entries that are not repobox's (bad JSON): left, and named here.
    pub bad: Vec<String>,
}

impl Queue {
    /// Appends the outbox's entries older than `grace` whose entity exists,
    /// drops those whose entity does not, and clears both from the outbox.
    /// `grace` should be far longer than a write takes (the runner uses the
    /// stalled-delivery idle time), so that a writer still at work is not
    /// raced. On a single server the outbox stays empty: the entity and its
    /// stream entry are written by one script there.
    pub async fn sweep_outbox<C: ConnectionLike + Send>(&self, conn: &mut C, grace: Duration) -> Result<OutboxSweep> {
        let outbox = key(self.stream());
        let held: Vec<(String, String)> = redis::cmd("HGETALL").arg(&outbox).query_async(conn).await?;
        let mut sweep = OutboxSweep::default();
        let cutoff = now_ms().saturating_sub(u64::try_from(grace.as_millis()).unwrap_or(u64::MAX));
        for (hash_key, value) in held {
            let parsed: Option<(u64, Vec<(String, String)>)> =
                serde_json::from_str::<serde_json::Value>(&value).ok().and_then(|v| {
                    Some((
                        v.get("at")?.as_u64()?,
                        serde_json::from_value(v.get("entry")?.clone()).ok()?,
                    ))
                });
            let Some((at, entry)) = parsed else {
                sweep.bad.push(hash_key);
                continue;
            };
            if at > cutoff {
                sweep.young += 1;
                continue;
            }
            let exists: bool = redis::cmd("EXISTS").arg(&hash_key).query_async(conn).await?;
            if exists {
                let pairs: Vec<(&str, &str)> = entry.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let id = append(conn, self.stream(), &pairs).await?;
                tracing::info!(target: "repobox::queue", stream = self.stream(), entity = %hash_key, entry = %id, "appended an entry a writer left in the outbox");
                sweep.appended += 1;
            } else {
                sweep.dropped += 1;
            }
            clear(conn, self.stream(), &hash_key).await?;
        }
        Ok(sweep)
    }
}
