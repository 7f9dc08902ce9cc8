//! [`Runner::run_until_empty`]: a drain mode for batch work and tests.

use std::time::Duration;

use repobox_models::{Job, JobStatus, Result, redis_now};
use repobox_orm::{Page, Queue, Store};

use super::Runner;
use super::levels::Levels;
use crate::{JobHandler, RunStats, RunnerControl};

impl<H: JobHandler> Runner<H> {
    /// Runs jobs like [`run`](Self::run) until there is nothing left to do
    /// now, then drains and returns: nothing waits on the stream (the
    /// group's lag is 0), nothing is delivered and unacknowledged (by any
    /// runner), no job is `retrying` or parked for its user's slot, and no
    /// delayed job is due. Jobs delayed to later are left for later. Looked
    /// at every `block` (at least 50 ms).
    pub async fn run_until_empty(self) -> Result<RunStats> {
        self.run_until_empty_with(RunnerControl::new()).await
    }

    /// [`run_until_empty`](Self::run_until_empty) under `control`, which
    /// can also drain or stop it earlier.
    pub async fn run_until_empty_with(self, control: RunnerControl) -> Result<RunStats> {
        let queue = self.queue.clone();
        let mut conn = self.store.clone();
        let mut tick = tokio::time::interval(self.config.block.max(Duration::from_millis(50)));
        let watch = control.clone();
        let run = self.run_with(control);
        // The look runs beside the runner, never instead of it: awaited in
        // a `select!` arm it would leave the runner unpolled, and a runner
        // stopped halfway through connecting holds the store's connect
        // until the look gives up.
        let look = async {
            loop {
                tick.tick().await;
                match is_empty(&mut conn, &queue).await {
                    Ok(true) => {
                        tracing::info!("the queue is empty; draining");
                        watch.drain();
                        return std::future::pending().await;
                    }
                    Ok(false) => {}
                    Err(e) => tracing::debug!(error = %e, "could not tell whether the queue is empty"),
                }
            }
        };
        tokio::select! {
            stats = run => stats,
            never = look => never,
        }
    }
}

/// Whether the queue has nothing to do now.
async fn is_empty(conn: &mut Store, queue: &Queue) -> Result<bool> {
    // Every priority level's stream.
    let (waiting, pending) = Levels::new(queue, 2).backlog(conn).await?;
    if waiting > 0 || pending > 0 {
        return Ok(false);
    }
    if Job::count_by_status(conn, JobStatus::Retrying).await? > 0 || queue.parked(conn).await? > 0 {
        return Ok(false);
    }
    let now = redis_now(conn).await?;
    let due = Job::due(conn, Page::oldest(1).scores(f64::NEG_INFINITY, now as f64)).await?;
    Ok(due.items.is_empty())
}
