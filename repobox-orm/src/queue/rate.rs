//! A queue-wide limit on starts: at most `max` per `per`, across every
//! runner, by Redis's clock. The limiter is `<stream>:rate`, a sorted set of
//! the starts in the current window; a runner asks for as many starts as it
//! has free slots before it reads (each scored, until the read returns, by
//! the latest time it may start: now plus the read's block), reads at most
//! what it was granted, then scores the used ones by when the read returned
//! and gives back the rest. So no window of `per` holds more than `max`
//! starts, however long a read waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionLike;

use super::Queue;
use crate::engine::pipeline;
use crate::error::{Error, Result};
use crate::scripts::RATE_LIMIT;
use crate::scripts::rate_limit;

/// At most `max` starts per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Starts per window.
    pub max: u32,
    /// The window.
    pub per: Duration,
}

impl RateLimit {
    /// `Err(InvalidArgument)` unless `max` is at least 1 and `per` between
    /// 1 ms and a day.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) unless `max` is at least 1
    /// and `per` between 1 ms and a day.
    pub fn new(max: u32, per: Duration) -> Result<Self> {
        if max == 0 || per < Duration::from_millis(1) || per > Duration::from_secs(24 * 3600) {
            return Err(Error::InvalidArgument {
                name: "rate limit",
                reason: format!("{max} per {per:?}: needs at least 1 start per 1 ms to 1 day"),
            });
        }
        Ok(RateLimit { max, per })
    }
}

impl std::str::FromStr for RateLimit {
    type Err = String;

    /// `N/DURATION`: `100/1m`, `5/1s`, `10/500ms` (`s`, `m`, `h`, `ms`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (max, per) = s.split_once('/').ok_or("expected N/DURATION, like 100/1m")?;
        let max: u32 = max.trim().parse().map_err(|_| format!("{max:?} is not a count"))?;
        let per = per.trim();
        let (digits, unit) = per.split_at(per.find(|c: char| !c.is_ascii_digit()).unwrap_or(per.len()));
        let n: u64 = digits.parse().map_err(|_| format!("{per:?} is not a duration"))?;
        let per = match unit {
            "ms" => Duration::from_millis(n),
            "" | "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(format!("unknown unit {unit:?} (ms, s, m, h)")),
        };
        RateLimit::new(max, per).map_err(|e| e.to_string())
    }
}

/// Starts granted by [`Queue::acquire_starts`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// The granted starts' names in the limiter; settle them (the unused given back)
    /// with [`Queue::settle_starts`].
    pub starts: Vec<String>,
    /// When none was granted: how long until one may be.
    pub wait: Duration,
}

/// Makes the limiter's member names unique within this process.
static NEXT: AtomicU64 = AtomicU64::new(0);

impl Queue {
    /// The limiter of the queue's starts: `<stream>:rate`.
    pub fn rate_key(&self) -> String {
        format!("{}:rate", self.stream)
    }

    /// Asks for up to `want` starts under `limit` for `consumer`, for a read
    /// that waits at most `hold`; settle them with
    /// [`settle_starts`](Self::settle_starts) once the read returns.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn acquire_starts<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        consumer: &str,
        limit: RateLimit,
        want: usize,
        hold: Duration,
    ) -> Result<Grant> {
        let key = self.rate_key();
        let prefix = format!(
            "{consumer}:{}:{}:",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let call = rate_limit::Grant {
            key: &key,
            max: u64::from(limit.max),
            per_ms: u64::try_from(limit.per.as_millis()).unwrap_or(u64::MAX),
            want: u64::try_from(want).unwrap_or(u64::MAX),
            prefix: &prefix,
            hold_ms: u64::try_from(hold.as_millis()).unwrap_or(u64::MAX),
        };
        let reply =
            pipeline::send_loading(conn, &RATE_LIMIT, &call.command(), &mut pipeline::Reloads::default()).await?;
        let (granted, wait) = call.parse(reply)?;
        Ok(Grant {
            starts: (1..=granted).map(|i| format!("{prefix}{i}")).collect(),
            wait: Duration::from_millis(wait),
        })
    }

    /// Settles granted starts once their read returned: the `used` ones are
    /// scored now, the `unused` given back.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn settle_starts<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        used: &[String],
        unused: &[String],
    ) -> Result<()> {
        if used.is_empty() && unused.is_empty() {
            return Ok(());
        }
        let key = self.rate_key();
        let cmd = rate_limit::settle(&key, used, unused);
        let reply = pipeline::send_loading(conn, &RATE_LIMIT, &cmd, &mut pipeline::Reloads::default()).await?;
        rate_limit::parse_settle(&key, reply).map(drop)
    }
}
