//! What finished, per minute, for the last hour, and how long it took: kept
//! in Redis with a bounded size, so that any client can show them.
//!
//! `<stream>:metrics:<outcome>` is a hash: field = the unix minute (by the
//! runner's clock), value = how many deliveries ended with that outcome in
//! it; fields older than [`WINDOW_MINUTES`] are dropped by the runners'
//! housekeeping, and the hash expires two hours after its last count.
//! `<stream>:durations` is a list of the last [`DURATIONS_KEPT`] run times
//! in milliseconds, newest first.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::ConnectionLike;

use super::Queue;
use crate::engine::pipeline;
use crate::error::Result;

/// The outcomes a runner counts.
pub const OUTCOMES: [&str; 4] = ["succeeded", "failed", "cancelled", "retried"];

/// The minutes counted.
pub const WINDOW_MINUTES: i64 = 60;
/// How many run times are kept.
pub const DURATIONS_KEPT: isize = 1000;
/// How long a metrics hash outlives its last count.
const METRICS_TTL_MS: u64 = 2 * 3600 * 1000;

/// How one delivery ended, to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished<'a> {
    /// The outcome: `succeeded`, `failed`, `cancelled`, `retried`.
    pub outcome: &'a str,
    /// How long its run took.
    pub took: Duration,
    /// Now, in unix millis.
    pub at_ms: i64,
}

/// What [`Queue::metrics`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Metrics {
    /// Per outcome: the counts of the last [`WINDOW_MINUTES`] minutes,
    /// oldest first, the current minute last.
    pub per_minute: BTreeMap<String, Vec<u64>>,
    /// The last run times in milliseconds, newest first.
    pub durations_ms: Vec<u64>,
}

impl Metrics {
    /// The `p`th percentile (0-100) of the run times kept, in milliseconds.
    pub fn percentile(&self, p: u8) -> Option<u64> {
        let mut sorted = self.durations_ms.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return None;
        }
        let rank = (usize::from(p.min(100)) * (sorted.len() - 1)).div_ceil(100);
        sorted.get(rank).copied()
    }
}

fn minute(at_ms: i64) -> i64 {
    at_ms.div_euclid(60_000)
}

impl Queue {
    /// The counts of `outcome`: `<stream>:metrics:<outcome>`.
    pub fn metrics_key(&self, outcome: &str) -> String {
        format!("{}:metrics:{outcome}", self.stream)
    }

    /// The last run times: `<stream>:durations`.
    pub fn durations_key(&self) -> String {
        format!("{}:durations", self.stream)
    }

    /// Counts how deliveries ended (a runner's tally since its last count):
    /// per outcome and minute one `HINCRBY`, the run times in one `LPUSH`,
    /// in one round trip (on a cluster, one per node). Best effort: counts
    /// whose round trip fails are lost, never sent twice.
    ///
    /// # Errors
    ///
    /// Fails as every call to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn count_finished<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        finished: &[Finished<'_>],
    ) -> Result<()> {
        if finished.is_empty() {
            return Ok(());
        }
        let mut counts: BTreeMap<(&str, i64), i64> = BTreeMap::new();
        for f in finished {
            let n = counts.entry((f.outcome, minute(f.at_ms))).or_default();
            *n = n.saturating_add(1);
        }
        let mut cmds = Vec::with_capacity(2 * counts.len() + 2);
        let mut keys: Vec<String> = Vec::new();
        for ((outcome, at), n) in counts {
            let key = self.metrics_key(outcome);
            cmds.push(redis::cmd("HINCRBY").arg(&key).arg(at).arg(n).clone());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        for key in keys {
            cmds.push(redis::cmd("PEXPIRE").arg(key).arg(METRICS_TTL_MS).clone());
        }
        let took: Vec<u64> = finished
            .iter()
            .map(|f| u64::try_from(f.took.as_millis()).unwrap_or(u64::MAX))
            .collect();
        cmds.push(redis::cmd("LPUSH").arg(self.durations_key()).arg(took).clone());
        cmds.push(
            redis::cmd("LTRIM")
                .arg(self.durations_key())
                .arg(0)
                .arg(DURATIONS_KEPT - 1)
                .clone(),
        );
        for reply in pipeline::query(conn, &cmds).await? {
            if let redis::Value::ServerError(e) = reply {
                return Err(redis::RedisError::from(e).into());
            }
        }
        Ok(())
    }

    /// The counts of `outcomes` for the last hour up to `now_ms`, and the
    /// run times kept. Counts that are not numbers read as 0.
    ///
    /// # Errors
    ///
    /// Fails as every call to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn metrics<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        outcomes: &[&str],
        now_ms: i64,
    ) -> Result<Metrics> {
        let now = minute(now_ms);
        let mut metrics = Metrics::default();
        for outcome in outcomes {
            // Bytes, not text: a field another client wrote that is not
            // UTF-8 is skipped, and fails nothing.
            let fields: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
                .arg(self.metrics_key(outcome))
                .query_async(conn)
                .await?;
            let mut counts = vec![0u64; usize::try_from(WINDOW_MINUTES).unwrap_or(60)];
            for (field, value) in fields {
                let (Some(m), Some(n)) = (number::<i64>(&field), number::<u64>(&value)) else {
                    continue;
                };
                let age = now.saturating_sub(m);
                if (0..WINDOW_MINUTES).contains(&age) {
                    let i = usize::try_from(WINDOW_MINUTES - 1 - age).unwrap_or(0);
                    counts[i] = counts[i].saturating_add(n);
                }
            }
            metrics.per_minute.insert((*outcome).to_owned(), counts);
        }
        let durations: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(self.durations_key())
            .arg(0)
            .arg(DURATIONS_KEPT - 1)
            .query_async(conn)
            .await?;
        metrics.durations_ms = durations.iter().filter_map(|d| number(d)).collect();
        Ok(metrics)
    }

    /// Drops the counts of `outcomes` older than the window (housekeeping);
    /// returns how many fields went.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn trim_metrics<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        outcomes: &[&str],
        now_ms: i64,
    ) -> Result<u64> {
        let now = minute(now_ms);
        let mut gone = 0;
        for outcome in outcomes {
            let key = self.metrics_key(outcome);
            let fields: Vec<String> = redis::cmd("HKEYS").arg(&key).query_async(conn).await?;
            let old: Vec<String> = fields
                .into_iter()
                .filter(|f| {
                    f.parse::<i64>()
                        .map_or(true, |m| now.saturating_sub(m) >= WINDOW_MINUTES)
                })
                .collect();
            if !old.is_empty() {
                let n: u64 = redis::cmd("HDEL").arg(&key).arg(&old).query_async(conn).await?;
                gone += n;
            }
        }
        Ok(gone)
    }
}

/// The number `bytes` spell, if they are UTF-8 and a number.
fn number<T: std::str::FromStr>(bytes: &[u8]) -> Option<T> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_the_kept_run_times() {
        let m = Metrics {
            durations_ms: (1..=100).rev().collect(),
            ..Metrics::default()
        };
        assert_eq!(
            (m.percentile(50), m.percentile(90), m.percentile(99), m.percentile(100)),
            (Some(51), Some(91), Some(100), Some(100))
        );
        assert_eq!(Metrics::default().percentile(50), None);
        assert_eq!(minute(-1), -1);
    }
}
