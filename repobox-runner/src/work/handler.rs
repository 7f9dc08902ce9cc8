//! The handler's run, watched: the lease renewed and the delivery kept fresh,
//! cancellation and the runner's shutdown turned into the handler's stop
//! token, and a handler that outlives its grace aborted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use repobox_models::{Job, Result};
use repobox_orm::{Delivery, EntityField};

use super::slots::UserSlot;
use super::{CANCEL_CHECK, CANCEL_LOOK, Ended, Work};
use crate::cancels::Cancels;
use crate::{HandlerResult, JobHandler, Output, Phase, StopReason};

impl<H: JobHandler> Work<H> {
    /// Runs the handler in a task of its own (a panic is a failure, not a
    /// crash) while keeping the delivery fresh and renewing the run's lease
    /// on the job. A run that finds its lease taken over, or that could not
    /// renew it before it passed (by this process's clock), stops its
    /// handler at once: another run may hold the job. Also watches the
    /// job's `cancel_requested_at` and the runner's phase: once the job is
    /// cancelled or the runner is stopping, the handler's stop token fires,
    /// and a handler that has not stopped after its
    /// [`stop_grace`](JobHandler::stop_grace) is aborted. Returns how the run
    /// ended and how many output lines it wrote.
    pub(super) async fn run_handler(
        &self,
        job: Job,
        run_id: &str,
        delivery: &Delivery,
        leased_at: tokio::time::Instant,
        slot: Option<&UserSlot>,
    ) -> (Ended, u64) {
        let (stop, token) = tokio::sync::watch::channel(None);
        let job_id = job.id.clone();
        let job_key = Job::key_for(job.id.as_str()).unwrap_or_default();
        // The lease holds at least until then (each renewal counted from
        // before it was sent, as the start was); the output is fenced by it.
        let held_until = Arc::new(Mutex::new(leased_at + self.lease));
        let output = Output::new(
            self.store.clone(),
            job.id.clone(),
            run_id.to_owned(),
            token,
            held_until.clone(),
        );
        let written = output.clone();
        let handler = self.handler.clone();
        let mut run = AbortOnDrop(tokio::spawn(async move { handler.run(job, output).await }));
        let mut conn = self.store.clone();
        // Both start one period from now: an interval's first tick is due at
        // once, but waiting on it costs a turn of the timer (about a
        // millisecond), which a short job would pay on every run.
        let beat_every = self.heartbeat.max(Duration::from_millis(10));
        let now = tokio::time::Instant::now();
        let mut beat = tokio::time::interval_at(now + beat_every, beat_every);
        let mut check = tokio::time::interval_at(now + CANCEL_CHECK, CANCEL_CHECK);
        // Woken by a cancel event of this job; looks by itself every
        // CANCEL_LOOK as well.
        let woken = Arc::new(tokio::sync::Notify::new());
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job_id.clone(), woken.clone());
        let _registered = Registered(&self.cancels, &job_id);
        let mut next_look = tokio::time::Instant::now() + CANCEL_LOOK;
        let mut look_now = false;
        let deadline = || *held_until.lock().unwrap_or_else(|e| e.into_inner());
        // Once the handler was asked to stop: why, and until when it may take.
        let mut stopping: Option<(StopReason, tokio::time::Instant)> = None;
        let stopped = |reason: StopReason| match reason {
            StopReason::Cancelled => Ended::Cancelled,
            StopReason::Shutdown => Ended::Released,
        };
        let runner_stops = self.control.reached(Phase::Stopping);
        tokio::pin!(runner_stops);
        let ended = loop {
            tokio::select! {
                joined = &mut run.0 => {
                    let result: HandlerResult = match joined {
                        Ok(result) => result,
                        Err(e) if e.is_panic() => Err("the handler panicked".into()),
                        Err(e) => Err(format!("the handler was cancelled: {e}").into()),
                    };
                    break match stopping {
                        // The job ended by itself (an exit code, a timeout)
                        // before the shutdown could stop it: that is its end.
                        Some((StopReason::Shutdown, _)) if !matches!(&result, Err(f) if f.retry) => {
                            Ended::Returned(result)
                        }
                        Some((reason, _)) => stopped(reason),
                        None => Ended::Returned(result),
                    };
                }
                // Polled until it resolves or the job is stopped otherwise, never after.
                _ = &mut runner_stops, if stopping.is_none() => {
                    tracing::info!(job = %job_id, "the runner is stopping; stopping the job");
                    let _ = stop.send(Some(StopReason::Shutdown));
                    stopping = Some((StopReason::Shutdown, tokio::time::Instant::now() + self.handler.stop_grace()));
                }
                _ = beat.tick() => {
                    let renewing = tokio::time::Instant::now();
                    let renewed = bounded(Job::renew_lease(&mut conn, &job_id, run_id, self.lease)).await;
                    match renewed {
                        Ok(Some(_)) => *held_until.lock().unwrap_or_else(|e| e.into_inner()) = renewing + self.lease,
                        Ok(None) => {
                            tracing::warn!(job = %job_id, entry = %delivery.id, "the run lost its lease to another run; stopping its handler");
                            break Ended::LeaseLost;
                        }
                        Err(e) if tokio::time::Instant::now() >= deadline() => {
                            tracing::warn!(job = %job_id, error = %e, "the run could not renew its lease before it passed; stopping its handler");
                            break Ended::LeaseLost;
                        }
                        Err(e) => tracing::debug!(job = %job_id, error = %e, "could not renew a running job's lease; retrying"),
                    }
                    if let Some(slot) = slot {
                        let _ = tokio::time::timeout(REDIS_WAIT, slot.renew(&mut conn, self.lease)).await;
                    }
                    if let Err(e) = bounded(async {
                        Ok(self.queue.touch(&mut conn, &self.consumer, &[&delivery.id]).await?)
                    })
                    .await
                    {
                        tracing::debug!(error = %e, "could not keep a running job's delivery fresh");
                    }
                }
                _ = woken.notified(), if stopping.is_none() => {
                    look_now = true;
                    check.reset_immediately();
                }
                _ = check.tick() => {
                    if tokio::time::Instant::now() >= deadline() {
                        tracing::warn!(job = %job_id, "the run's lease passed before it could be renewed; stopping its handler");
                        break Ended::LeaseLost;
                    }
                    if let Some((reason, until)) = stopping {
                        if tokio::time::Instant::now() >= until {
                            tracing::warn!(job = %job_id, "the handler did not stop within its grace; aborted");
                            break stopped(reason);
                        }
                        continue;
                    }
                    if !look_now && tokio::time::Instant::now() < next_look {
                        continue;
                    }
                    look_now = false;
                    next_look = tokio::time::Instant::now() + CANCEL_LOOK;
                    let requested: Result<Option<i64>> = bounded(async {
                        Ok(repobox_orm::redis::cmd("HGET")
                            .arg(&job_key)
                            .arg(repobox_models::JobField::CancelRequestedAt.name())
                            .query_async(&mut conn)
                            .await?)
                    })
                    .await;
                    if let Ok(Some(_)) = requested {
                        tracing::info!(job = %job_id, entry = %delivery.id, "the job was cancelled; stopping it");
                        let _ = stop.send(Some(StopReason::Cancelled));
                        stopping = Some((StopReason::Cancelled, tokio::time::Instant::now() + self.handler.stop_grace()));
                    }
                }
            }
        };
        // Whatever still runs stops here (its guards kill what it started).
        run.0.abort();
        (ended, written.lines_written())
    }
}

/// A handler task that dies with the work that spawned it (a runner that is
/// aborted or shut down leaves no job running behind its back).
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long one of a run's watching calls (a renewal, a cancellation check)
/// may take: the loop that makes them also stops the run, and a Redis that
/// hangs must not hold that up. A call given up on is made again next time.
const REDIS_WAIT: Duration = Duration::from_secs(2);

/// `call`'s result, or a timeout after [`REDIS_WAIT`].
async fn bounded<T>(call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(REDIS_WAIT, call).await {
        Ok(result) => result,
        Err(_) => Err(repobox_orm::Error::Timeout(REDIS_WAIT).into()),
    }
}

/// A run's place in the runner's [`Cancels`], taken out when the run ends.
struct Registered<'a>(&'a Cancels, &'a str);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(self.1);
    }
}
