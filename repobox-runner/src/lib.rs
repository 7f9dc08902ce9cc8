//! The repobox job runner: takes jobs from `jobs:stream`, runs them with a
//! handler, streams their output, records their status, and only then
//! acknowledges.
//!
//! - `config`: [`RunnerConfig`] and [`RunStats`];
//! - `work`: one delivery's life.

#![warn(missing_docs)]

mod config;
mod work;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use repobox_models::{Job, Result, now_millis};
use repobox_orm::queue::{LogLimit, defaults};
use repobox_orm::{Queue, Store};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use self::config::{RunStats, RunnerConfig};
use self::work::{Done, Work};

static DELETED: LogLimit = LogLimit::warn("a pending job entry was deleted from the stream before it was acknowledged");

/// What a handler says about a job it ran.
pub type HandlerResult = std::result::Result<i32, String>;

/// Runs one job. `Ok(exit code)` ends it (0: succeeded, other: failed);
/// `Err(reason)` is a failure to run it, retried until the queue's maximum of
/// deliveries and then dead-lettered.
pub trait JobHandler: Send + Sync + 'static {
    /// Runs `job`, writing its output to `output`.
    fn run(&self, job: Job, output: Output) -> impl Future<Output = HandlerResult> + Send;
}

/// Where a running job writes its output lines (`job:<id>:output`, 24 h TTL),
/// and its cancellation token: a handler that sees
/// [`is_cancelled`](Output::is_cancelled) should stop; the job then ends
/// `cancelled` whatever it returns.
///
/// Its writes are fenced by the run's lease: once the lease may have passed
/// (by this process's clock: the runner could not renew it in time, or the
/// process was stopped), [`line`](Output::line) refuses with
/// `Err(LeaseLost)` and writes nothing, so a run that another took over does
/// not write into the job's output.
#[derive(Clone)]
pub struct Output {
    store: Store,
    job_id: String,
    cancel: tokio::sync::watch::Receiver<bool>,
    held_until: Arc<Mutex<tokio::time::Instant>>,
}

impl Output {
    pub(crate) fn new(
        store: Store,
        job_id: String,
        cancel: tokio::sync::watch::Receiver<bool>,
        held_until: Arc<Mutex<tokio::time::Instant>>,
    ) -> Self {
        Output {
            store,
            job_id,
            cancel,
            held_until,
        }
    }

    /// Whether the run still holds its lease, by this process's clock.
    fn holds_lease(&self) -> bool {
        tokio::time::Instant::now() < *self.held_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether someone asked to cancel the job (`repobox jobs cancel`).
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Resolves when someone asks to cancel the job.
    pub async fn cancelled(&self) {
        let mut cancel = self.cancel.clone();
        // An error means the runner is gone: nothing will cancel any more.
        if cancel.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Appends one line; `Err(LeaseLost)` once the run may have lost its lease.
    pub async fn line(&self, line: impl AsRef<str>) -> Result<()> {
        if !self.holds_lease() {
            return Err(repobox_models::Error::LeaseLost {
                key: Job::key_for(self.job_id.as_str())?,
            });
        }
        Job::append_output(&mut self.store.clone(), &self.job_id, &[line.as_ref()])
            .await
            .map(drop)
    }
}

/// Takes jobs from the queue and runs them; see [`Runner::run`].
pub struct Runner<H> {
    store: Store,
    handler: Arc<H>,
    config: RunnerConfig,
    queue: Queue,
}

impl<H: JobHandler> Runner<H> {
    /// A runner over `store` with `handler`.
    pub fn new(store: Store, handler: H, config: RunnerConfig) -> Self {
        let queue = Queue::new(config.stream.clone(), config.group.clone()).max_deliveries(config.max_deliveries);
        Runner {
            store,
            handler: Arc::new(handler),
            config,
            queue,
        }
    }

    /// The queue the runner consumes.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Runs jobs until `shutdown` completes, then lets running jobs finish
    /// (up to the shutdown grace) and releases the rest back to `queued`;
    /// their deliveries stay pending for another runner to claim.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<RunStats> {
        let mut conn = self.store.clone();
        tokio::pin!(shutdown);
        let mut failures = 0u32;
        // The group first; a Redis that is down or loading is waited for.
        loop {
            match self.queue.ensure_group(&mut conn).await {
                Ok(()) => break,
                Err(e) if is_fatal(&e) => return Err(e.into()),
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, attempt = failures, "cannot set up the queue yet; retrying");
                    if self.pause(failures, &mut shutdown).await {
                        return Ok(RunStats::default());
                    }
                }
            }
        }
        let mut reader = self.store.dedicated();
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        let running: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut stats = RunStats::default();
        let mut next_claim = tokio::time::Instant::now();
        let mut next_housekeeping = tokio::time::Instant::now();
        let consumer = self.config.consumer.clone();
        tracing::info!(consumer = %consumer, concurrency = self.config.concurrency, "runner started");

