//! One delivery's life: check the job, start it, run the handler while keeping
//! the delivery fresh, record the outcome, and only then acknowledge.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use repobox_models::{Error, Job, JobOutcome, JobStatus, Result, now_millis};
use repobox_orm::{Delivery, Queue, Store};

use crate::{HandlerResult, JobHandler, Output};

/// How a delivery ended.
pub(crate) enum Done {
    Succeeded,
    Failed,
    Retried,
    DeadLettered,
    Skipped,
}

pub(crate) struct Work<H> {
    pub store: Store,
    pub queue: Queue,
    pub handler: Arc<H>,
    pub consumer: String,
    pub heartbeat: Duration,
    pub running: Arc<Mutex<HashSet<String>>>,
}

impl<H: JobHandler> Work<H> {
    pub(crate) async fn process(&self, delivery: Delivery) -> Result<Done> {
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
        let output = Output::new(self.store.clone(), job.id.clone());
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
            Ok(_) | Err(Error::InvalidTransition { .. }) => {}
            Err(e) if e.is_not_found() => {}
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
