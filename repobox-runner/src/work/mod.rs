//! One delivery's life: check the job, start it, run the handler while keeping
//! the delivery fresh, record the outcome, and only then acknowledge.
//!
//! - `handler`: the handler's run, watched: lease, cancellation, shutdown;
//! - `poison`: deliveries that cannot be processed;
//! - `slots`: a run's slot among its user's running jobs.

mod end;
mod handler;
mod lane;
mod poison;
mod slots;

use self::end::End;
pub(crate) use self::handler::AbortOnDrop;
use self::lane::{TakenNext, started_by_read};
pub(crate) use self::slots::entry as parked_entry;
use self::slots::{Taken, UserSlot};

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use repobox_models::{Error, Job, JobOutcome, JobStatus, RetryPolicy, Start, now_millis};
use repobox_orm::queue::LogLimit;
use repobox_orm::{Delivery, Queue, Store};

use crate::cancels::Cancels;
use crate::runner::Levels;
use crate::tally::Tally;
use crate::{HandlerResult, JobHandler, RunnerControl};

/// How a delivery ended.
pub(crate) enum Done {
    Succeeded,
    Failed,
    Retried,
    DeadLettered,
    Skipped,
    Cancelled,
    /// The run lost its lease: another run holds the job.
    LeaseLost,
    /// The runner stopped the run at shutdown: the job went back to
    /// `queued`, its delivery stays pending for another runner.
    Released,
    /// The runner stopped the run at shutdown but Redis did not take the
    /// job back: it is taken over once its lease passes.
    Unreleased,
    /// Its user had every slot taken: the job waits, parked, and its
    /// delivery is acknowledged.
    Parked,
}

/// The history reason of a job that a runner stopped at shutdown.
const RELEASED: &str = "released: the runner shut down";

/// How long putting a stopped job back may take at shutdown: a Redis that
/// hangs must not hold the runner up.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Puts a job this runner stopped at shutdown back to `queued` (its
/// delivery stays pending); `false` if that could not be done in
/// [`RELEASE_WAIT`]: the job then stays `running` until its lease passes,
/// when another runner takes it over.
pub(crate) async fn release_at_shutdown(conn: &mut Store, job_id: &str, run_id: &str) -> bool {
    let release = Job::release(conn, job_id, run_id, now_millis(), RELEASED);
    match tokio::time::timeout(RELEASE_WAIT, release).await {
        Ok(Ok(_)) => true,
        // Another run holds it: nothing of this run's to put back.
        Ok(Err(Error::LeaseLost { .. })) => false,
        Ok(Err(e)) => {
            tracing::warn!(job = %job_id, error = %e, "could not put a stopped job back on the queue; another runner takes it over once its lease passes");
            false
        }
        Err(_) => {
            tracing::warn!(job = %job_id, "Redis did not answer in time to put a stopped job back on the queue; another runner takes it over once its lease passes");
            false
        }
    }
}

/// What becomes of a delivery once its run's outcome is written.
enum Then {
    /// Acknowledged: the job is over (or cancelled).
    Ack(Done),
    /// The last attempt failed: to the dead letters, with the reason.
    DeadLetter(String),
}

/// What a run's end writes on its job.
#[derive(Clone, Copy)]
enum Finish {
    Succeeded,
    Cancelled,
    /// `retrying` when `retryable` and the policy allows another attempt,
    /// else `failed`.
    Failed {
        retryable: bool,
    },
}

impl Finish {
    /// The status a run that ended so is written with, when it is not
    /// decided by the retry policy.
    fn status(self) -> JobStatus {
        match self {
            Finish::Succeeded => JobStatus::Succeeded,
            Finish::Cancelled => JobStatus::Cancelled,
            Finish::Failed { .. } => JobStatus::Failed,
        }
    }
}

/// How a run's handler ended.
enum Ended {
    /// It returned (or panicked: an error).
    Returned(HandlerResult),
    /// It was cancelled on request.
    Cancelled,
    /// The run lost its lease and the handler was stopped.
    LeaseLost,
    /// The runner is stopping: the handler was asked to stop, the job goes
    /// back to the queue.
    Released,
}

/// The reason a stream entry naming another user than its job's is
/// dead-lettered with.
const FOREIGN: &str = "the entry's user_id is not the job's";

/// How often a run's watch ticks: its lease's deadline, a stopping
/// handler's grace.
const CANCEL_CHECK: Duration = Duration::from_millis(200);

/// How often a running job looks whether someone asked to cancel it without
/// a cancel event (a request written by another client); a request with its
/// event wakes it at once.
const CANCEL_LOOK: Duration = Duration::from_secs(5);

