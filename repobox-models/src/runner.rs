//! The job runner: takes jobs from `jobs:stream`, runs them with a handler,
//! streams their output, records their status, and only then acknowledges.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use repobox_orm::prelude::*;
use repobox_orm::{Delivery, Queue};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::job::{JOBS_GROUP, JOBS_STREAM, Job, JobOutcome, JobStatus};
use crate::now_millis;

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
    /// Appends one line.
    pub async fn line(&self, line: impl AsRef<str>) -> Result<()> {
        Job::append_output(&mut self.store.clone(), &self.job_id, &[line.as_ref()])
            .await
            .map(drop)
    }
}

/// How a [`Runner`] works.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    consumer: String,
    concurrency: usize,
    block: Duration,
    claim_interval: Duration,
    min_idle: Duration,
    max_deliveries: u64,
    shutdown_grace: Duration,
}

impl RunnerConfig {
    /// A runner named `consumer` in the `runners` group: 4 jobs at a time,
    /// stalled jobs (idle 30 s) claimed every 5 s, 5 deliveries at most,
    /// 10 s for running jobs to finish at shutdown.
    pub fn new(consumer: impl Into<String>) -> Self {
        RunnerConfig {
            consumer: consumer.into(),
            concurrency: 4,
            block: Duration::from_secs(1),
            claim_interval: Duration::from_secs(5),
            min_idle: Duration::from_secs(30),
            max_deliveries: 5,
            shutdown_grace: Duration::from_secs(10),
        }
    }

    /// How many jobs run at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// How long one read waits for new jobs.
    pub fn block(mut self, d: Duration) -> Self {
        self.block = d;
        self
    }

    /// How often to take over jobs of runners that died.
    pub fn claim_interval(mut self, d: Duration) -> Self {
        self.claim_interval = d;
        self
    }

    /// How long a delivery must be idle before another runner takes it over.
    /// A running job's delivery is kept fresh, however long the job takes.
    pub fn min_idle(mut self, d: Duration) -> Self {
        self.min_idle = d;
        self
    }

    /// Deliveries before a job is dead-lettered.
    pub fn max_deliveries(mut self, n: u64) -> Self {
        self.max_deliveries = n.max(1);
        self
    }

    /// How long running jobs get to finish at shutdown before they are released.
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.shutdown_grace = d;
        self
    }

    /// The consumer name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }
}

/// What a runner did before it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Jobs that ended succeeded.
    pub succeeded: u64,
    /// Jobs that ended failed (non-zero exit, or dead-lettered).
    pub failed: u64,
    /// Failed runs left for another delivery.
    pub retried: u64,
    /// Deliveries moved to the dead-letter stream.
    pub dead_lettered: u64,
    /// Deliveries acknowledged without a run (job deleted or already over).
    pub skipped: u64,
    /// Jobs still running at shutdown, put back to queued for another runner.
    pub released: u64,
}

