//! [`Runner`]: takes deliveries from the stream, hands each to a [`Work`], and
//! drains, stops and releases at shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use repobox_models::{JobStart, Result};
use repobox_orm::queue::{LogLimit, defaults};
use repobox_orm::{Queue, Store};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

mod levels;
mod spawn;
mod until_empty;
pub(crate) mod upkeep;

pub(crate) use self::levels::Levels;

use self::upkeep::{is_fatal, or_drain, record};
use crate::cancels::{self, Cancels};
use crate::chores::{Chores, Starts};
use crate::link::Link;
use crate::tally::Tally;
use crate::work::{AbortOnDrop, release_at_shutdown};
use crate::{JobHandler, Phase, RunStats, RunnerConfig, RunnerControl};

static DELETED: LogLimit = LogLimit::warn("a pending job entry was deleted from the stream before it was acknowledged");

/// How often a runner whose every slot is busy checks that Redis is there.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How long handing back this runner's pending deliveries may take at stop.
const HAND_BACK_WAIT: Duration = Duration::from_secs(5);

/// How many pending deliveries per level a stopping runner hands back.
const HAND_BACK_LIMIT: usize = 1000;

/// How many finished jobs of one status one housekeeping round removes.
const PURGE_BATCH: usize = 1000;

/// How long stopped jobs get, beyond their handler's stop grace, to write
/// that they went back to the queue before they are aborted.
const RELEASE_TIME: Duration = Duration::from_secs(10);

/// Takes jobs from the queue and runs them; see [`Runner::run_with`].
pub struct Runner<H> {
    store: Store,
    handler: Arc<H>,
    config: RunnerConfig,
    queue: Queue,
    cancels: Cancels,
    /// How deliveries ended, not yet counted on the queue's metrics.
    tally: Tally,
    /// One per job running at once.
    permits: Arc<Semaphore>,
    /// The jobs this runner runs, with their run ids.
    running: Arc<Mutex<HashMap<String, String>>>,
    /// Whether the queue is paused, as the runner last saw it: a run that
    /// ends takes no next job while it is.
    paused: Arc<AtomicBool>,
}

impl<H: JobHandler> Runner<H> {
    /// A runner over `store` with `handler`.
    pub fn new(store: Store, handler: H, config: RunnerConfig) -> Self {
        let concurrency = config.concurrency;
        let queue = Queue::new(config.stream.clone(), config.group.clone()).max_deliveries(config.max_deliveries);
        Runner {
            store,
            handler: Arc::new(handler),
            config,
            tally: Tally::new(&queue),
            queue,
            cancels: Cancels::default(),
            permits: Arc::new(Semaphore::new(concurrency)),
            running: Arc::default(),
            paused: Arc::default(),
        }
    }

