//! The repobox job runner: takes jobs from `jobs:stream`, runs them with a
//! handler, streams their output, records their status, and only then
//! acknowledges.
//!
//! - `config`: [`RunnerConfig`] and [`RunStats`];
//! - `work`: one delivery's life.

#![warn(missing_docs)]

mod config;
mod work;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use repobox_models::{JOBS_GROUP, JOBS_STREAM, Job, JobOutcome, JobStatus, Result, now_millis};
use repobox_orm::queue::defaults;
use repobox_orm::{Queue, Store};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use self::config::{RunStats, RunnerConfig};
use self::work::{Done, Work};

/// What a handler says about a job it ran.
pub type HandlerResult = std::result::Result<i32, String>;

/// Runs one job. `Ok(exit code)` ends it (0: succeeded, other: failed);
/// `Err(reason)` is a failure to run it, retried until the queue's maximum of
/// deliveries and then dead-lettered.
pub trait JobHandler: Send + Sync + 'static {
    /// Runs `job`, writing its output to `output`.
    fn run(&self, job: Job, output: Output) -> impl Future<Output = HandlerResult> + Send;
}

/// Where a running job writes its output lines (`job:<id>:output`, 24 h TTL).
#[derive(Clone)]
pub struct Output {
    store: Store,
    job_id: String,
}

impl Output {
    pub(crate) fn new(store: Store, job_id: String) -> Self {
        Output { store, job_id }
    }

    /// Appends one line.
    pub async fn line(&self, line: impl AsRef<str>) -> Result<()> {
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
        let queue = Queue::new(JOBS_STREAM, JOBS_GROUP).max_deliveries(config.max_deliveries);
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
        self.queue.ensure_group(&mut conn).await?;
        let mut reader = self.store.dedicated();
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        let running: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut tasks: JoinSet<Result<Done>> = JoinSet::new();
        let mut stats = RunStats::default();
        let mut next_claim = tokio::time::Instant::now();
        tokio::pin!(shutdown);
        let consumer = self.config.consumer.clone();
        tracing::info!(consumer = %consumer, concurrency = self.config.concurrency, "runner started");

        let mut stopping = false;
        while !stopping {
            while let Some(done) = tasks.try_join_next() {
                record(&mut stats, done);
            }
            let mut batch = Vec::new();
            if tokio::time::Instant::now() >= next_claim {
                next_claim = tokio::time::Instant::now() + self.config.claim_interval;
                let claimed = self
                    .queue
                    .claim_stalled(&mut conn, &consumer, self.config.min_idle, defaults::CLAIM_BATCH)
                    .await?;
                for id in &claimed.deleted {
                    tracing::warn!(entry = %id, "a pending job entry was deleted from the stream before it was acknowledged");
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
                    Ok(d) => batch.extend(d),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the queue failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
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
                    heartbeat: self.config.min_idle / defaults::HEARTBEAT_DIVISOR,
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
        let left: Vec<String> = running.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
        for job_id in left {
            let released = Job::update_status(
                &mut conn,
                &job_id,
                JobStatus::Queued,
                now_millis(),
                JobOutcome {
                    exit_code: None,
                    error: Some("released: the runner shut down".into()),
                },
            )
            .await;
            if let Err(e) = released {
                tracing::warn!(job = %job_id, error = %e, "could not release a job at shutdown");
            }
            stats.released += 1;
        }
        tracing::info!(consumer = %consumer, ?stats, "runner stopped");
        Ok(stats)
    }
}

fn record(stats: &mut RunStats, done: std::result::Result<Result<Done>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(Done::Succeeded)) => stats.succeeded += 1,
        Ok(Ok(Done::Failed)) => stats.failed += 1,
        Ok(Ok(Done::Retried)) => stats.retried += 1,
        Ok(Ok(Done::DeadLettered)) => {
            stats.dead_lettered += 1;
            stats.failed += 1;
        }
        Ok(Ok(Done::Skipped)) => stats.skipped += 1,
        // The delivery stays pending and is claimed again later.
        Ok(Err(e)) => tracing::warn!(error = %e, "a job's bookkeeping failed; it will be delivered again"),
        Err(e) if e.is_cancelled() => {}
        Err(e) => tracing::error!(error = %e, "a job task panicked"),
    }
}
