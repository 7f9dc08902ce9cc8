//! Pausing the queue, and how many entries wait for the group.
//!
//! A paused queue has a `<stream>:paused` key (a string: the unix millis,
//! by Redis's clock, of the pause); runners look at it before every read and
//! take no new deliveries while it exists. Entries keep arriving, and running
//! jobs finish.

use redis::aio::ConnectionLike;

use super::Queue;
use crate::error::Result;

impl Queue {
    /// The key that is set while the queue is paused: `<stream>:paused`.
    pub fn paused_key(&self) -> String {
        format!("{}:paused", self.stream)
    }

    /// Pauses the queue: runners stop taking new deliveries (running jobs
    /// finish). `false` if it was paused already.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn pause<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<bool> {
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await?;
        let at = secs.saturating_mul(1000).saturating_add(micros / 1000);
        let set: Option<String> = redis::cmd("SET")
            .arg(self.paused_key())
            .arg(at)
            .arg("NX")
            .query_async(conn)
            .await?;
        Ok(set.is_some())
    }

    /// Resumes a paused queue; `false` if it was not paused.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn resume<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<bool> {
        let removed: i64 = redis::cmd("DEL").arg(self.paused_key()).query_async(conn).await?;
        Ok(removed > 0)
    }

    /// When the queue was paused (unix millis, Redis's clock); `None` while
    /// it runs. A value another writer set that is not a number still pauses
    /// the queue, and reads as `Some(0)`.
    ///
    /// # Errors
    ///
    /// Fails as every call to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn paused_since<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<Option<i64>> {
        let value: Option<Vec<u8>> = match redis::cmd("GET").arg(self.paused_key()).query_async(conn).await {
            Ok(v) => v,
            // Another type under the key: someone paused it their way.
            Err(e) if e.code() == Some("WRONGTYPE") => return Ok(Some(0)),
            Err(e) => return Err(e.into()),
        };
        Ok(value.map(|v| std::str::from_utf8(&v).ok().and_then(|t| t.parse().ok()).unwrap_or(0)))
    }

    /// How many entries wait for the group: not yet delivered to any
    /// consumer (`XINFO GROUPS`' lag; every entry while there is no group). Where Redis cannot tell the lag (after
    /// deletions in the stream), the entries after the group's last
    /// delivered one are counted, up to `10_000`.
    ///
    /// # Errors
    ///
    /// Fails as every call to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn waiting<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<u64> {
        let reply: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.stream)
            .query_async(conn)
            .await?;
        let group = reply.groups.into_iter().find(|g| g.name == self.group);
        if let Some(lag) = group.as_ref().and_then(|g| g.lag) {
            return Ok(u64::try_from(lag).unwrap_or(u64::MAX));
        }
        let last_delivered = group.map(|g| g.last_delivered_id);
        let Some(last) = last_delivered else {
            // No group yet: it will be made from the stream's start, so
            // every entry waits.
            let len: u64 = redis::cmd("XLEN").arg(&self.stream).query_async(conn).await?;
            return Ok(len);
        };
        let after: Vec<redis::Value> = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg(format!("({last}"))
            .arg("+")
            .arg("COUNT")
            .arg(WAITING_COUNT_LIMIT)
            .query_async(conn)
            .await?;
        Ok(u64::try_from(after.len()).unwrap_or(u64::MAX))
    }
}

/// The most entries [`Queue::waiting`] counts one by one.
const WAITING_COUNT_LIMIT: usize = 10_000;