        let mut stopping = false;
        while !stopping {
            while let Some(done) = tasks.try_join_next() {
                record(&mut stats, done);
            }
            LogLimit::report_held_back();
            if tokio::time::Instant::now() >= next_housekeeping {
                next_housekeeping = tokio::time::Instant::now() + self.config.housekeeping;
                self.housekeeping(&mut conn).await;
            }
            let mut batch = Vec::new();
            if tokio::time::Instant::now() >= next_claim {
                next_claim = tokio::time::Instant::now() + self.config.claim_interval;
                // Jobs whose writer died between the job and its stream entry
                // (ordered writes, on a cluster) are enqueued here.
                match self.queue.sweep_outbox(&mut conn, self.config.min_idle).await {
                    Ok(swept) if swept.appended > 0 => {
                        tracing::info!(appended = swept.appended, "enqueued jobs a writer left in the outbox")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "could not sweep the outbox"),
                }
                let claimed = match self
                    .queue
                    .claim_stalled(&mut conn, &consumer, self.config.min_idle, defaults::CLAIM_BATCH)
                    .await
                {
                    Ok(claimed) => {
                        failures = 0;
                        claimed
                    }
                    Err(e) => {
                        failures += 1;
                        if self.ride_out(e, failures, &mut conn, &mut shutdown).await? {
                            stopping = true;
                        }
                        continue;
                    }
                };
                for id in &claimed.deleted {
                    if let Some(held_back) = DELETED.admit() {
                        tracing::warn!(entry = %id, "a pending job entry was deleted from the stream before it was acknowledged{held_back}");
                    }
                }
                if !claimed.deliveries.is_empty() {
                    tracing::info!(count = claimed.deliveries.len(), "took over stalled jobs");
                }
                batch.extend(claimed.deliveries);
            }
            let free = permits.available_permits().saturating_sub(batch.len());
            if free == 0 && batch.is_empty() {
                tokio::select! {
                    _ = &mut shutdown => stopping = true,
                    Some(done) = tasks.join_next() => record(&mut stats, done),
                }
                continue;
            }
            if free > 0 {
                // A read in flight is never abandoned: what it returns is run.
                let read = self.queue.read(&mut reader, &consumer, free, Some(self.config.block));
                tokio::pin!(read);
                let delivered = tokio::select! {
                    r = &mut read => r,
                    _ = &mut shutdown => {
                        stopping = true;
                        read.await
                    }
                };
                match delivered {
                    Ok(d) => {
                        failures = 0;
                        batch.extend(d);
                    }
                    Err(e) => {
                        failures += 1;
                        if self.ride_out(e, failures, &mut conn, &mut shutdown).await? {
                            stopping = true;
                        }
                    }
                }
            }
            for delivery in batch {
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore is never closed");
                let work = Work {
                    store: self.store.clone(),
                    queue: self.queue.clone(),
                    handler: self.handler.clone(),
                    consumer: consumer.clone(),
                    heartbeat: self.config.min_idle.min(self.config.lease_duration()) / defaults::HEARTBEAT_DIVISOR,
                    lease: self.config.lease_duration(),
                    running: running.clone(),
                };
                tasks.spawn(async move {
                    let _permit = permit;
                    work.process(delivery).await
                });
            }
        }