    /// The queue the runner consumes.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// [`run_with`](Self::run_with) a control that drains when `shutdown`
    /// completes.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<RunStats> {
        let control = RunnerControl::new();
        let run = self.run_with(control.clone());
        tokio::pin!(run, shutdown);
        let mut signalled = false;
        loop {
            tokio::select! {
                stats = &mut run => return stats,
                _ = &mut shutdown, if !signalled => {
                    signalled = true;
                    control.drain();
                }
            }
        }
    }

    /// Runs jobs until `control` drains or stops it. Draining: no new
    /// deliveries are taken, running jobs get the
    /// [`shutdown_grace`](RunnerConfig::shutdown_grace) to finish. Then (or at
    /// once on [`RunnerControl::stop`]) each job still running is asked to
    /// stop, gets its handler's [`stop_grace`](JobHandler::stop_grace), and
    /// goes back to `queued` with a history entry; its delivery stays pending
    /// for another runner to claim. Returns what it did; `Err` only when it
    /// cannot go on (the store was closed, Redis refused its credentials).
    pub async fn run_with(self, control: RunnerControl) -> Result<RunStats> {
        let mut conn = self.store.clone();
        let mut link = Link::new(control.clone());
        let mut levels = Levels::new(&self.queue, self.config.fair_every);
        // A read starts the jobs it delivers, unless a job must first take
        // a slot of its user's (the per-user limit), which a read cannot.
        if self.config.max_running_per_user.is_none() {
            levels = levels.starting(JobStart::new(self.config.lease_duration())?);
        }
        let mut failures = 0u32;
        // The group first; a Redis that is down or loading is waited for.
        loop {
            match levels.ensure_groups(&mut conn).await {
                Ok(()) => {
                    link.up(false);
                    break;
                }
                Err(e) if is_fatal(&e) => return Err(e.into()),
                Err(e) => {
                    failures += 1;
                    link.down(&e);
                    if self.pause(failures, &control).await {
                        return Ok(RunStats::default());
                    }
                }
            }
        }
        // A read that outlives its block by the store's response timeout is
        // a hung server: the connection is dropped and the outage said.
        let mut reader = self.store.dedicated(Some(self.config.block));
        let permits = self.permits.clone();
        let running = self.running.clone();
        // Cancel events wake the runs they name (see `cancels`).
        let _follower = AbortOnDrop(tokio::spawn(cancels::follow(
            self.store.clone(),
            self.cancels.clone(),
            control.clone(),
        )));
        let mut tasks: JoinSet<RunStats> = JoinSet::new();
        let mut stats = RunStats::default();
        let mut next_claim = tokio::time::Instant::now();
        let mut next_housekeeping = tokio::time::Instant::now();
        let mut next_tally = tokio::time::Instant::now();
        let mut next_probe = tokio::time::Instant::now() + self.config.block.max(PROBE_EVERY);
        let mut chores = Chores::new(self.config.promote_interval);
        let consumer = self.config.consumer.clone();
        tracing::info!(consumer = %consumer, stream = %self.queue.stream(), concurrency = self.config.concurrency, "runner started");

        let mut stopping = false;
        while !stopping {
            while let Some(done) = tasks.try_join_next() {
                record(&mut stats, done);
            }
            LogLimit::report_held_back();
            // Every call below gives way to a drain: a Redis that hangs does
            // not hold the runner's stop up.
            if tokio::time::Instant::now() >= next_housekeeping {
                next_housekeeping = tokio::time::Instant::now() + self.config.housekeeping;
                if or_drain(&control, self.housekeeping(&mut conn, &levels))
                    .await
                    .is_none()
                {
                    break;
                }
            }
            let Some(paused) = or_drain(&control, chores.paused(&mut conn, &self.queue)).await else {
                break;
            };
            self.paused.store(paused, Ordering::Relaxed);
            let tally = self.tally.flush_due(&mut conn, &self.queue, &mut next_tally);
            if or_drain(&control, tally).await.is_none() {
                break;
            }
            let mut batch = Vec::new();
            // A paused runner starts nothing new: not even a stalled job
            // taken over from a runner that died.
            if !paused && tokio::time::Instant::now() >= next_claim {
                next_claim = tokio::time::Instant::now() + self.config.claim_interval;
                // Jobs whose writer died between the job and its stream entry
                // (ordered writes, on a cluster) are enqueued here.
                for q in levels.all() {
                    let Some(swept) = or_drain(&control, q.sweep_outbox(&mut conn, self.config.min_idle)).await else {
                        break;
                    };
                    match swept {
                        Ok(swept) if swept.appended > 0 => {
                            tracing::info!(appended = swept.appended, stream = %q.stream(), "enqueued jobs a writer left in the outbox")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(error = %e, "could not sweep the outbox"),
                    }
                }
                let claim = levels.claim_stalled(&mut conn, &consumer, self.config.min_idle, defaults::CLAIM_BATCH);
                let Some(claimed) = or_drain(&control, claim).await else {
                    break;
                };
                let claimed = match claimed {
                    Ok(claimed) => {
                        failures = 0;
                        link.up(false);
                        claimed
                    }
                    Err(e) => {
                        failures += 1;
                        link.down(&e);
                        if self.ride_out(e, failures, &mut conn, &control, &levels).await? {
                            stopping = true;
                        }
                        continue;
                    }
                };
                let (claimed, deleted) = claimed;
                for id in &deleted {
                    if let Some(held_back) = DELETED.admit() {
                        tracing::warn!(entry = %id, "a pending job entry was deleted from the stream before it was acknowledged{held_back}");
                    }
                }
                if !claimed.is_empty() {
                    tracing::info!(count = claimed.len(), "took over stalled jobs");
                }
                batch.extend(claimed);
            }
            let promote = chores.promote(&mut conn, &self.queue, self.config.max_running_per_user);
            if or_drain(&control, promote).await.is_none() {
                break;
            }
            if paused {
                // Paused: no reads; running jobs finish.
                tokio::select! {
                    _ = control.reached(Phase::Draining) => stopping = true,
                    Some(done) = tasks.join_next() => record(&mut stats, done),
                    _ = tokio::time::sleep(chores.pause_wait()) => {}
                }
                continue;
            }
            let free = permits.available_permits().saturating_sub(batch.len());
            if free == 0 && batch.is_empty() {
                // Every slot is busy: no read says whether Redis is there, so
                // a PING does, every `block`.
                tokio::select! {
                    _ = control.reached(Phase::Draining) => stopping = true,
                    Some(done) = tasks.join_next() => record(&mut stats, done),
                    // A run's handler ended: its place is free while its
                    // outcome is written.
                    Ok(_) = permits.acquire() => {}
                    // Runs that take their next job themselves can keep
                    // every place busy: whether the queue was paused is
                    // still looked at on time.
                    _ = tokio::time::sleep(chores.pause_wait()) => {
                        if tokio::time::Instant::now() >= next_probe {
                            next_probe = tokio::time::Instant::now() + self.config.block.max(PROBE_EVERY);
                            if or_drain(&control, self.probe(&mut conn, &mut link)).await.is_none() {
                                break;
                            }
                        }
                    }
                }
                continue;
            }
            if free > 0 {
                let rate = self.config.rate_limit;
                let starts = chores.starts(&mut conn, &self.queue, &consumer, rate, free, self.config.block);
                let free = match or_drain(&control, starts).await {
                    None => break,
                    Some(Ok(Starts::Go(n))) => n,
                    Some(Ok(Starts::Wait(wait))) => {
                        // The queue's rate limit is reached: wait for the window.
                        tokio::select! {
                            _ = control.reached(Phase::Draining) => stopping = true,
                            Some(done) = tasks.join_next() => record(&mut stats, done),
                            _ = tokio::time::sleep(wait.min(chores.pause_wait())) => {}
                        }
                        self.spawn_all(batch, &mut tasks, &consumer, &control, &levels).await;
                        continue;
                    }
                    Some(Err(e)) => {
                        failures += 1;
                        link.down(&e);
                        if self.ride_out(e, failures, &mut conn, &control, &levels).await? {
                            stopping = true;
                        }
                        self.spawn_all(batch, &mut tasks, &consumer, &control, &levels).await;
                        continue;
                    }
                };
                // Draining takes no new deliveries: a read still in flight is
                // abandoned, and what the server hands it stays pending for
                // another runner to claim once idle.
                let delivered = tokio::select! {
                    r = levels.read(&mut conn, &mut reader, &consumer, free, self.config.block) => r,
                    _ = control.reached(Phase::Draining) => {
                        stopping = true;
                        let _ = tokio::time::timeout(PROBE_EVERY, chores.settle(&mut conn, &self.queue, 0)).await;
                        continue;
                    }
                };
                let used = delivered.as_ref().map_or(0, Vec::len);
                chores.settle(&mut conn, &self.queue, used).await;
                match delivered {
                    Ok(d) => {
                        failures = 0;
                        link.up(true);
                        batch.extend(d);
                    }
                    Err(e) => {
                        failures += 1;
                        link.down(&e);
                        if self.ride_out(e, failures, &mut conn, &control, &levels).await? {
                            stopping = true;
                        }
                    }
                }
            }
            self.spawn_all(batch, &mut tasks, &consumer, &control, &levels).await;
        }

        // The read connection goes now: a blocking read the loop abandoned
        // would otherwise stay blocked on the server, and hand an entry to
        // this runner after it stopped reading (pending until it is idle
        // long enough for another runner to take over).
        drop(reader);
        self.wind_down(&control, &mut tasks, &mut stats).await;
        let left: Vec<(String, String)> = running.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
        for (job_id, run_id) in left {
            if release_at_shutdown(&mut conn, &job_id, &run_id).await {
                stats.released += 1;
            } else {
                stats.unreleased += 1;
            }
        }
        // What this runner still holds (the jobs it put back, a delivery that
        // a read it abandoned was handed) goes to another runner at its next
        // takeover, not after its `min_idle`.
        for q in levels.all() {
            match tokio::time::timeout(HAND_BACK_WAIT, q.hand_back(&mut conn, &consumer, HAND_BACK_LIMIT)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    tracing::info!(deliveries = n, stream = %q.stream(), "handed back pending deliveries: another runner takes them over at once")
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "could not hand back pending deliveries; they are taken over after min_idle")
                }
                Err(_) => tracing::debug!(
                    "Redis did not answer in time to hand back pending deliveries; they are taken over after min_idle"
                ),
            }
        }
        // The last counts; a Redis that hangs does not hold the stop up.
        let _ = tokio::time::timeout(crate::tally::LAST_FLUSH_WAIT, self.tally.flush(&mut conn, &self.queue)).await;
        LogLimit::report_all_held_back();
        tracing::info!(consumer = %consumer, ?stats, "runner stopped");
        Ok(stats)
    }

    /// Lets running jobs finish until the drain time passes (or the control
    /// stops), then stops the rest: each is asked to stop and released by
    /// its own work; one that has not ended after its stop grace is aborted
    /// (and released by the caller).
    async fn wind_down(&self, control: &RunnerControl, tasks: &mut JoinSet<RunStats>, stats: &mut RunStats) {
        if !tasks.is_empty() && control.phase() < Phase::Stopping {
            tracing::info!(
                running = tasks.len(),
                drain_secs = self.config.shutdown_grace.as_secs_f64(),
                "draining: no new jobs; waiting for the running ones"
            );
            let deadline = tokio::time::Instant::now() + self.config.shutdown_grace;
            let stop = control.reached(Phase::Stopping);
            tokio::pin!(stop);
            while !tasks.is_empty() {
                tokio::select! {
                    done = tasks.join_next() => if let Some(done) = done { record(stats, done) },
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = &mut stop => break,
                }
            }
        }
        control.stop();
        if tasks.is_empty() {
            return;
        }
        tracing::info!(
            running = tasks.len(),
            "stopping the jobs still running; they go back to the queue"
        );
        let deadline = tokio::time::Instant::now() + self.handler.stop_grace() + RELEASE_TIME;
        while !tasks.is_empty() {
            match tokio::time::timeout_at(deadline, tasks.join_next()).await {
                Ok(Some(done)) => record(stats, done),
                Ok(None) => break,
                Err(_) => {
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                }
            }
        }
    }
}
