//! The sweep of a stream's outbox (its records are written by the write
//! engine's ordered path; `engine/write/outbox.rs` has their layout): the
//! entries a writer left behind are appended for the entities that exist.

use std::time::Duration;

use redis::aio::ConnectionLike;

use super::Queue;
use crate::engine::write::outbox::{append, clear, key, now_ms};
use crate::error::Result;

/// A recorded stream entry's fields and values.
type Entry = Vec<(String, String)>;

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
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn sweep_outbox<C: ConnectionLike + Send>(&self, conn: &mut C, grace: Duration) -> Result<OutboxSweep> {
        let outbox = key(self.stream());
        let held: Vec<(String, String)> = redis::cmd("HGETALL").arg(&outbox).query_async(conn).await?;
        let mut sweep = OutboxSweep::default();
        let cutoff = now_ms().saturating_sub(u64::try_from(grace.as_millis()).unwrap_or(u64::MAX));
        for (field, value) in held {
            let parsed: Option<(u64, String, Entry)> =
                serde_json::from_str::<serde_json::Value>(&value).ok().and_then(|v| {
                    let hash_key = match v.get("key") {
                        Some(key) => key.as_str()?.to_owned(),
                        None => field.clone(),
                    };
                    Some((
                        v.get("at")?.as_u64()?,
                        hash_key,
                        serde_json::from_value(v.get("entry")?.clone()).ok()?,
                    ))
                });
            let Some((at, hash_key, entry)) = parsed else {
                sweep.bad.push(field);
                continue;
            };
            if at > cutoff {
                sweep.young += 1;
                continue;
            }
            let exists: bool = redis::cmd("EXISTS").arg(&hash_key).query_async(conn).await?;
            if exists {
                let pairs: Vec<(&str, &str)> = entry.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let id: String = append(self.stream(), &pairs).query_async(conn).await?;
                tracing::info!(target: "repobox::queue", stream = self.stream(), entity = %hash_key, entry = %id, "appended an entry a writer left in the outbox");
                sweep.appended += 1;
            } else {
                sweep.dropped += 1;
            }
            let _: i64 = clear(self.stream(), &field).query_async(conn).await?;
        }
        Ok(sweep)
    }
}
