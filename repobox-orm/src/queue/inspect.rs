//! Reading the queue's state for monitoring: pending list, consumers, lengths, entries.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::streams::{StreamInfoConsumersReply, StreamPendingCountReply, StreamPendingReply, StreamRangeReply};

use super::{Consumer, Entry, Pending, PendingEntry, Queue, reply};
use crate::error::Result;

impl Queue {
    /// The pending list: count, per consumer, and the oldest delivery's idle time.
    ///
    /// # Errors
    ///
    /// Fails as every call to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn pending<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<Pending> {
        let mut pipe = redis::pipe();
        pipe.cmd("XPENDING").arg(&self.stream).arg(&self.group);
        pipe.cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("-")
            .arg("+")
            .arg(1);
        let (summary, oldest): (StreamPendingReply, StreamPendingCountReply) = pipe.query_async(conn).await?;
        let per_consumer = match &summary {
            StreamPendingReply::Data(data) => data
                .consumers
                .iter()
                .map(|c| (c.name.clone(), c.pending as u64))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Pending {
            count: summary.count() as u64,
            per_consumer,
            oldest_idle: oldest
                .ids
                .first()
                .map(|p| Duration::from_millis(u64::try_from(p.last_delivered_ms).unwrap_or(u64::MAX))),
        })
    }

    /// Up to `count` pending deliveries, oldest first, with their consumer,
    /// idle time and delivery count.
    ///
    /// # Errors
    ///
    /// Fails as every call to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn pending_entries<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        count: usize,
    ) -> Result<Vec<PendingEntry>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let reply: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("-")
            .arg("+")
            .arg(redis_count(count))
            .query_async(conn)
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|p| PendingEntry {
                id: p.id,
                consumer: p.consumer,
                idle: Duration::from_millis(u64::try_from(p.last_delivered_ms).unwrap_or(u64::MAX)),
                deliveries: u64::try_from(p.times_delivered).unwrap_or(u64::MAX),
            })
            .collect())
    }

    /// The group's consumers with their pending counts and idle times.
    ///
    /// # Errors
    ///
    /// Fails as every call to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn consumers<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<Vec<Consumer>> {
        let reply: StreamInfoConsumersReply = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.stream)
            .arg(&self.group)
            .query_async(conn)
            .await?;
        Ok(reply
            .consumers
            .into_iter()
            .map(|c| Consumer {
                name: c.name,
                pending: c.pending as u64,
                idle: Duration::from_millis(c.idle as u64),
            })
            .collect())
    }

    /// The number of entries in the stream.
    ///
    /// # Errors
    ///
    /// Fails as every call to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn len<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<u64> {
        Ok(redis::cmd("XLEN").arg(&self.stream).query_async(conn).await?)
    }

    /// Up to `count` entries of the stream from `start` (`-` for the first), for monitoring.
    ///
    /// # Errors
    ///
    /// Fails as every call to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn entries<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        start: &str,
        count: usize,
    ) -> Result<Vec<Entry>> {
        range(conn, &self.stream, start, count).await
    }

    /// Up to `count` dead letters from `start` (`-` for the first).
    ///
    /// # Errors
    ///
    /// Fails as every call to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn dead_letters<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        start: &str,
        count: usize,
    ) -> Result<Vec<Entry>> {
        range(conn, &self.dead, start, count).await
    }

    /// Deletes the dead letters `ids` (those that exist); returns how many
    /// were deleted.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn delete_dead<C: ConnectionLike + Send, S: AsRef<str>>(&self, conn: &mut C, ids: &[S]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("XDEL");
        cmd.arg(&self.dead);
        for id in ids {
            cmd.arg(id.as_ref());
        }
        Ok(cmd.query_async(conn).await?)
    }

    /// The number of dead letters.
    ///
    /// # Errors
    ///
    /// Fails as every call to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn dead_len<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<u64> {
        Ok(redis::cmd("XLEN").arg(&self.dead).query_async(conn).await?)
    }
}

async fn range<C: ConnectionLike + Send>(conn: &mut C, stream: &str, start: &str, count: usize) -> Result<Vec<Entry>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(redis_count(count))
        .query_async(conn)
        .await?;
    Ok(reply
        .ids
        .into_iter()
        .map(|entry| {
            let (id, f) = reply::fields(stream, entry);
            Entry {
                id,
                fields: f.fields,
                malformed: f.malformed,
            }
        })
        .collect())
}

/// A `COUNT` as Redis takes it: a signed 64-bit number, `count` capped to fit.
fn redis_count(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}
