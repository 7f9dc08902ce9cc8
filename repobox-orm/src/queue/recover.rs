//! Taking over deliveries whose consumer died, and keeping live ones fresh.

use std::collections::HashMap;
use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionLike;
use redis::streams::{StreamAutoClaimReply, StreamPendingCountReply};

use super::{Claimed, Delivery, LogLimit, Queue, cmp_ids, reply};
use crate::error::Result;

static DELETED: LogLimit = LogLimit::warn("pending entries were deleted from the stream before they were acknowledged");

/// How idle a delivery handed back looks: longer than any runner waits
/// before it takes a delivery over.
const HANDED_BACK_IDLE: Duration = Duration::from_secs(30 * 24 * 3600);

impl Queue {
    /// Hands back `consumer`'s pending deliveries (up to `limit`) when it
    /// stops: each is made to look idle for a long time (`XCLAIM ... IDLE
    /// JUSTID`, its delivery count unchanged), so that another consumer's
    /// next [`claim_stalled`](Self::claim_stalled) takes it over at once
    /// instead of after its `min_idle`. For a runner that stops with jobs
    /// it put back, or with a delivery a read it abandoned was handed.
    /// Returns how many were handed back.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn hand_back<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        limit: usize,
    ) -> Result<usize> {
        if limit == 0 {
            return Ok(0);
        }
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("-")
            .arg("+")
            .arg(limit)
            .arg(consumer)
            .query_async(conn)
            .await?;
        if pending.ids.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = pending.ids.iter().map(|p| p.id.as_str()).collect();
        let handed: Vec<String> = redis::cmd("XCLAIM")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(consumer)
            .arg(0)
            .arg(&ids)
            .arg("IDLE")
            .arg(u64::try_from(HANDED_BACK_IDLE.as_millis()).unwrap_or(u64::MAX))
            .arg("JUSTID")
            .query_async(conn)
            .await?;
        Ok(handed.len())
    }

    /// Takes over, for `consumer`, every delivery that has been pending longer
    /// than `min_idle` (its consumer died or hangs): `XAUTOCLAIM` from the start
    /// of the pending list until its cursor comes back to `0-0`, then the
    /// delivery counts from `XPENDING`. Entries deleted while pending are
    /// reported in [`Claimed::deleted`].
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn claim_stalled<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        min_idle: Duration,
        batch: usize,
    ) -> Result<Claimed> {
        let mut claimed = Claimed::default();
        let mut cursor = "0-0".to_owned();
        let mut entries = Vec::new();
        loop {
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(consumer)
                .arg(u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX))
                .arg(&cursor)
                .arg("COUNT")
                .arg(batch.max(1))
                .query_async(conn)
                .await?;
            entries.extend(reply.claimed.into_iter().map(|e| reply::fields(&self.stream, e)));
            claimed.deleted.extend(reply.deleted_ids);
            if reply.next_stream_id == "0-0" {
                break;
            }
            cursor = reply.next_stream_id;
        }
        // The ids are not all listed: a trim can delete thousands.
        if let Some(first) = claimed.deleted.first()
            && let Some(held_back) = DELETED.admit()
        {
            tracing::warn!(stream = %self.stream, count = claimed.deleted.len(), first = %first, "pending entries were deleted from the stream before they were acknowledged{held_back}");
        }
        if entries.is_empty() {
            return Ok(claimed);
        }
        let ids: Vec<String> = entries.iter().map(|(id, _)| id.clone()).collect();
        let counts = self.delivery_counts(conn, consumer, &ids).await?;
        claimed.deliveries = entries
            .into_iter()
            .map(|(id, f)| Delivery {
                deliveries: counts.get(&id).copied().unwrap_or(1),
                id,
                fields: f.fields,
                malformed: f.malformed,
                seen: None,
            })
            .collect();
        Ok(claimed)
    }

    async fn delivery_counts<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        ids: &[String],
    ) -> Result<HashMap<String, u64>> {
        let (first, last) = (
            ids.iter().min_by(|a, b| cmp_ids(a, b)),
            ids.iter().max_by(|a, b| cmp_ids(a, b)),
        );
        let (Some(first), Some(last)) = (first, last) else {
            return Ok(HashMap::new());
        };
        let reply: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(first)
            .arg(last)
            .arg(ids.len().max(1) * 2 + 16)
            .arg(consumer)
            .query_async(conn)
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|p| (p.id, u64::try_from(p.times_delivered).unwrap_or(u64::MAX)))
            .collect())
    }

    /// Resets the idle time of deliveries that `consumer` is still working on
    /// (`XCLAIM ... JUSTID`, which does not count as a delivery), so that
    /// `claim_stalled` elsewhere does not take over a long job that is alive.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn touch<C: ConnectionLike + Send, S: AsRef<str>>(
        &self,
        conn: &mut C,
        consumer: &str,
        ids: &[S],
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
        let _: Value = redis::cmd("XCLAIM")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(consumer)
            .arg(0)
            .arg(ids)
            .arg("JUSTID")
            .query_async(conn)
            .await?;
        Ok(())
    }
}