enum Done {
    Succeeded,
    Failed,
    Retried,
    DeadLettered,
    Skipped,
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
                    .claim_stalled(&mut conn, &consumer, self.config.min_idle, 100)
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
                    heartbeat: self.config.min_idle / 3,
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

struct Work<H> {
    store: Store,
    queue: Queue,
    handler: Arc<H>,
    consumer: String,
    heartbeat: Duration,
    running: Arc<Mutex<HashSet<String>>>,
}

impl<H: JobHandler> Work<H> {
    async fn process(&self, delivery: Delivery) -> Result<Done> {
        let mut conn = self.store.clone();
        let Some(job_id) = delivery.field("job_id").map(str::to_owned) else {
            self.queue
                .dead_letter(&mut conn, &delivery, &self.consumer, "entry has no job_id")
                .await?;
            return Ok(Done::DeadLettered);
        };
        if self.queue.is_exhausted(&delivery) {
            let reason = format!("delivered {} times without finishing", delivery.deliveries);
            return self.give_up(&job_id, &delivery, &reason).await;
        }
        let Some(job) = Job::get(&mut conn, job_id.as_str()).await? else {
            tracing::warn!(job = %job_id, "job is gone; acknowledging its entry");
            self.queue.ack(&mut conn, &[&delivery.id]).await?;
            return Ok(Done::Skipped);
        };
        if job.status.is_final() {
            // A duplicate delivery of a job that already ended.
            self.queue.ack(&mut conn, &[&delivery.id]).await?;
            return Ok(Done::Skipped);
        }
        let job = match Job::update_status(
            &mut conn,
            &job_id,
            JobStatus::Running,
            now_millis(),
            JobOutcome::default(),
        )
        .await
        {
            Ok(job) => job,
            Err(Error::InvalidTransition { .. }) => {
                self.queue.ack(&mut conn, &[&delivery.id]).await?;
                return Ok(Done::Skipped);
            }
            Err(e) => return Err(e),
        };
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job_id.clone());
        let started = job.clone();
        let result = self.run_handler(job, &delivery).await;
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&job_id);
        let now = now_millis();
        match result {
            Ok(code) => {
                let (status, done) = if code == 0 {
                    (JobStatus::Succeeded, Done::Succeeded)
                } else {
                    (JobStatus::Failed, Done::Failed)
                };
                let outcome = JobOutcome {
                    exit_code: Some(code),
                    error: None,
                };
                Job::update_status_from(&mut conn, started, status, now, outcome).await?;
                self.queue.ack(&mut conn, &[&delivery.id]).await?;
                Ok(done)
            }
            Err(reason) if delivery.deliveries >= self.queue.max_deliveries_value() => {
                self.give_up(&job_id, &delivery, &reason).await
            }
            Err(reason) => {
                tracing::warn!(job = %job_id, delivery = delivery.deliveries, %reason, "job failed; it will be delivered again");
                let outcome = JobOutcome {
                    exit_code: None,
                    error: Some(reason),
                };
                Job::update_status_from(&mut conn, started, JobStatus::Queued, now, outcome).await?;
                Ok(Done::Retried)
            }
        }
    }

    /// Runs the handler in a task of its own (a panic is a failure, not a
    /// crash) while keeping the delivery fresh so no other runner takes it.
    async fn run_handler(&self, job: Job, delivery: &Delivery) -> HandlerResult {
        let output = Output {
            store: self.store.clone(),
            job_id: job.id.clone(),
        };
        let handler = self.handler.clone();
        let mut run = AbortOnDrop(tokio::spawn(async move { handler.run(job, output).await }));
        let mut conn = self.store.clone();
        let mut beat = tokio::time::interval(self.heartbeat.max(Duration::from_millis(10)));
        beat.tick().await;
        loop {
            tokio::select! {
                joined = &mut run.0 => {
                    return match joined {
                        Ok(result) => result,
                        Err(e) if e.is_panic() => Err("the handler panicked".into()),
                        Err(e) => Err(format!("the handler was cancelled: {e}")),
                    };
                }
                _ = beat.tick() => {
                    if let Err(e) = self.queue.touch(&mut conn, &self.consumer, &[&delivery.id]).await {
                        tracing::warn!(error = %e, "could not keep a running job's delivery fresh");
                    }
                }
            }
        }
    }

    /// Marks the job failed and moves its delivery to the dead letters.
    async fn give_up(&self, job_id: &str, delivery: &Delivery, reason: &str) -> Result<Done> {
        let mut conn = self.store.clone();
        let outcome = JobOutcome {
            exit_code: None,
            error: Some(reason.to_owned()),
        };
        match Job::update_status(&mut conn, job_id, JobStatus::Failed, now_millis(), outcome).await {
            Ok(_) | Err(Error::NotFound { .. } | Error::InvalidTransition { .. }) => {}
            Err(e) => return Err(e),
        }
        tracing::warn!(job = %job_id, deliveries = delivery.deliveries, %reason, "dead-lettering a job");
        self.queue
            .dead_letter(&mut conn, delivery, &self.consumer, reason)
            .await?;
        Ok(Done::DeadLettered)
    }
}

/// A handler task that dies with the work that spawned it (a runner that is
/// aborted or shut down leaves no job running behind its back).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
