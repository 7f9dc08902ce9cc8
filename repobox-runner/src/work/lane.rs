//! A run's place, kept from one job to the next: a run that ends writes its
//! end and takes its next job in the same round trip ([`Job::end_run_and_take`]:
//! the end, the acknowledgement, the read of the next delivery and its
//! start, one script call on one server), then runs that job in the same
//! task. At steady state, a job costs one round trip.

use std::sync::atomic::Ordering;

use tokio::sync::OwnedSemaphorePermit;

use repobox_models::{Error, Job, JobOutcome, JobStatus, Next, now_millis};
use repobox_orm::{Delivery, Queue, Store};

use super::{Ended, Work};
use crate::runner::upkeep::count;
use crate::{JobHandler, Phase, RunStats};

/// The next deliveries a run's end took, with the run's place.
pub(crate) type TakenNext = (OwnedSemaphorePermit, Vec<(usize, Delivery)>);

/// Whether `job`, as the read that delivered it handed it, was started by
/// that read for this very delivery.
pub(super) fn started_by_read(delivery: &Delivery, job: &Job) -> bool {
    delivery.started()
        && job.status == JobStatus::Running
        && job.run_id.is_some()
        && job.run_entry.as_deref() == Some(delivery.id.as_str())
}

impl<H: JobHandler> Work<H> {
    /// Runs `delivery`, then each delivery its end takes, in its place,
    /// until an end takes none; how the deliveries ended, counted.
    pub(crate) async fn process(self, delivery: Delivery, place: OwnedSemaphorePermit) -> RunStats {
        let mut work = self;
        let (mut delivery, mut place) = (delivery, place);
        let mut stats = RunStats::default();
        loop {
            let mut next = None;
            count(&mut stats, work.process_one(&delivery, place, &mut next).await);
            let Some((kept, mut taken)) = next else {
                return stats;
            };
            // One at most: the end asks for one.
            let Some((level, taken)) = taken.pop() else {
                return stats;
            };
            work = Work {
                queue: work.levels.queue(level).clone(),
                ..work
            };
            (delivery, place) = (taken, kept);
        }
    }

    /// A delivery refused before its run began (`reason`) whose job the read
    /// that delivered it had started: the start is undone, so that the job
    /// is not left `running` under a run that never ran.
    pub(super) async fn undo_read_start(&self, delivery: &Delivery, reason: &str) {
        let (Some(job_id), Some((_, run_id))) = (delivery.field("job_id"), delivery.started_field("run_id")) else {
            return;
        };
        match Job::undo_start(&mut self.store.clone(), job_id, &run_id, now_millis()).await {
            Ok(true) => {
                tracing::info!(job = %job_id, entry = %delivery.id, %reason, "the read had started the job; back to queued")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(job = %job_id, error = %e, "could not undo the start of a job the runner refused"),
        }
    }

    /// Whether a run that ended as `ended` takes its next job with its
    /// end: on one server, with a read that starts what it delivers, when
    /// the job succeeded or was cancelled (an end of one write), without a
    /// user slot or a rate limit to ask first, while the runner runs and
    /// the queue is not paused.
    pub(super) fn may_take_next(&self, ended: &Ended, has_slot: bool) -> bool {
        matches!(ended, Ended::Returned(Ok(0)) | Ended::Cancelled)
            && !has_slot
            && !self.rate_limited
            && self.levels.start().is_some()
            && !self.store.is_cluster()
            && !self.paused.load(Ordering::Relaxed)
            && self.control.phase() == Phase::Running
    }

    /// [`Job::end_run`] of `run`, taking the next job with it: what it
    /// took goes to `next`, with `place`. A call that fails as a whole (the
    /// end may or may not be written) leaves the end to `end_run`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn end_and_take(
        &self,
        conn: &mut Store,
        run: Job,
        to: JobStatus,
        outcome: JobOutcome,
        ack: (&Queue, &str),
        place: OwnedSemaphorePermit,
        next: &mut Option<TakenNext>,
    ) -> Result<Job, Error> {
        let Some(start) = self.levels.start() else {
            return Job::end_run(conn, run, to, now_millis(), outcome, ack).await;
        };
        let order = self.levels.next_order();
        let queues = order.map(|level| self.levels.queue(level));
        let take = Next {
            queues: &queues,
            consumer: &self.consumer,
            count: 1,
            start,
        };
        match Job::end_run_and_take(conn, run.clone(), to, now_millis(), outcome.clone(), ack, take).await {
            Ok(taken) => {
                let deliveries = taken.next.into_iter().map(|(i, d)| (order[i], d)).collect();
                *next = Some((place, deliveries));
                taken.ended
            }
            Err(e) => {
                tracing::debug!(job = %run.id, error = %e, "could not end the run and take the next job in one call; ending it alone");
                drop(place);
                Job::end_run(conn, run, to, now_millis(), outcome, ack).await
            }
        }
    }
}
