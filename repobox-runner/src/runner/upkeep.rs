//! The runner's upkeep: housekeeping, the Redis probe, riding out errors,
//! and the small helpers of its loop.

use std::future::Future;

use repobox_models::{Job, JobStatus, Result};
use repobox_orm::Store;

use super::levels::Levels;
use super::{PURGE_BATCH, Runner};
use crate::link::Link;
use crate::work::Done;
use crate::{JobHandler, Phase, RunStats, RunnerControl};

/// Whether an error means the runner cannot go on: a closed store, refused
/// credentials or a bad argument. Everything else (refused or reset
/// connections, timeouts, `LOADING`, `READONLY`/`MASTERDOWN` during a
/// failover, a deleted stream) is ridden out.
pub(super) fn is_fatal(e: &repobox_orm::Error) -> bool {
    matches!(
        e,
        repobox_orm::Error::Closed | repobox_orm::Error::InvalidArgument { .. }
    ) || e.is_auth_failure()
}

impl<H: JobHandler> Runner<H> {
    /// Trims acknowledged entries older than the retention and removes idle
    /// consumers; a failure is logged and tried again next time.
    pub(super) async fn housekeeping(&self, conn: &mut Store, levels: &Levels) {
        for q in levels.all() {
            match q.trim_older_than(conn, self.config.retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, stream = %q.stream(), "trimmed the stream"),
                Err(e) => tracing::debug!(error = %e, "could not trim the stream"),
            }
            match q.remove_idle_consumers(conn, self.config.consumer_idle).await {
                Ok(gone) if !gone.is_empty() => tracing::info!(consumers = ?gone, "removed idle consumers"),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "could not remove idle consumers"),
            }
        }
        match repobox_models::JobEvent::trim(conn).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "trimmed jobs:events"),
            Err(e) => tracing::debug!(error = %e, "could not trim jobs:events"),
        }
        let now = repobox_models::now_millis();
        if let Err(e) = self.queue.trim_metrics(conn, &repobox_orm::queue::OUTCOMES, now).await {
            tracing::debug!(error = %e, "could not trim the queue's metrics");
        }
        let kept = [
            (JobStatus::Succeeded, self.config.keep_finished),
            (JobStatus::Cancelled, self.config.keep_finished),
            (JobStatus::Failed, self.config.keep_failed),
        ];
        for (status, keep) in kept {
            let Some(keep) = keep else { continue };
            let cutoff =
                repobox_models::now_millis().saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
            match Job::purge(conn, status, cutoff, PURGE_BATCH, false).await {
                Ok(p) if p.removed > 0 => {
                    tracing::info!(%status, removed = p.removed, "removed finished jobs past their retention")
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "could not remove finished jobs"),
            }
        }
    }

    /// A `PING`, for the [`Link`] to say whether Redis is there.
    pub(super) async fn probe(&self, conn: &mut Store, link: &mut Link) {
        let pong: repobox_orm::Result<()> = repobox_orm::redis::cmd("PING")
            .query_async(conn)
            .await
            .map_err(Into::into);
        match pong {
            Ok(()) => link.up(false),
            Err(e) => link.down(&e),
        }
    }

    /// Waits the store's backoff for `failures`; `true` if draining began first.
    pub(super) async fn pause(&self, failures: u32, control: &RunnerControl) -> bool {
        let delay = self.store.config().backoff_policy().delay(failures);
        tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            _ = control.reached(Phase::Draining) => true,
        }
    }

    /// Waits before the next queue call (the [`Link`] said what failed);
    /// re-creates the group when the stream was deleted. `Ok(true)` if
    /// draining began while waiting; `Err` only for a fatal error.
    pub(super) async fn ride_out(
        &self,
        e: repobox_orm::Error,
        failures: u32,
        conn: &mut Store,
        control: &RunnerControl,
        levels: &Levels,
    ) -> Result<bool> {
        if is_fatal(&e) {
            return Err(e.into());
        }
        if e.is_missing_group()
            && let Err(e) = levels.ensure_groups(conn).await
        {
            tracing::warn!(error = %e, "could not create the group yet");
        }
        Ok(self.pause(failures, control).await)
    }
}

/// `future`'s output, or `None` (and `future` abandoned) once the runner drains.
pub(super) async fn or_drain<T>(control: &RunnerControl, future: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        out = future => Some(out),
        _ = control.reached(Phase::Draining) => None,
    }
}

pub(super) fn record(stats: &mut RunStats, done: std::result::Result<RunStats, tokio::task::JoinError>) {
    match done {
        Ok(done) => {
            let RunStats {
                succeeded,
                failed,
                retried,
                dead_lettered,
                skipped,
                released,
                unreleased,
                cancelled,
                lease_lost,
                parked,
            } = done;
            stats.succeeded += succeeded;
            stats.failed += failed;
            stats.retried += retried;
            stats.dead_lettered += dead_lettered;
            stats.skipped += skipped;
            stats.released += released;
            stats.unreleased += unreleased;
            stats.cancelled += cancelled;
            stats.lease_lost += lease_lost;
            stats.parked += parked;
        }
        Err(e) if e.is_cancelled() => {}
        Err(e) => tracing::error!(error = %e, "a job task panicked"),
    }
}

/// Counts one delivery's end in `stats`.
pub(crate) fn count(stats: &mut RunStats, done: Done) {
    match done {
        Done::Succeeded => stats.succeeded += 1,
        Done::Failed => stats.failed += 1,
        Done::Retried => stats.retried += 1,
        Done::DeadLettered => {
            stats.dead_lettered += 1;
            stats.failed += 1;
        }
        Done::Skipped => stats.skipped += 1,
        Done::Cancelled => stats.cancelled += 1,
        Done::LeaseLost => stats.lease_lost += 1,
        Done::Released => stats.released += 1,
        Done::Unreleased => stats.unreleased += 1,
        Done::Parked => stats.parked += 1,
    }
}
