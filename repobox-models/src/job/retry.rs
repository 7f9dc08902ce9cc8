//! How a failed run is retried: how many attempts, how long to wait between
//! them. A runner has a policy for its queue; a job may carry its own (the
//! job's `retry` field, JSON), which wins.

use std::time::Duration;

use crate::Result;

/// The longest backoff a policy may ask for: 30 days, so that `run_at`
/// stays far from overflowing.
const MAX_BACKOFF: Duration = Duration::from_secs(30 * 24 * 3600);

/// How a job's failed runs are retried. A run fails *retryably* when its
/// handler returns a retry failure (an error, a timeout, a program that could
/// not start), or exits with a code listed in
/// [`retry_exit_codes`](Self::retry_exit_codes); any other non-zero exit code
/// is the job's final result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetryPolicy {
    /// Runs in all, the first included: `1` never retries.
    pub max_attempts: u32,
    /// The wait before each retry.
    pub backoff: Backoff,
    /// Non-zero exit codes that are retried like errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_exit_codes: Vec<i32>,
}

/// The wait before a retry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Backoff {
    /// Fixed, or doubling with each attempt.
    pub kind: BackoffKind,
    /// The first wait, in milliseconds.
    pub base_ms: u64,
    /// The longest wait, in milliseconds.
    pub max_ms: u64,
    /// Whether a random part of the wait (up to half of it) is left out, so
    /// that jobs that failed together are not all retried together.
    #[serde(default)]
    pub jitter: bool,
}

/// How the wait grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackoffKind {
    /// Always `base_ms`.
    Fixed,
    /// `base_ms`, then twice that, and so on, up to `max_ms`.
    Exponential,
}

impl Default for RetryPolicy {
    /// Five attempts, exponential backoff from 1 s up to 5 minutes, with jitter.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            backoff: Backoff::exponential(Duration::from_secs(1), Duration::from_secs(300)),
            retry_exit_codes: Vec::new(),
        }
    }
}

impl RetryPolicy {
    /// A policy of `max_attempts` runs with `backoff` between them.
    pub fn new(max_attempts: u32, backoff: Backoff) -> Self {
        RetryPolicy {
            max_attempts,
            backoff,
            retry_exit_codes: Vec::new(),
        }
    }

    /// A policy that never retries.
    pub fn never() -> Self {
        RetryPolicy::new(1, Backoff::fixed(Duration::ZERO))
    }

    /// The same policy, retrying these exit codes too.
    pub fn retry_exit_codes(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.retry_exit_codes = codes.into_iter().collect();
        self
    }

    /// The policy with what another writer may have stored made workable:
    /// at least one attempt, waits of at most 30 days, a base no longer than
    /// the maximum. (A policy the library writes is [`check`](Self::check)ed
    /// instead.)
    pub fn bounded(mut self) -> Self {
        let max = u64::try_from(MAX_BACKOFF.as_millis()).unwrap_or(u64::MAX);
        self.max_attempts = self.max_attempts.max(1);
        self.backoff.max_ms = self.backoff.max_ms.min(max);
        self.backoff.base_ms = self.backoff.base_ms.min(self.backoff.max_ms);
        self
    }

    /// Whether a run that exited with `code` may be retried.
    pub fn retries_exit_code(&self, code: i32) -> bool {
        code != 0 && self.retry_exit_codes.contains(&code)
    }

    /// `Err(InvalidArgument)` unless there is at least one attempt and the
    /// backoff is at most 30 days with its base no longer than its maximum.
    pub fn check(&self) -> Result<()> {
        let refuse = |reason: String| Err(repobox_orm::Error::InvalidArgument { name: "retry", reason }.into());
        if self.max_attempts == 0 {
            return refuse("max_attempts must be at least 1".into());
        }
        let max = u64::try_from(MAX_BACKOFF.as_millis()).unwrap_or(u64::MAX);
        if self.backoff.max_ms > max {
            return refuse(format!(
                "a backoff of {} ms is longer than {MAX_BACKOFF:?}",
                self.backoff.max_ms
            ));
        }
        if self.backoff.base_ms > self.backoff.max_ms {
            return refuse(format!(
                "the backoff's base ({} ms) is above its maximum ({} ms)",
                self.backoff.base_ms, self.backoff.max_ms
            ));
        }
        Ok(())
    }
}

impl Backoff {
    /// Waits of `base`, doubling up to `max`, with jitter.
    pub fn exponential(base: Duration, max: Duration) -> Self {
        Backoff {
            kind: BackoffKind::Exponential,
            base_ms: millis(base),
            max_ms: millis(max),
            jitter: true,
        }
    }

    /// Waits of `wait` each time, without jitter.
    pub fn fixed(wait: Duration) -> Self {
        Backoff {
            kind: BackoffKind::Fixed,
            base_ms: millis(wait),
            max_ms: millis(wait),
            jitter: false,
        }
    }

    /// The same backoff with or without jitter.
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// The wait, in milliseconds, after failed attempt `attempt` (1 for the
    /// first run); `random` is any random number (the jitter's source).
    pub fn wait_ms(&self, attempt: u32, random: u64) -> u64 {
        let full = match self.kind {
            BackoffKind::Fixed => self.base_ms,
            BackoffKind::Exponential => {
                let doublings = attempt.saturating_sub(1).min(63);
                self.base_ms.saturating_mul(1u64 << doublings)
            }
        }
        .min(self.max_ms);
        if self.jitter && full > 1 {
            let half = full / 2;
            full - (random % (half + 1))
        } else {
            full
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_waits_double_up_to_the_maximum_and_jitter_takes_at_most_half() {
        let b = Backoff::exponential(Duration::from_millis(100), Duration::from_millis(1000)).jitter(false);
        let waits: Vec<u64> = (1..=6).map(|a| b.wait_ms(a, 0)).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.wait_ms(u32::MAX, 0), 1000, "no overflow on huge attempts");
        let j = b.clone().jitter(true);
        for r in [0, 1, 77, 250, 400, u64::MAX] {
            let w = j.wait_ms(3, r);
            assert!((200..=400).contains(&w), "{w}");
        }
        assert_eq!(Backoff::fixed(Duration::from_millis(50)).wait_ms(9, 3), 50);
    }

    #[test]
    fn a_policy_is_checked_and_lists_retryable_exit_codes() {
        assert!(RetryPolicy::default().check().is_ok());
        assert!(RetryPolicy::new(0, Backoff::fixed(Duration::ZERO)).check().is_err());
        let long = Backoff::fixed(Duration::from_secs(31 * 24 * 3600));
        assert!(RetryPolicy::new(2, long).check().is_err());
        let policy = RetryPolicy::default().retry_exit_codes([75]);
        assert!(policy.retries_exit_code(75));
        assert!(!policy.retries_exit_code(1));
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(
            json,
            r#"{"max_attempts":5,"backoff":{"kind":"exponential","base_ms":1000,"max_ms":300000,"jitter":true},"retry_exit_codes":[75]}"#
        );
        assert_eq!(serde_json::from_str::<RetryPolicy>(&json).unwrap(), policy);
        let stored = r#"{"max_attempts":0,"backoff":{"kind":"fixed","base_ms":18446744073709551615,"max_ms":18446744073709551615}}"#;
        let bounded = serde_json::from_str::<RetryPolicy>(stored).unwrap().bounded();
        assert!(bounded.check().is_ok(), "{bounded:?}");
        assert_eq!(bounded.max_attempts, 1);
    }
}
