//! [`Output`]: where a running job writes its lines, and how it learns that it
//! should stop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use repobox_models::{Job, Result};
use repobox_orm::Store;

/// Why a running job is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Someone cancelled the job (`repobox jobs cancel`): it ends `cancelled`.
    Cancelled,
    /// The runner is shutting down and its drain time is over: the job goes
    /// back to `queued`, its delivery pending for another runner.
    Shutdown,
}

/// Where a running job writes its output lines (`job:<id>:output`, 24 h TTL),
/// and its stop token: a handler that sees [`stop_reason`](Output::stop_reason)
/// (or whose [`cancelled`](Output::cancelled) resolves) should stop; the job
/// then ends `cancelled`, or goes back to `queued` at shutdown, whatever the
/// handler returns.
///
/// Its writes are fenced by the run's lease: once the lease may have passed
/// (by this process's clock: the runner could not renew it in time, or the
/// process was stopped), [`line`](Output::line) and [`lines`](Output::lines)
/// refuse with `Err(LeaseLost)` and write nothing, so a run that another took
/// over does not write into the job's output.
#[derive(Clone)]
pub struct Output {
    store: Store,
    job_id: String,
    run_id: String,
    stop: tokio::sync::watch::Receiver<Option<StopReason>>,
    held_until: Arc<Mutex<tokio::time::Instant>>,
    written: Arc<AtomicU64>,
}

impl Output {
    pub(crate) fn new(
        store: Store,
        job_id: String,
        run_id: String,
        stop: tokio::sync::watch::Receiver<Option<StopReason>>,
        held_until: Arc<Mutex<tokio::time::Instant>>,
    ) -> Self {
        Output {
            store,
            job_id,
            run_id,
            stop,
            held_until,
            written: Arc::default(),
        }
    }

    /// Whether the run still holds its lease, by this process's clock.
    fn holds_lease(&self) -> bool {
        tokio::time::Instant::now() < *self.held_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id of the job this output belongs to.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// Whether the job was asked to stop, for either [`StopReason`].
    pub fn is_cancelled(&self) -> bool {
        self.stop.borrow().is_some()
    }

    /// Why the job was asked to stop, if it was.
    pub fn stop_reason(&self) -> Option<StopReason> {
        *self.stop.borrow()
    }

    /// Resolves when the job is asked to stop (cancelled, or the runner's
    /// shutdown), with the reason.
    pub async fn cancelled(&self) -> StopReason {
        let mut stop = self.stop.clone();
        let reason = stop.wait_for(Option::is_some).await.ok().and_then(|r| *r);
        match reason {
            Some(reason) => reason,
            // The runner is gone: nothing will ask any more.
            None => std::future::pending().await,
        }
    }

    /// Appends one line; `Err(LeaseLost)` once the run may have lost its lease.
    pub async fn line(&self, line: impl AsRef<str>) -> Result<()> {
        self.lines(&[line.as_ref()]).await
    }

    /// Appends lines in one round trip; `Err(LeaseLost)` once the run may
    /// have lost its lease.
    pub async fn lines<S: AsRef<str>>(&self, lines: &[S]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        if !self.holds_lease() {
            return Err(repobox_models::Error::LeaseLost {
                key: Job::key_for(self.job_id.as_str())?,
            });
        }
        Job::append_output(&mut self.store.clone(), &self.job_id, lines).await?;
        let n = u64::try_from(lines.len()).unwrap_or(u64::MAX);
        self.written.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Reports how far the job is (`percent`, 0-100, capped) with an
    /// optional `message`: stored on the job (`progress`,
    /// `progress_message`) with a `progress` event, while this run holds
    /// the job; `Err(LeaseLost)` once it does not.
    pub async fn progress(&self, percent: u8, message: Option<&str>) -> Result<()> {
        if !self.holds_lease() {
            return Err(repobox_models::Error::LeaseLost {
                key: Job::key_for(self.job_id.as_str())?,
            });
        }
        Job::report_progress(&mut self.store.clone(), &self.job_id, &self.run_id, percent, message).await
    }

    /// How many lines this run wrote.
    pub fn lines_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}
