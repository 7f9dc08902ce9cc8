//! The end of a run: its outcome written with the delivery's
//! acknowledgement (and, in a run's place, the next job taken with it), or
//! the delivery dead-lettered.

use std::time::Instant;

use repobox_models::{Error, Job, JobOutcome, JobStatus, RetryPolicy, now_millis};
use repobox_orm::Delivery;
use repobox_orm::Store;
use tokio::sync::OwnedSemaphorePermit;

use super::lane::TakenNext;
use super::{DEAD_LETTERING, Done, Finish, Then, Work};
use crate::JobHandler;

/// What a run's end writes, and what it measured.
pub(super) struct End {
    /// The job as the run started it.
    pub started: Job,
    pub to: Finish,
    pub outcome: JobOutcome,
    /// The retry policy of its failures.
    pub policy: RetryPolicy,
    /// When the handler began.
    pub clock: Instant,
    /// The output lines it wrote.
    pub lines: u64,
}

impl<H: JobHandler> Work<H> {
    /// Writes the end of the run of `job_id`, whose delivery is `delivery`:
    /// its outcome and acknowledgement in one write (the acknowledgement
    /// after it on a cluster), or, for a retryable failure of the last
    /// attempt, the dead letter. `place`: the run's place, kept when the
    /// end takes the next job (which goes to `next`).
    pub(super) async fn record_end(
        &self,
        conn: &mut Store,
        delivery: &Delivery,
        job_id: &str,
        end: End,
        place: Option<OwnedSemaphorePermit>,
        next: &mut Option<TakenNext>,
    ) -> std::result::Result<Done, String> {
        let End {
            started,
            to,
            outcome,
            policy,
            clock,
            lines,
        } = end;
        let (exit_code, reason) = (outcome.exit_code, outcome.error.clone());
        // The outcome and the delivery's acknowledgement in one write (the
        // acknowledgement after it on a cluster); a delivery whose job goes
        // to the dead letters is not acknowledged there.
        let ack = (&self.queue, delivery.id.as_str());
        let written = match (to, place) {
            (Finish::Succeeded | Finish::Cancelled, Some(place)) => {
                self.end_and_take(conn, started, to.status(), outcome, ack, place, next)
                    .await
            }
            (Finish::Succeeded, _) => {
                Job::end_run(conn, started, JobStatus::Succeeded, now_millis(), outcome, ack).await
            }
            (Finish::Cancelled, _) => {
                Job::end_run(conn, started, JobStatus::Cancelled, now_millis(), outcome, ack).await
            }
            (Finish::Failed { retryable }, _) => {
                Job::fail_run_and_ack(conn, started, outcome, &policy, retryable, Some(ack)).await
            }
        };
        let (then, job) = match written {
            Ok(job) => {
                let then = match (to, job.status) {
                    (Finish::Succeeded, _) => Then::Ack(Done::Succeeded),
                    (Finish::Cancelled, _) => Then::Ack(Done::Cancelled),
                    (_, JobStatus::Retrying) => Then::Ack(Done::Retried),
                    // A retryable failure of the last attempt: the delivery
                    // goes to the dead letters with the reason.
                    (Finish::Failed { retryable: true }, _) => Then::DeadLetter(
                        reason
                            .clone()
                            .unwrap_or_else(|| format!("exit code {}", exit_code.unwrap_or(-1))),
                    ),
                    _ => Then::Ack(Done::Failed),
                };
                (then, job)
            }
            Err(Error::LeaseLost { .. }) => {
                tracing::warn!(job = %job_id, entry = %delivery.id, "the run lost its lease before it could record its outcome; the run that holds the job records it");
                return Ok(Done::LeaseLost);
            }
            Err(e) => return Err(format!("the job's outcome could not be recorded: {e}")),
        };
        tracing::info!(
            job = %job_id,
            status = %job.status,
            attempt = job.retries.saturating_add(1),
            exit_code = exit_code.map(i64::from),
            reason = reason.as_deref(),
            retry_at = job.run_at,
            duration_secs = clock.elapsed().as_secs_f64(),
            output_lines = lines,
            "job finished"
        );
        match then {
            Then::Ack(done) => {
                // Acknowledged by the write.
                let outcome = match done {
                    Done::Succeeded => "succeeded",
                    Done::Cancelled => "cancelled",
                    Done::Retried => "retried",
                    _ => "failed",
                };
                self.tally.add(outcome, clock.elapsed());
                Ok(done)
            }
            Then::DeadLetter(reason) => {
                if let Some(held_back) = DEAD_LETTERING.admit() {
                    tracing::warn!(entry = %delivery.id, deliveries = delivery.deliveries, %reason, "dead-lettering a delivery{held_back}");
                }
                self.queue
                    .dead_letter(conn, delivery, &self.consumer, &reason)
                    .await
                    .map_err(|e| format!("the delivery could not be dead-lettered: {e}"))?;
                self.tally.add("failed", clock.elapsed());
                self.tally.dead_lettered();
                Ok(Done::DeadLettered)
            }
        }
    }
}
