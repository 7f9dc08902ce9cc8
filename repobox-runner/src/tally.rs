//! How this runner's deliveries ended, counted on the queue's metrics in
//! batches: a job's end costs no round trip of its own for its count. The
//! runner's loop sends the tally at most every [`FLUSH_EVERY`], and once
//! more when it stops; a runner that is killed loses at most that much of
//! its counts (the metrics are best effort, the jobs' statuses are not).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use repobox_orm::queue::Finished;
use repobox_orm::{Queue, Store};
use tokio::time::Instant;

/// How often the tally is sent while jobs end.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// How long the last count may take when the runner stops: a Redis that
/// hangs must not hold the stop up.
pub(crate) const LAST_FLUSH_WAIT: Duration = Duration::from_secs(5);

/// The counts not sent yet, shared by the runner's deliveries.
#[derive(Clone, Default)]
pub(crate) struct Tally {
    ended: Arc<Mutex<Vec<Finished<'static>>>>,
}

impl Tally {
    /// Counts a delivery that ended `outcome` after its run took `took`.
    pub(crate) fn add(&self, outcome: &'static str, took: Duration) {
        let finished = Finished {
            outcome,
            took,
            at_ms: repobox_models::now_millis(),
        };
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).push(finished);
    }

    /// Sends the counts when `next` has come (and sets the next time).
    pub(crate) async fn flush_due(&self, conn: &mut Store, queue: &Queue, next: &mut Instant) {
        if Instant::now() < *next {
            return;
        }
        *next = Instant::now() + FLUSH_EVERY;
        self.flush(conn, queue).await;
    }

    /// Sends the counts now; a failure is logged, and those counts are lost.
    pub(crate) async fn flush(&self, conn: &mut Store, queue: &Queue) {
        let ended = std::mem::take(&mut *self.ended.lock().unwrap_or_else(|e| e.into_inner()));
        if ended.is_empty() {
            return;
        }
        if let Err(e) = queue.count_finished(conn, &ended).await {
            tracing::debug!(error = %e, jobs = ended.len(), "could not count finished jobs on the queue's metrics");
        }
    }
}
