//! What a runner does besides reading deliveries, on its own schedule:
//! queueing delayed and retrying jobs that are due and parked jobs whose
//! users have free slots, watching whether the queue is paused, and asking
//! the queue's rate limit for starts.

use std::time::Duration;

use repobox_models::Job;
use repobox_orm::queue::RateLimit;
use repobox_orm::{Queue, Store};
use tokio::time::Instant;

use crate::work::parked_entry;

/// How often a runner looks whether the queue was paused or resumed.
const PAUSE_CHECK: Duration = Duration::from_millis(250);

/// How many users with parked jobs one sweep looks at.
const UNPARK_USERS: usize = 100;

/// How many due jobs one promotion queues at most.
const PROMOTE_BATCH: usize = 100;

pub(crate) struct Chores {
    promote_every: Duration,
    next_promote: Instant,
    next_pause_check: Instant,
    paused: bool,
    /// Starts the rate limit granted for the read in hand.
    granted: Vec<String>,
}

/// What a runner may start now.
pub(crate) enum Starts {
    /// This many.
    Go(usize),
    /// None: the rate limit is reached for this long.
    Wait(Duration),
}

impl Chores {
    pub(crate) fn new(promote_every: Duration) -> Self {
        Chores {
            promote_every,
            next_promote: Instant::now(),
            next_pause_check: Instant::now(),
            paused: false,
            granted: Vec::new(),
        }
    }

    /// Queues the delayed and retrying jobs that are due (on the queue's
    /// stream), when their time to be looked for has come. A failure is
    /// logged and tried again next time.
    pub(crate) async fn promote(&mut self, conn: &mut Store, queue: &Queue, per_user: Option<u32>) {
        if Instant::now() < self.next_promote {
            return;
        }
        self.next_promote = Instant::now() + self.promote_every;
        // Parked jobs whose users have free slots (their runner died, or
        // gave its slot back without putting them back) go back too; a
        // runner without a per-user limit puts every parked job back.
        let limit = per_user.unwrap_or(u32::MAX);
        let store = conn.clone();
        let entry = |user: &str, job: &str| parked_entry(&store, queue, user, job);
        match queue.unpark_all(conn, limit, UNPARK_USERS, entry).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "parked jobs queued again: their users have free slots"),
            Err(e) => tracing::debug!(error = %e, "could not look for parked jobs"),
        }
        loop {
            match Job::promote_due(conn, queue.stream(), PROMOTE_BATCH).await {
                Ok(done) => {
                    for (job, entry) in &done.jobs {
                        tracing::info!(job = %job, entry = %entry, "job due: queued");
                    }
                    // A full batch queued: there may be more due right now.
                    // (Members another writer left that cannot be queued
                    // count as nothing, so they cannot keep this looping.)
                    if done.jobs.len() < PROMOTE_BATCH {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "could not queue due jobs");
                    return;
                }
            }
        }
    }

    /// Whether the queue is paused, as last seen (looked up at most every
    /// [`PAUSE_CHECK`]); a change is said once. A failed lookup keeps what
    /// was last seen.
    pub(crate) async fn paused(&mut self, conn: &mut Store, queue: &Queue) -> bool {
        if Instant::now() < self.next_pause_check {
            return self.paused;
        }
        self.next_pause_check = Instant::now() + PAUSE_CHECK;
        match queue.paused_since(conn).await {
            Ok(since) => {
                let paused = since.is_some();
                if paused != self.paused {
                    if paused {
                        tracing::info!(key = %queue.paused_key(), "queue paused: taking no new jobs; running ones finish");
                    } else {
                        tracing::info!("queue resumed: taking jobs again");
                    }
                }
                self.paused = paused;
            }
            Err(e) => tracing::debug!(error = %e, "could not look whether the queue is paused"),
        }
        self.paused
    }

    /// How many of `want` deliveries the runner may read now: all of them
    /// without a rate limit; else what the queue's limiter grants (kept, to
    /// give back with [`unused`](Self::unused) what the read does not use).
    pub(crate) async fn starts(
        &mut self,
        conn: &mut Store,
        queue: &Queue,
        consumer: &str,
        limit: Option<RateLimit>,
        want: usize,
        block: Duration,
    ) -> repobox_orm::Result<Starts> {
        let Some(limit) = limit else {
            return Ok(Starts::Go(want));
        };
        let grant = queue.acquire_starts(conn, consumer, limit, want, block).await?;
        if grant.starts.is_empty() {
            return Ok(Starts::Wait(grant.wait));
        }
        let n = grant.starts.len();
        self.granted = grant.starts;
        Ok(Starts::Go(n))
    }

    /// Settles the granted starts once the read returned: the first `used`
    /// are scored now, the rest given back. A failure only leaves them
    /// counted, as late as they might have started, until the window passes.
    pub(crate) async fn settle(&mut self, conn: &mut Store, queue: &Queue, used: usize) {
        let mut granted = std::mem::take(&mut self.granted);
        let unused = granted.split_off(used.min(granted.len()));
        if let Err(e) = queue.settle_starts(conn, &granted, &unused).await {
            tracing::debug!(error = %e, "could not settle the rate limit's starts");
        }
    }

    /// How long a paused runner waits before it looks again.
    pub(crate) fn pause_wait(&self) -> Duration {
        PAUSE_CHECK
    }
}
