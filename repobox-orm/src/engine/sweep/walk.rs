//! How a walk of the keyspace goes: what it tells about its progress, and
//! how fast it may go.

use std::num::NonZeroU32;
use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionLike;

use crate::error::Result;

/// How many keys one `SCAN` call asks for.
const SCAN_COUNT: u64 = 500;

/// Told how far a long walk has come (an index check or repair over the
/// keyspace, [`check_indexes_with`]; a purge over a status index), so that
/// a command can draw a progress bar or log a line now and then. Called
/// from the walk's own task, between its Redis calls: keep it quick.
///
/// [`check_indexes_with`]: crate::check_indexes_with
pub trait WalkProgress: Send + Sync {
    /// A pass begins: `what` it walks (an index key template, an entity's
    /// key template, a status index) and about how many units it will look
    /// at (for a pass over the keyspace, `DBSIZE` keys: `SCAN` looks at
    /// every key to find those it matches).
    fn pass(&self, what: &str, units: u64);

    /// `units` more were looked at in the current pass (over the keyspace
    /// an estimate: `SCAN` says how many keys it matched, not how many it
    /// looked at).
    fn advance(&self, units: u64);
}

/// How to walk: who hears of the progress, and how fast to go at most.
#[derive(Clone, Copy, Default)]
pub struct Walk<'a> {
    progress: Option<&'a dyn WalkProgress>,
    per_second: Option<NonZeroU32>,
}

impl std::fmt::Debug for Walk<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Walk")
            .field("progress", &self.progress.is_some())
            .field("per_second", &self.per_second)
            .finish()
    }
}

impl<'a> Walk<'a> {
    /// A walk at full speed that tells no one.
    pub fn new() -> Self {
        Walk::default()
    }

    /// Tells `progress` how far the walk has come.
    pub fn progress(mut self, progress: &'a dyn WalkProgress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Looks at no more than about `units` keys (or jobs) a second: the
    /// walk's calls wait their turn, so that a walk of a busy production
    /// Redis leaves it room. `None`: as fast as Redis answers.
    pub fn per_second(mut self, units: Option<NonZeroU32>) -> Self {
        self.per_second = units;
        self
    }

    /// Begins a pass over about `units` units: tells the progress, starts
    /// the rate's clock.
    pub fn begin(&self, what: &str, units: u64) -> Pace {
        if let Some(progress) = self.progress {
            progress.pass(what, units);
        }
        Pace {
            began: tokio::time::Instant::now(),
            looked: 0,
            total: units,
        }
    }

    /// After `units` more units of the pass (counted up to the pass's
    /// total: an estimate never runs past it): tells the progress, then
    /// waits as long as the rate asks.
    pub async fn step(&self, pace: &mut Pace, units: u64) {
        let units = units.min(pace.total.saturating_sub(pace.looked));
        if let Some(progress) = self.progress {
            progress.advance(units);
        }
        pace.looked = pace.looked.saturating_add(units);
        if let Some(rate) = self.per_second {
            let due = Duration::try_from_secs_f64(pace.looked as f64 / f64::from(rate.get()))
                .ok()
                .and_then(|due| pace.began.checked_add(due));
            if let Some(due) = due {
                tokio::time::sleep_until(due).await;
            }
        }
    }

    /// Begins a pass over the keyspace: about `DBSIZE` keys, asked only
    /// when someone hears of the progress or a rate is set.
    pub(crate) async fn begin_scan<C: ConnectionLike + Send>(&self, conn: &mut C, what: &str) -> Result<Pace> {
        let keys: u64 = match (self.progress, self.per_second) {
            (None, None) => 0,
            _ => redis::cmd("DBSIZE").query_async(conn).await?,
        };
        Ok(self.begin(what, keys))
    }
}

/// Where a pass of a [`Walk`] is: when it began, how much it has done.
#[derive(Debug)]
pub struct Pace {
    began: tokio::time::Instant,
    looked: u64,
    total: u64,
}

/// One `SCAN` call: the next cursor and the keys (as Redis holds them).
/// Then the walk hears of it, and waits if its rate asks.
pub(crate) async fn scan<C: ConnectionLike + Send>(
    conn: &mut C,
    cursor: u64,
    pattern: &str,
    walk: &Walk<'_>,
    pace: &mut Pace,
) -> Result<(u64, Vec<Value>)> {
    let (next, keys): (u64, Vec<Value>) = redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(SCAN_COUNT)
        .query_async(conn)
        .await?;
    walk.step(pace, SCAN_COUNT).await;
    Ok((next, keys))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Heard(Mutex<Vec<(String, u64)>>);

    impl WalkProgress for Heard {
        fn pass(&self, what: &str, units: u64) {
            self.0.lock().unwrap().push((format!("pass {what}"), units));
        }
        fn advance(&self, units: u64) {
            self.0.lock().unwrap().push(("advance".into(), units));
        }
    }

    /// On tokio's paused clock: 1,000 units at 100 a second take 10 s, and
    /// the progress hears every step, counted up to the pass's total.
    #[tokio::test(start_paused = true)]
    async fn a_rate_spaces_the_steps_and_the_progress_hears_each() {
        let heard = Heard::default();
        let walk = Walk::new().progress(&heard).per_second(NonZeroU32::new(100));
        let began = tokio::time::Instant::now();
        let mut pace = walk.begin("index jobs:user:<user_id>", 1_000);
        for _ in 0..3 {
            walk.step(&mut pace, 500).await;
        }
        assert_eq!(began.elapsed(), Duration::from_secs(10));
        assert_eq!(
            *heard.0.lock().unwrap(),
            [
                ("pass index jobs:user:<user_id>".to_owned(), 1_000),
                ("advance".to_owned(), 500),
                ("advance".to_owned(), 500),
                ("advance".to_owned(), 0),
            ]
        );
        // Without a rate, no wait at all.
        let fast = Walk::new();
        let began = tokio::time::Instant::now();
        let mut pace = fast.begin("x", 1_000_000);
        fast.step(&mut pace, 1_000_000).await;
        assert_eq!(began.elapsed(), Duration::ZERO);
    }
}
