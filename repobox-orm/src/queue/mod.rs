//! A work queue on a Redis Stream with a consumer group: at-least-once
//! delivery, stalled-delivery reclaim and a dead-letter stream.
//!
//! Entries are flat string maps so that consumers in other languages read
//! them with plain `XREADGROUP`; the dead-letter stream is `<stream>:dead`.
//! Replies are read with redis-rs's typed stream replies (`reply`); the
//! monitoring reads are in `inspect`, the takeover of stalled deliveries in
//! `recover`; `log_limit` keeps per-entry log lines from flooding the logs.

mod control;
mod dead;
mod delivery;
mod inspect;
mod levels;
mod log_limit;
mod metrics;
pub(crate) mod outbox;
mod rate;
mod recover;
mod reply;
mod take;
mod tenants;
mod trim;

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::streams::StreamReadReply;

pub use self::delivery::Delivery;
use self::delivery::Seen;
pub use self::log_limit::{HeldBack, LOG_INTERVAL, LogLimit};
pub use self::metrics::{DURATIONS_KEPT, Finished, Metrics, OUTCOMES, WINDOW_MINUTES};
pub use self::outbox::OutboxSweep;
pub use self::rate::{Grant, RateLimit};
pub use self::reply::cmp_ids;
pub use self::take::{Computed, Finish, PreparedStart, StartTemplate, Taken};
pub use self::tenants::Slot;
use crate::engine::pipeline;
use crate::engine::write::route;
use crate::error::Result;
use crate::scripts::DEAD_LETTER;
use crate::scripts::dead_letter::DeadLetterCall;

/// The queue defaults that the library, the runner and the CLI share.
pub mod defaults {
    use std::time::Duration;

    /// Deliveries of an entry before it is dead-lettered instead of run again.
    pub const MAX_DELIVERIES: u64 = 5;
    /// How many stalled deliveries one `XAUTOCLAIM` call takes over.
    pub const CLAIM_BATCH: usize = 100;
    /// A running job's delivery is refreshed every `min_idle / HEARTBEAT_DIVISOR`,
    /// so that it never looks stalled while its runner is alive.
    pub const HEARTBEAT_DIVISOR: u32 = 3;
    /// How long a delivery must be idle before another consumer takes it over.
    pub const MIN_IDLE: Duration = Duration::from_secs(30);
}

/// A stream and its consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    stream: String,
    group: String,
    dead: String,
    max_deliveries: u64,
}

/// An entry of the stream as `XRANGE` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// The stream entry id.
    pub id: String,
    /// The entry's fields that are text.
    pub fields: HashMap<String, String>,
    /// What is wrong with the entry, when some of its fields are not text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub malformed: Option<String>,
}

/// What `claim_stalled` took over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claimed {
    /// Deliveries now owned by the claiming consumer, with their delivery counts.
    pub deliveries: Vec<Delivery>,
    /// Ids that were pending but whose entries were deleted from the stream
    /// (by `XDEL` or a trim): Redis drops them from the pending list; they are
    /// reported here so that the loss is seen.
    pub deleted: Vec<String>,
}

/// The group's pending list, summed up.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pending {
    /// Deliveries not yet acknowledged.
    pub count: u64,
    /// Pending deliveries per consumer.
    pub per_consumer: Vec<(String, u64)>,
    /// How long the oldest pending delivery has waited since it was last delivered.
    pub oldest_idle: Option<Duration>,
}

/// One pending delivery, as `XPENDING` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PendingEntry {
    /// The stream entry id.
    pub id: String,
    /// The consumer holding it.
    pub consumer: String,
    /// Time since it was last delivered.
    pub idle: Duration,
    /// How often it has been delivered.
    pub deliveries: u64,
}

/// A consumer of the group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Consumer {
    /// Its name.
    pub name: String,
    /// Deliveries it has not acknowledged.
    pub pending: u64,
    /// Time since it last read or claimed.
    pub idle: Duration,
}

impl Queue {
    /// The queue on `stream` consumed by `group`; dead letters go to `<stream>:dead`.
    /// A delivery is dead-lettered once it has been delivered
    /// [`defaults::MAX_DELIVERIES`] times.
    pub fn new(stream: impl Into<String>, group: impl Into<String>) -> Self {
        let stream = stream.into();
        Queue {
            dead: format!("{stream}:dead"),
            stream,
            group: group.into(),
            max_deliveries: defaults::MAX_DELIVERIES,
        }
    }

    /// How many deliveries an entry gets before it is dead-lettered instead of run again.
    pub fn max_deliveries(mut self, n: u64) -> Self {
        self.max_deliveries = n.max(1);
        self
    }

    /// The configured maximum of deliveries.
    pub fn max_deliveries_value(&self) -> u64 {
        self.max_deliveries
    }