// The lines every stream entry may cause: a flood of garbage entries writes
// one of each kind per interval, with a count of the others.
static DEAD_LETTERING: LogLimit = LogLimit::warn("dead-lettering a delivery");
static RETRYING: LogLimit = LogLimit::warn("a delivery failed; it will be delivered again");
static NOT_DEAD_LETTERED: LogLimit = LogLimit::warn("could not dead-letter a delivery; it will be delivered again");
static DUPLICATE: LogLimit = LogLimit::info("the job is running under a live lease; acknowledged as a duplicate");
static ALIVE_ELSEWHERE: LogLimit = LogLimit::info("the job's run is alive elsewhere; leaving its entry pending");

pub(crate) struct Work<H> {
    pub store: Store,
    /// The delivery's queue: its priority level's stream.
    pub queue: Queue,
    /// Every level of the queue, whose reads may start the jobs they
    /// deliver: a run that ends takes its next job with its end.
    pub levels: Levels,
    /// The runner has a rate limit, which every start must ask.
    pub rate_limited: bool,
    /// Whether the queue is paused, as the runner last saw it.
    pub paused: Arc<AtomicBool>,
    /// The queue's normal level, whose keys the per-user slots use (the
    /// metrics go through `tally`).
    pub base: Queue,
    pub handler: Arc<H>,
    pub consumer: String,
    pub heartbeat: Duration,
    pub lease: Duration,
    /// The jobs this runner runs, with their run ids.
    pub running: Arc<Mutex<HashMap<String, String>>>,
    /// The runner's phase: a run is stopped once it is `Stopping`.
    pub control: RunnerControl,
    /// The queue's retry policy, for jobs without their own.
    pub retry: RetryPolicy,
    /// At most this many jobs of one user run at once, across runners.
    pub per_user: Option<u32>,
    /// The runs woken by cancel events.
    pub cancels: Cancels,
    /// How deliveries ended, counted on the queue's metrics in batches.
    pub tally: Tally,
}

impl<H: JobHandler> Work<H> {
    /// Processes one delivery. Never fails: whatever goes wrong with a
    /// delivery (an entry without a valid job id, a job that is gone or does
    /// not decode, a status write that fails, a handler that fails or panics)
    /// counts as one delivery of it; it stays pending and is delivered again
    /// until the queue's maximum, and then goes to the dead letters with the
    /// reason (see [`poison`](Self::poison)).
    ///
    /// `place` is the run's place among the runner's concurrent runs: it is
    /// given back as soon as the handler ended, so that the runner reads the
    /// next delivery while this one's outcome is written (both go out
    /// together on the store's connection), unless the run's end takes the
    /// next delivery itself (`lane`): then it goes to `next` with what the
    /// end took.
    pub(crate) async fn process_one(
        &self,
        delivery: &Delivery,
        place: OwnedSemaphorePermit,
        next: &mut Option<TakenNext>,
    ) -> Done {
        let mut began = false;
        match self.try_process(delivery, place, next, &mut began).await {
            Ok(done) => done,
            Err(reason) => {
                if !began {
                    self.undo_read_start(delivery, &reason).await;
                }
                self.poison(delivery, &reason).await
            }
        }
    }

