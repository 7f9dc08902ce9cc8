//! One delivery's life: check the job, start it, run the handler while keeping
//! the delivery fresh, record the outcome, and only then acknowledge.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use repobox_models::{Error, Job, JobOutcome, JobStatus, Result, now_millis};
use repobox_orm::{Delivery, Queue, Store};

use repobox_orm::EntityField;

use crate::{HandlerResult, JobHandler, Output};

/// How a delivery ended.
pub(crate) enum Done {
    Succeeded,
    Failed,
    Retried,
    DeadLettered,
    Skipped,
    Cancelled,
}

/// How often a runner looks whether someone asked to cancel a running job.
const CANCEL_CHECK: Duration = Duration::from_millis(200);

/// How long a handler gets to stop by itself once its job is cancelled.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

pub(crate) struct Work<H> {
    pub store: Store,
    pub queue: Queue,
    pub handler: Arc<H>,
    pub consumer: String,
    pub heartbeat: Duration,
    pub running: Arc<Mutex<HashSet<String>>>,
}

impl<H: JobHandler> Work<H> {
    /// Processes one delivery. Never fails: whatever goes wrong with a
    /// delivery (an entry without a valid job id, a job that is gone or does
    /// not decode, a status write that fails, a handler that fails or panics)
    /// counts as one delivery of it; it stays pending and is delivered again
    /// until the queue's maximum, and then goes to the dead letters with the
    /// reason (see [`poison`](Self::poison)).
    pub(crate) async fn process(&self, delivery: Delivery) -> Done {
        match self.try_process(&delivery).await {
            Ok(done) => done,
            Err(reason) => self.poison(&delivery, &reason).await,
        }
    }

