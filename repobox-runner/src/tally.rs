//! How this runner's runs began and ended: on the process's metrics (the
//! `metrics` facade, `/metrics`) at once, and on the queue's metrics in
//! Redis in batches: a job's end costs no round trip of its own for its count. The
//! runner's loop sends the tally at most every [`FLUSH_EVERY`], and once
//! more when it stops; a runner that is killed loses at most that much of
//! its counts (the metrics are best effort, the jobs' statuses are not).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use repobox_models::Job;
use repobox_orm::queue::Finished;
use repobox_orm::{Queue, Store};
use tokio::time::Instant;

/// How often the tally is sent while jobs end.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// How long the last count may take when the runner stops: a Redis that
/// hangs must not hold the stop up.
pub(crate) const LAST_FLUSH_WAIT: Duration = Duration::from_secs(5);

/// The counts not sent yet, shared by the runner's deliveries.
#[derive(Clone)]
pub(crate) struct Tally {
    ended: Arc<Mutex<Vec<Finished<'static>>>>,
    /// The queue's stream, the `queue` label of the process's metrics.
    queue: String,
}

impl Tally {
    /// An empty tally for `queue`.
    pub(crate) fn new(queue: &Queue) -> Self {
        Tally {
            ended: Arc::default(),
            queue: queue.stream().to_owned(),
        }
    }

    /// A run began: counted on the process's metrics
    /// (`repobox_jobs_started_total`), with how long the job waited since it
    /// was due (`repobox_job_queue_wait_seconds`: since its `run_at`, or its
    /// creation).
    pub(crate) fn started(&self, job: &Job) {
        metrics::counter!("repobox_jobs_started_total", "queue" => self.queue.clone()).increment(1);
        if let Some(started) = job.started_at {
            let due = job.run_at.unwrap_or(job.created_at).max(job.created_at);
            let waited = started.saturating_sub(due).max(0);
            metrics::histogram!("repobox_job_queue_wait_seconds", "queue" => self.queue.clone())
                .record(waited as f64 / 1000.0);
        }
    }

    /// A delivery went to the dead letters: counted on the process's
    /// metrics (`repobox_jobs_dead_lettered_total`; its run is counted
    /// `failed` by [`add`](Self::add)).
    pub(crate) fn dead_lettered(&self) {
        metrics::counter!("repobox_jobs_dead_lettered_total", "queue" => self.queue.clone()).increment(1);
    }

    /// Counts a delivery that ended `outcome` after its run took `took`: on
    /// the process's metrics now (`repobox_jobs_finished_total`,
    /// `repobox_job_duration_seconds`), on the queue's in Redis with the
    /// next flush.
    pub(crate) fn add(&self, outcome: &'static str, took: Duration) {
        let labels = [("queue", self.queue.clone()), ("outcome", outcome.to_owned())];
        metrics::counter!("repobox_jobs_finished_total", &labels).increment(1);
        metrics::histogram!("repobox_job_duration_seconds", &labels).record(took.as_secs_f64());
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