    async fn try_process(
        &self,
        delivery: &Delivery,
        place: OwnedSemaphorePermit,
        next: &mut Option<TakenNext>,
        began: &mut bool,
    ) -> std::result::Result<Done, String> {
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
        // The lease runs from no earlier than this (Redis's clock reads the
        // start after it), so a deadline counted from here is never late.
        let leased_at = tokio::time::Instant::now();
        let slot = match UserSlot::take(&mut conn, &self.base, self.per_user, delivery, &job_id, self.lease).await? {
            Taken::Unlimited => None,
            Taken::Slot(slot) => Some(slot),
            Taken::Parked { user } => {
                self.ack(delivery).await?;
                tracing::info!(job = %job_id, user = %user, "job parked: its user has every slot taken");
                return Ok(Done::Parked);
            }
        };
        // The job as the read that delivered it saw it, when that read
        // looked (and it decodes): else `start` reads it.
        let as_read = Job::key_for(&job_id)
            .ok()
            .and_then(|key| delivery.entity_as_read::<Job>(&key))
            .and_then(Result::ok);
        let user = delivery.field("user_id");
        let start = match as_read {
            // The read that delivered it started it.
            Some((_, Some(job))) if started_by_read(delivery, &job) => Ok(Start::Started(Box::new(job))),
            as_read => Job::start_as_read(&mut conn, as_read, &job_id, &delivery.id, user, self.lease).await,
        };
        // A job that does not start here gives its slot back, unless
        // another run holds it (the slot is the job's).
        let slot = match (slot, &start) {
            (Some(slot), Ok(Start::Started(_))) => Some(slot),
            (Some(slot), Err(_) | Ok(Start::Over(_) | Start::ForeignEntry { .. })) => {
                slot.release(&mut conn).await;
                None
            }
            _ => None,
        };
        let job = match start {
            Ok(Start::Started(job)) => *job,
            Ok(Start::Over(_)) => {
                // A duplicate delivery of a job that already ended.
                self.ack(delivery).await?;
                return Ok(Done::Skipped);
            }
            Ok(Start::Leased(lease)) if lease.entry.as_deref() == Some(delivery.id.as_str()) => {
                // This very entry's run is alive elsewhere (its runner missed
                // a heartbeat): leave the entry pending for that run to finish.
                if let Some(held_back) = ALIVE_ELSEWHERE.admit() {
                    tracing::info!(job = %job_id, entry = %delivery.id, "the job's run is alive elsewhere; leaving its entry pending{held_back}");
                }
                return Ok(Done::Skipped);
            }
            Ok(Start::Leased(_)) => {
                // A second entry for a job that is running: the run holding
                // the lease owns the job, its own entry stays pending.
                if let Some(held_back) = DUPLICATE.admit() {
                    tracing::info!(job = %job_id, entry = %delivery.id, "the job is running under a live lease; acknowledged as a duplicate{held_back}");
                }
                self.ack(delivery).await?;
                return Ok(Done::Skipped);
            }
            Ok(Start::ForeignEntry { .. }) => {
                return Err(FOREIGN.into());
            }
            Err(e) if e.is_not_found() => return Err("the job does not exist".into()),
            Err(e) => return Err(format!("the job cannot be read or started: {e}")),
        };
        let run_id = job.run_id.clone().unwrap_or_default();
        *began = true;
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job_id.clone(), run_id.clone());
        let started = job.clone();
        tracing::info!(job = %job_id, user = %job.user_id, delivery = delivery.deliveries, entry = %delivery.id, "job started");
        self.tally.started(&job);
        let clock = std::time::Instant::now();
        let (ended, lines) = self.run_handler(job, &run_id, delivery, leased_at, slot.as_ref()).await;
        // The handler is done: its place goes to the next delivery, which
        // the run's end takes itself when it can.
        let place = self.may_take_next(&ended, slot.is_some()).then_some(place);
        // The run is over here (whatever its outcome is written as): its
        // slot goes back, unless another run took the job over.
        if let Some(slot) = slot
            && !matches!(ended, Ended::LeaseLost)
        {
            slot.release(&mut conn).await;
        }
        let failure = |reason: String| JobOutcome {
            exit_code: None,
            error: Some(reason),
        };
        // What the run's end writes on the job, and what becomes of the delivery.
        let policy = started.retry.clone().unwrap_or_else(|| self.retry.clone());
        let (to, outcome) = match ended {
            // Another run holds the job now: it writes the status, and this
            // delivery is left to it (never acknowledged here).
            Ended::LeaseLost => {
                self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&job_id);
                return Ok(Done::LeaseLost);
            }
            Ended::Released => {
                let released = release_at_shutdown(&mut conn, &job_id, &run_id).await;
                self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&job_id);
                if released {
                    tracing::info!(job = %job_id, duration_secs = clock.elapsed().as_secs_f64(), output_lines = lines, "job stopped at shutdown; back to the queue");
                    return Ok(Done::Released);
                }
                return Ok(Done::Unreleased);
            }
            Ended::Cancelled => (Finish::Cancelled, failure("cancelled".into())),
            Ended::Returned(Ok(0)) => (
                Finish::Succeeded,
                JobOutcome {
                    exit_code: Some(0),
                    error: None,
                },
            ),
            // A non-zero exit code is the job's result, unless the policy
            // lists it as one to retry.
            Ended::Returned(Ok(code)) => {
                let outcome = JobOutcome {
                    exit_code: Some(code),
                    error: None,
                };
                (
                    Finish::Failed {
                        retryable: policy.retries_exit_code(code),
                    },
                    outcome,
                )
            }
            Ended::Returned(Err(f)) => {
                let outcome = JobOutcome {
                    exit_code: f.exit_code,
                    error: Some(f.reason),
                };
                (Finish::Failed { retryable: f.retry }, outcome)
            }
        };
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&job_id);
        let end = End {
            started,
            to,
            outcome,
            policy,
            clock,
            lines,
        };
        self.record_end(&mut conn, delivery, &job_id, end, place, next).await
    }

    async fn ack(&self, delivery: &Delivery) -> std::result::Result<(), String> {
        self.queue
            .ack(&mut self.store.clone(), &[&delivery.id])
            .await
            .map(drop)
            .map_err(|e| format!("the delivery could not be acknowledged: {e}"))
    }
}