    /// The stream key.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The dead-letter stream key.
    pub fn dead_stream(&self) -> &str {
        &self.dead
    }

    /// Whether a delivery has used up its deliveries.
    pub fn is_exhausted(&self, delivery: &Delivery) -> bool {
        delivery.deliveries > self.max_deliveries
    }

    /// Creates the stream and the group (from the stream's start); an existing group is fine.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn ensure_group<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<()> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => Ok(other?),
        }
    }

    /// Appends an entry; returns its id.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn enqueue<C: ConnectionLike + Send>(&self, conn: &mut C, fields: &[(&str, &str)]) -> Result<String> {
        Ok(redis::cmd("XADD")
            .arg(&self.stream)
            .arg("*")
            .arg(fields)
            .query_async(conn)
            .await?)
    }

    /// Reads up to `count` new entries for `consumer`, waiting up to `block`
    /// for one (`None`: return at once). Blocking reads belong on a connection
    /// of their own ([`Store::dedicated`](crate::Store::dedicated)).
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn read<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Delivery>> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count.max(1));
        if let Some(block) = block {
            cmd.arg("BLOCK")
                .arg(u64::try_from(block.as_millis().max(1)).unwrap_or(u64::MAX));
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(">");
        let reply: Option<StreamReadReply> = cmd.query_async(conn).await?;
        Ok(reply.map(|r| self.deliveries(r)).unwrap_or_default())
    }

    /// The deliveries of an `XREADGROUP` reply of this queue.
    pub(crate) fn deliveries(&self, reply: StreamReadReply) -> Vec<Delivery> {
        std::iter::once(reply)
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|entry| {
                let (id, f) = reply::fields(&self.stream, entry);
                Delivery {
                    id,
                    fields: f.fields,
                    deliveries: 1,
                    malformed: f.malformed,
                    seen: None,
                }
            })
            .collect()
    }

    /// Acknowledges deliveries; returns how many were pending.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn ack<C: ConnectionLike + Send, S: AsRef<str>>(&self, conn: &mut C, ids: &[S]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
        Ok(redis::cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(ids)
            .query_async(conn)
            .await?)
    }

    /// Moves a delivery to the dead-letter stream with `reason` and its delivery
    /// count, and acknowledges it, atomically; returns the dead letter's id.
    ///
    /// On a cluster the stream and its dead letters are in different slots:
    /// the dead letter is appended first and the delivery acknowledged after
    /// it, so a crash between the two leaves the delivery pending, to be
    /// dead-lettered again (a duplicate dead letter), never lost.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn dead_letter<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        delivery: &Delivery,
        consumer: &str,
        reason: &str,
    ) -> Result<String> {
        let mut fields: Vec<(&String, &String)> = delivery.fields.iter().collect();
        fields.sort();
        let call = DeadLetterCall {
            stream: &self.stream,
            dead: &self.dead,
            group: &self.group,
            id: &delivery.id,
            reason,
            deliveries: delivery.deliveries,
            consumer,
            fields: &fields,
        };
        if !route::splits(conn, [self.stream.as_str(), self.dead.as_str()]) {
            let reply =
                pipeline::send_loading(conn, &DEAD_LETTER, &call.command(), &mut pipeline::Reloads::default()).await?;
            match call.parse(reply) {
                Err(crate::Error::Redis(e)) if crate::engine::pipeline::is_refused_across_slots(&e) => {}
                other => return other,
            }
        }
        let time: (String, String) = redis::cmd("TIME").query_async(conn).await?;
        let dead_at = time.0.parse::<u64>().unwrap_or(0) * 1000 + time.1.parse::<u64>().unwrap_or(0) / 1000;
        let dead_id: String = redis::cmd("XADD")
            .arg(&self.dead)
            .arg("*")
            .arg("original_id")
            .arg(&delivery.id)
            .arg("reason")
            .arg(reason)
            .arg("deliveries")
            .arg(delivery.deliveries)
            .arg("consumer")
            .arg(consumer)
            .arg("dead_at")
            .arg(dead_at)
            .arg(fields)
            .query_async(conn)
            .await?;
        self.ack(conn, &[&delivery.id]).await?;
        Ok(dead_id)
    }

    /// Removes the group's consumers that have been idle at least `idle` and
    /// hold nothing pending (runners that are gone); returns their names.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn remove_idle_consumers<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        idle: Duration,
    ) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for c in self.consumers(conn).await? {
            if c.pending == 0 && c.idle >= idle {
                let _: redis::Value = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&self.stream)
                    .arg(&self.group)
                    .arg(&c.name)
                    .query_async(conn)
                    .await?;
                removed.push(c.name);
            }
        }
        Ok(removed)
    }
}
