//! The outbox of a stream: where an ordered write (an entity created with a
//! stream entry on a cluster, where the two are in different slots) records
//! the entry before it writes anything else, and clears it once the entry is
//! appended. A writer that dies between the steps leaves its entry here;
//! [`Queue::sweep_outbox`] appends it for the entity that exists, so no
//! created entity loses its stream entry. An entry may then be appended
//! twice; consumers must be idempotent (the runner's lease keeps a job from
//! running twice at once, and a finished job from running again).
//!
//! Each entry belongs to the attempt that recorded it. A caller that retries
//! a write whose first attempt failed after writing the entity (a failover at
//! the `XADD`) is refused `AlreadyExists`; that refusal clears only its own
//! attempt's record, never the first attempt's, which the sweep then appends.
//!
//! The outbox is the hash `<stream>:outbox`: field = the attempt's id (32
//! random hex digits), value = JSON `{"at": <unix ms>, "key": <the entity's
//! hash key>, "entry": [[field, value], ...]}`. A record without `"key"`
//! (written before attempt ids) is keyed by its field.

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

/// A new attempt id: 128 bits from the operating system's random generator.
pub(crate) fn attempt_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| crate::Error::Encode {
        field: "outbox",
        message: format!("the OS random generator failed: {e}"),
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Records `entry` for the entity at `hash_key`, as attempt `attempt`.
pub(crate) async fn record<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    attempt: &str,
    hash_key: &str,
    entry: &[(&str, &str)],
) -> Result<()> {
    let value = serde_json::json!({ "at": now_ms(), "key": hash_key, "entry": entry });
    let () = redis::cmd("HSET")
        .arg(key(stream))
        .arg(attempt)
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

/// Takes attempt `attempt`'s record out of the outbox (and no other's).
pub(crate) async fn clear<C: ConnectionLike + Send>(conn: &mut C, stream: &str, attempt: &str) -> Result<()> {
    let _: i64 = redis::cmd("HDEL")
        .arg(key(stream))
        .arg(attempt)
        .query_async(conn)
        .await?;
    Ok(())
}

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
                let id = append(conn, self.stream(), &pairs).await?;
                tracing::info!(target: "repobox::queue", stream = self.stream(), entity = %hash_key, entry = %id, "appended an entry a writer left in the outbox");
                sweep.appended += 1;
            } else {
                sweep.dropped += 1;
            }
            clear(conn, self.stream(), &field).await?;
        }
        Ok(sweep)
    }
}
