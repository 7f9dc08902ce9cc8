//! A work queue on a Redis Stream with a consumer group: at-least-once
//! delivery, stalled-delivery reclaim and a dead-letter stream.
//!
//! Entries are flat string maps so that consumers in other languages read
//! them with plain `XREADGROUP`; the dead-letter stream is `<stream>:dead`.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Script, Value};

use crate::error::{Error, Result};

static DEAD_LETTER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/dead_letter.lua")));
static TRIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/trim.lua")));

/// A stream and its consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    stream: String,
    group: String,
    dead: String,
    max_deliveries: u64,
}

/// One entry handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The stream entry id.
    pub id: String,
    /// The entry's fields.
    pub fields: HashMap<String, String>,
    /// How often the entry has been delivered, this time included.
    pub deliveries: u64,
}

impl Delivery {
    /// A field of the entry.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// An entry of the stream as `XRANGE` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// The stream entry id.
    pub id: String,
    /// The entry's fields.
    pub fields: HashMap<String, String>,
}

/// What `claim_stalled` took over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// A delivery is dead-lettered once it has been delivered 5 times.
    pub fn new(stream: impl Into<String>, group: impl Into<String>) -> Self {
        let stream = stream.into();
        Queue {
            dead: format!("{stream}:dead"),
            stream,
            group: group.into(),
            max_deliveries: 5,
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
            cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(">");
        let reply: Value = cmd.query_async(conn).await?;
        let mut out = Vec::new();
        for (_, entries) in pairs(&reply) {
            for entry in items(&entries) {
                if let Some((id, fields)) = parse_entry(entry) {
                    out.push(Delivery {
                        id,
                        fields,
                        deliveries: 1,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Acknowledges deliveries; returns how many were pending.
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

    /// The pending list: count, per consumer, and the oldest delivery's idle time.
    pub async fn pending<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<Pending> {
        let mut pipe = redis::pipe();
        pipe.cmd("XPENDING").arg(&self.stream).arg(&self.group);
        pipe.cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("-")
            .arg("+")
            .arg(1);
        let (summary, oldest): (Value, Value) = pipe.query_async(conn).await?;
        let summary = items(&summary);
        let count = summary.first().and_then(as_u64).unwrap_or(0);
        let per_consumer = summary
            .get(3)
            .map(|v| {
                items(v)
                    .iter()
                    .filter_map(|c| {
                        let c = items(c);
                        Some((as_string(c.first()?)?, c.get(1).and_then(as_u64)?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let oldest_idle = items(&oldest)
            .first()
            .and_then(|e| items(e).get(2).and_then(as_u64))
            .map(Duration::from_millis);
        Ok(Pending {
            count,
            per_consumer,
            oldest_idle,
        })
    }

    /// The group's consumers with their pending counts and idle times.
    pub async fn consumers<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<Vec<Consumer>> {
        let reply: Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.stream)
            .arg(&self.group)
            .query_async(conn)
            .await?;
        Ok(items(&reply)
            .iter()
            .filter_map(|c| {
                let info: HashMap<String, Value> = pairs(c).into_iter().collect();
                Some(Consumer {
                    name: as_string(info.get("name")?)?,
                    pending: info.get("pending").and_then(as_u64).unwrap_or(0),
                    idle: Duration::from_millis(info.get("idle").and_then(as_u64).unwrap_or(0)),
                })
            })
            .collect())
    }

    /// The number of entries in the stream.
    pub async fn len<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<u64> {
        Ok(redis::cmd("XLEN").arg(&self.stream).query_async(conn).await?)
    }

    /// Up to `count` entries of the stream from `start` (`-` for the first), for monitoring.
    pub async fn entries<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        start: &str,
        count: usize,
    ) -> Result<Vec<Entry>> {
        range(conn, &self.stream, start, count).await
    }

    /// Up to `count` dead letters from `start` (`-` for the first).
    pub async fn dead_letters<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        start: &str,
        count: usize,
    ) -> Result<Vec<Entry>> {
        range(conn, &self.dead, start, count).await
    }

    /// The number of dead letters.
    pub async fn dead_len<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<u64> {
        Ok(redis::cmd("XLEN").arg(&self.dead).query_async(conn).await?)
    }

    /// Takes over, for `consumer`, every delivery that has been pending longer
    /// than `min_idle` (its consumer died or hangs): `XAUTOCLAIM` from the start
    /// of the pending list until its cursor comes back to `0-0`, then the
    /// delivery counts from `XPENDING`. Entries deleted while pending are
    /// reported in [`Claimed::deleted`].
    pub async fn claim_stalled<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        min_idle: Duration,
        batch: usize,
    ) -> Result<Claimed> {
        let mut claimed = Claimed::default();
        let mut cursor = "0-0".to_owned();
        let mut ids = Vec::new();
        let mut entries = Vec::new();
        loop {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(consumer)
                .arg(min_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(batch.max(1))
                .query_async(conn)
                .await?;
            let parts = items(&reply);
            let next = parts
                .first()
                .and_then(as_string)
                .ok_or_else(|| Error::UnexpectedReply {
                    key: self.stream.clone(),
                    detail: "XAUTOCLAIM gave no cursor".into(),
                })?;
            for entry in parts.get(1).map(items).unwrap_or_default() {
                match parse_entry(entry) {
                    Some((id, fields)) => {
                        ids.push(id.clone());
                        entries.push((id, fields));
                    }
                    // Redis before 7 answers a deleted entry as [id, nil].
                    None => claimed.deleted.extend(items(entry).first().and_then(as_string)),
                }
            }
            claimed
                .deleted
                .extend(parts.get(2).map(items).unwrap_or_default().iter().filter_map(as_string));
            if next == "0-0" {
                break;
            }
            cursor = next;
        }
        if !claimed.deleted.is_empty() {
            tracing::warn!(stream = %self.stream, ids = ?claimed.deleted, "pending entries were deleted from the stream before they were acknowledged");
        }
        if ids.is_empty() {
            return Ok(claimed);
        }
        let counts = self.delivery_counts(conn, consumer, &ids).await?;
        claimed.deliveries = entries
            .into_iter()
            .map(|(id, fields)| Delivery {
                deliveries: counts.get(&id).copied().unwrap_or(1),
                id,
                fields,
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
        let reply: Value = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(first)
            .arg(last)
            .arg(ids.len().max(1) * 2 + 16)
            .arg(consumer)
            .query_async(conn)
            .await?;
        Ok(items(&reply)
            .iter()
            .filter_map(|e| {
                let e = items(e);
                Some((as_string(e.first()?)?, e.get(3).and_then(as_u64)?))
            })
            .collect())
    }

    /// Resets the idle time of deliveries that `consumer` is still working on
    /// (`XCLAIM ... JUSTID`, which does not count as a delivery), so that
    /// `claim_stalled` elsewhere does not take over a long job that is alive.
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

    /// Moves a delivery to the dead-letter stream with `reason` and its delivery
    /// count, and acknowledges it, atomically; returns the dead letter's id.
    pub async fn dead_letter<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        delivery: &Delivery,
        consumer: &str,
        reason: &str,
    ) -> Result<String> {
        let mut invocation = DEAD_LETTER.key(&self.stream);
        invocation
            .key(&self.dead)
            .arg(&self.group)
            .arg(&delivery.id)
            .arg(reason)
            .arg(delivery.deliveries)
            .arg(consumer);
        let mut fields: Vec<(&String, &String)> = delivery.fields.iter().collect();
        fields.sort();
        for (k, v) in fields {
            invocation.arg(k).arg(v);
        }
        Ok(invocation.invoke_async(conn).await?)
    }

    /// Trims the stream to about `max_len` entries, keeping every entry that a
    /// consumer group has not acknowledged or not yet read; returns how many went.
    pub async fn trim<C: ConnectionLike + Send>(&self, conn: &mut C, max_len: u64) -> Result<u64> {
        Ok(TRIM.key(&self.stream).arg(max_len).invoke_async(conn).await?)
    }
}

async fn range<C: ConnectionLike + Send>(conn: &mut C, stream: &str, start: &str, count: usize) -> Result<Vec<Entry>> {
    let reply: Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(count.max(1))
        .query_async(conn)
        .await?;
    Ok(items(&reply)
        .iter()
        .filter_map(|e| parse_entry(e).map(|(id, fields)| Entry { id, fields }))
        .collect())
}

/// Compares stream ids (`ms-seq`) numerically.
pub fn cmp_ids(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |s: &str| {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        (ms.parse::<u64>().unwrap_or(0), seq.parse::<u64>().unwrap_or(0))
    };
    parse(a).cmp(&parse(b))
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

/// Key/value pairs of a RESP3 map or a RESP2 flat array.
fn pairs(v: &Value) -> Vec<(String, Value)> {
    match v {
        Value::Map(m) => m.iter().filter_map(|(k, v)| Some((as_string(k)?, v.clone()))).collect(),
        Value::Array(items) if items.len() % 2 == 0 && items.first().is_some_and(|i| as_string(i).is_some()) => items
            .chunks_exact(2)
            .filter_map(|c| Some((as_string(&c[0])?, c[1].clone())))
            .collect(),
        // RESP2 XREADGROUP: [[stream, entries], ...]
        Value::Array(items) => items
            .iter()
            .filter_map(|i| {
                let i = crate::queue::items(i);
                Some((as_string(i.first()?)?, i.get(1)?.clone()))
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn parse_entry(v: &Value) -> Option<(String, HashMap<String, String>)> {
    let e = items(v);
    let id = as_string(e.first()?)?;
    let fields = match e.get(1)? {
        Value::Nil => return None,
        f => pairs(f)
            .into_iter()
            .filter_map(|(k, v)| Some((k, as_string(&v)?)))
            .collect(),
    };
    Some((id, fields))
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => as_string(other)?.parse().ok(),
    }
}