    async fn try_process(&self, delivery: &Delivery) -> std::result::Result<Done, String> {
        let mut conn = self.store.clone();
        if let Some(problem) = &delivery.malformed {
            return Err(format!("malformed entry: {problem}"));
        }
        let job_id = match delivery.field("job_id") {
            Some(id) if Job::key_for(id).is_ok() => id.to_owned(),
            Some(_) => return Err("the entry's job_id is not a job id".into()),
            None => return Err("the entry has no job_id".into()),
        };
        if self.queue.is_exhausted(delivery) {
            return Err(format!("delivered {} times without finishing", delivery.deliveries));
        }
        let job = match Job::get(&mut conn, job_id.as_str()).await {
            Ok(Some(job)) => job,
            Ok(None) => return Err("the job does not exist".into()),
            Err(e) => return Err(format!("the job cannot be read: {e}")),
        };
        if job.status.is_final() {
            // A duplicate delivery of a job that already ended.
            self.ack(delivery).await?;
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
                self.ack(delivery).await?;
                return Ok(Done::Skipped);
            }
            Err(e) => return Err(format!("the job could not be started: {e}")),
        };
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job_id.clone());
        let started = job.clone();
        let (result, cancelled) = self.run_handler(job, delivery).await;
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&job_id);
        let now = now_millis();
        if cancelled {
            let outcome = JobOutcome {
                exit_code: None,
                error: Some("cancelled".into()),
            };
            Job::update_status_from(&mut conn, started, JobStatus::Cancelled, now, outcome)
                .await
                .map_err(|e| format!("the job's cancellation could not be recorded: {e}"))?;
            self.ack(delivery).await?;
            return Ok(Done::Cancelled);
        }
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
                Job::update_status_from(&mut conn, started, status, now, outcome)
                    .await
                    .map_err(|e| format!("the job's outcome could not be recorded: {e}"))?;
                self.ack(delivery).await?;
                Ok(done)
            }
            Err(reason) if delivery.deliveries >= self.queue.max_deliveries_value() => Err(reason),
            Err(reason) => {
                tracing::warn!(job = %job_id, delivery = delivery.deliveries, %reason, "job failed; it will be delivered again");
                let outcome = JobOutcome {
                    exit_code: None,
                    error: Some(reason),
                };
                Job::update_status_from(&mut conn, started, JobStatus::Queued, now, outcome)
                    .await
                    .map_err(|e| format!("the job could not be queued again: {e}"))?;
                Ok(Done::Retried)
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> std::result::Result<(), String> {
        self.queue
            .ack(&mut self.store.clone(), &[&delivery.id])
            .await
            .map(drop)
            .map_err(|e| format!("the delivery could not be acknowledged: {e}"))
    }

    /// A delivery that could not be processed: left pending for another
    /// delivery, or, once it has had `max_deliveries`, dead-lettered with the
    /// reason (and its job, if it exists and decodes, marked failed).
    pub(crate) async fn poison(&self, delivery: &Delivery, reason: &str) -> Done {
        if delivery.deliveries < self.queue.max_deliveries_value() {
            tracing::warn!(entry = %delivery.id, delivery = delivery.deliveries, %reason, "a delivery failed; it will be delivered again");
            return Done::Retried;
        }
        match self.give_up(delivery, reason).await {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(entry = %delivery.id, error = %e, "could not dead-letter a delivery; it will be delivered again");
                Done::Retried
            }
        }
    }

    /// Runs the handler in a task of its own (a panic is a failure, not a
    /// crash) while keeping the delivery fresh so no other runner takes it.
    /// Also watches the job's `cancel_requested_at`: once set, the handler's
    /// cancellation token fires, and a handler that has not stopped after
    /// [`CANCEL_GRACE`] is aborted. Returns the handler's result and whether
    /// the job was cancelled.
    async fn run_handler(&self, job: Job, delivery: &Delivery) -> (HandlerResult, bool) {
        let (cancel, token) = tokio::sync::watch::channel(false);
        let job_key = Job::key_for(job.id.as_str()).unwrap_or_default();
        let output = Output::new(self.store.clone(), job.id.clone(), token);
        let handler = self.handler.clone();
        let mut run = AbortOnDrop(tokio::spawn(async move { handler.run(job, output).await }));
        let mut conn = self.store.clone();
        let mut beat = tokio::time::interval(self.heartbeat.max(Duration::from_millis(10)));
        let mut check = tokio::time::interval(CANCEL_CHECK);
        beat.tick().await;
        let mut give_up_at: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                joined = &mut run.0 => {
                    let result = match joined {
                        Ok(result) => result,
                        Err(e) if e.is_panic() => Err("the handler panicked".into()),
                        Err(e) => Err(format!("the handler was cancelled: {e}")),
                    };
                    return (result, give_up_at.is_some());
                }
                _ = beat.tick() => {
                    if let Err(e) = self.queue.touch(&mut conn, &self.consumer, &[&delivery.id]).await {
                        tracing::warn!(error = %e, "could not keep a running job's delivery fresh");
                    }
                }
                _ = check.tick() => {
                    if let Some(deadline) = give_up_at {
                        if tokio::time::Instant::now() >= deadline {
                            run.0.abort();
                            return (Err("cancelled".into()), true);
                        }
                        continue;
                    }
                    let requested: Result<Option<i64>> = repobox_orm::redis::cmd("HGET")
                        .arg(&job_key)
                        .arg(repobox_models::JobField::CancelRequestedAt.name())
                        .query_async(&mut conn)
                        .await
                        .map_err(Into::into);
                    if let Ok(Some(_)) = requested {
                        tracing::info!(entry = %delivery.id, "the job was cancelled; stopping its handler");
                        let _ = cancel.send(true);
                        give_up_at = Some(tokio::time::Instant::now() + CANCEL_GRACE);
                    }
                }
            }
        }
    }

    /// Marks the job failed (when there is one that can be) and moves the
    /// delivery to the dead letters with the reason.
    async fn give_up(&self, delivery: &Delivery, reason: &str) -> Result<Done> {
        let mut conn = self.store.clone();
        if let Some(job_id) = delivery.field("job_id").filter(|id| Job::key_for(*id).is_ok()) {
            let outcome = JobOutcome {
                exit_code: None,
                error: Some(reason.to_owned()),
            };
            match Job::update_status(&mut conn, job_id, JobStatus::Failed, now_millis(), outcome).await {
                Ok(_) => {}
                // Gone, undecodable or already over: the dead letter says why.
                Err(e) => tracing::debug!(job = %job_id, error = %e, "a dead-lettered job's status was not written"),
            }
        }
        tracing::warn!(entry = %delivery.id, deliveries = delivery.deliveries, %reason, "dead-lettering a delivery");
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