        tracing::info!(consumer = %consumer, running = tasks.len(), "runner stopping");
        let deadline = tokio::time::Instant::now() + self.config.shutdown_grace;
        while !tasks.is_empty() {
            match tokio::time::timeout_at(deadline, tasks.join_next()).await {
                Ok(Some(done)) => record(&mut stats, done),
                Ok(None) => break,
                Err(_) => {
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                }
            }
        }
        let left: Vec<(String, String)> = running.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
        for (job_id, run_id) in left {
            let released = Job::release(
                &mut conn,
                &job_id,
                &run_id,
                now_millis(),
                "released: the runner shut down",
            )
            .await;
            match released {
                Ok(_) => stats.released += 1,
                Err(e) => tracing::warn!(job = %job_id, error = %e, "could not release a job at shutdown"),
            }
        }
        LogLimit::report_all_held_back();
        tracing::info!(consumer = %consumer, ?stats, "runner stopped");
        Ok(stats)
    }
}

/// Whether an error means the runner cannot go on: a closed store, refused
/// credentials or a bad argument. Everything else (refused or reset
/// connections, timeouts, `LOADING`, `READONLY`/`MASTERDOWN` during a
/// failover, a deleted stream) is ridden out.
fn is_fatal(e: &repobox_orm::Error) -> bool {
    matches!(
        e,
        repobox_orm::Error::Closed | repobox_orm::Error::InvalidArgument { .. }
    ) || e.is_auth_failure()
}

impl<H: JobHandler> Runner<H> {
    /// Trims acknowledged entries older than the retention and removes idle
    /// consumers; a failure is logged and tried again next time.
    async fn housekeeping(&self, conn: &mut Store) {
        match self.queue.trim_older_than(conn, self.config.retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "trimmed the stream"),
            Err(e) => tracing::warn!(error = %e, "could not trim the stream"),
        }
        match self.queue.remove_idle_consumers(conn, self.config.consumer_idle).await {
            Ok(gone) if !gone.is_empty() => tracing::info!(consumers = ?gone, "removed idle consumers"),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "could not remove idle consumers"),
        }
    }

    /// Waits the store's backoff for `failures`; `true` if shutdown came first.
    async fn pause(&self, failures: u32, shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
        let delay = self.store.config().backoff_policy().delay(failures);
        tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            _ = shutdown.as_mut() => true,
        }
    }

    /// Logs a failed queue call and waits before the next; re-creates the
    /// group when the stream was deleted. `Ok(true)` if shutdown came while
    /// waiting; `Err` only for a fatal error.
    async fn ride_out(
        &self,
        e: repobox_orm::Error,
        failures: u32,
        conn: &mut Store,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<bool> {
        if is_fatal(&e) {
            return Err(e.into());
        }
        if e.is_missing_group() {
            tracing::warn!(stream = %self.queue.stream(), "the stream or its group is gone; creating it again");
            if let Err(e) = self.queue.ensure_group(conn).await {
                tracing::warn!(error = %e, "could not create the group yet");
            }
        } else {
            tracing::warn!(error = %e, attempt = failures, "a queue call failed; retrying");
        }
        Ok(self.pause(failures, shutdown).await)
    }
}

fn record(stats: &mut RunStats, done: std::result::Result<Done, tokio::task::JoinError>) {
    match done {
        Ok(Done::Succeeded) => stats.succeeded += 1,
        Ok(Done::Failed) => stats.failed += 1,
        Ok(Done::Retried) => stats.retried += 1,
        Ok(Done::DeadLettered) => {
            stats.dead_lettered += 1;
            stats.failed += 1;
        }
        Ok(Done::Skipped) => stats.skipped += 1,
        Ok(Done::Cancelled) => stats.cancelled += 1,
        Ok(Done::LeaseLost) => stats.lease_lost += 1,
        Err(e) if e.is_cancelled() => {}
        Err(e) => tracing::error!(error = %e, "a job task panicked"),
    }
}
