use std::time::Duration;

use repobox_orm::prelude::{ConnectionLike, Listing, Page, RedisEntity};

use crate::{Error, Result};

mod dead;
mod enqueue;
mod events;
mod follow;
mod lease;
mod output;
mod priority;
mod retention;
mod retry;
mod schedule;
mod status;
mod take;

pub use dead::{DeadLetter, level_queues};
use events::write_status;
pub use events::{EVENTS_KEPT, JOB_EVENTS, JobEvent};
pub use follow::{Follow, Update};
pub use lease::{Lease, Start};
pub use output::OutputRange;
pub use priority::Priority;
pub use retention::Purged;
pub use retry::{Backoff, BackoffKind, RetryPolicy};
pub use schedule::Promoted;
pub use status::JobStatus;
pub use take::{EndAndTake, JobStart, Next};

/// The stream jobs travel through.
pub const JOBS_STREAM: &str = "jobs:stream";
/// The consumer group of the runners.
pub const JOBS_GROUP: &str = "runners";
/// How long a job's output list lives after its last line: 24 hours.
pub const JOB_OUTPUT_TTL: Duration = Duration::from_millis(JOB_OUTPUT_TTL_MS);
/// [`JOB_OUTPUT_TTL`] in milliseconds, as `PEXPIRE` and the schema take it.
pub(crate) const JOB_OUTPUT_TTL_MS: u64 = 24 * 3600 * 1000;

/// A job: a repository to build, owned by a user.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("job:<id>")]
#[index(sorted = "jobs:user:<user_id>", score = created_at)]
#[index(sorted = "jobs:status:<status>", score = created_at)]
#[index(sorted = "jobs:delayed", score = run_at, name = "due")]
pub struct Job {
    /// The job's id.
    pub id: String,
    /// The user who created it.
    pub user_id: String,
    /// The repository to run.
    pub repo_url: String,
    /// Where the job is.
    pub status: JobStatus,
    /// Unix millis.
    pub created_at: i64,
    /// Unix millis when a runner started it.
    pub started_at: Option<i64>,
    /// Unix millis when it ended.
    pub finished_at: Option<i64>,
    /// The exit code of a finished job (`exit_code`, as the web app writes
    /// it; hashes written before it was renamed hold `exit`, which is read
    /// while `exit_code` is absent and removed by the next write of it).
    #[redis(alias = "exit")]
    pub exit_code: Option<i32>,
    /// Why it failed.
    pub error: Option<String>,
    /// How often it was started.
    #[redis(default)]
    pub retries: u32,
    /// Environment for the run.
    #[redis(json, default)]
    pub env: Vec<(String, String)>,
    /// Every status the job went through, oldest first.
    #[redis(json, default)]
    pub history: Vec<StatusChange>,
    /// Unix millis when someone asked to cancel the running job; its runner
    /// sees it and ends the job `cancelled`.
    pub cancel_requested_at: Option<i64>,
    /// The run that holds the job while it is `running` (and the last one
    /// that did, after): a random id that [`Job::start`] writes. Every status
    /// write of a run checks it, so a runner that lost its lease cannot
    /// overwrite the run that replaced it.
    pub run_id: Option<String>,
    /// The `jobs:stream` entry whose delivery started that run.
    pub run_entry: Option<String>,
    /// Unix millis, by Redis's clock, until which the run's lease holds; the
    /// runner renews it while the job runs, and removes it when the job
    /// leaves `running`. A running job whose lease has passed (or that has
    /// none) may be taken over by exactly one other delivery.
    pub lease_until: Option<i64>,
    /// Unix millis, by Redis's clock, when a `delayed` or `retrying` job is
    /// due: a runner then puts it on the stream. Only those jobs have it, and
    /// only they are in `jobs:delayed` (scored by it).
    pub run_at: Option<i64>,
    /// The job's own retry policy; `None`: the runner's.
    #[redis(json)]
    pub retry: Option<RetryPolicy>,
    /// Which of the queue's streams the job waits on; `None`: `normal`.
    pub priority: Option<Priority>,
    /// How far the running job is, 0-100, as its run last reported.
    pub progress: Option<u8>,
    /// What the run last said with its progress.
    pub progress_message: Option<String>,
}

/// What [`Job::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// The job was queued: it is cancelled now.
    Cancelled,
    /// The job is running: its runner was asked to stop it.
    Requested,
}

/// One entry of a job's status history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatusChange {
    /// The status the job entered.
    pub status: JobStatus,
    /// When, in unix millis.
    pub at: i64,
    /// Why, when a job failed, was put back or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The attempt that ended, when a run failed and will be retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// When a `delayed` or `retrying` job is due (unix millis, Redis's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<i64>,
}

impl StatusChange {
    /// An entry: the job entered `status` at `at`, for `reason`.
    pub fn new(status: JobStatus, at: i64, reason: Option<String>) -> StatusChange {
        StatusChange {
            status,
            at,
            reason,
            attempt: None,
            run_at: None,
        }
    }
}

impl Job {
    /// A new queued job.
    pub fn new(id: impl Into<String>, user_id: impl Into<String>, repo_url: impl Into<String>, now: i64) -> Job {
        Job {
            id: id.into(),
            user_id: user_id.into(),
            repo_url: repo_url.into(),
            status: JobStatus::Queued,
            created_at: now,
            started_at: None,
            finished_at: None,
            exit_code: None,
            error: None,
            retries: 0,
            env: Vec::new(),
            history: vec![StatusChange::new(JobStatus::Queued, now, None)],
            cancel_requested_at: None,
            run_id: None,
            run_entry: None,
            lease_until: None,
            run_at: None,
            retry: None,
            priority: None,
            progress: None,
            progress_message: None,
        }
    }

    /// The attempt a run of the job is (1 for the first run): how often it
    /// was started.
    pub fn attempt(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// Moves the job to `to` at `now`, setting `started_at` when it starts and
    /// `finished_at` (with `exit_code` / `error`) when it ends. An impossible
    /// move (succeeded -> running) is `Err(InvalidTransition)`; a status that
    /// changed since it was read is re-read and checked again.
    pub async fn update_status<C: ConnectionLike + Send>(
        conn: &mut C,
        id: &str,
        to: JobStatus,
        now: i64,
        outcome: JobOutcome,
    ) -> Result<Job> {
        Job::transition(conn, id, None, None, to, now, outcome, None).await
    }

    /// [`Job::update_status`] starting from a copy of the job that the caller
    /// just read (one round trip instead of two); if the job changed since,
    /// it is read again and the move checked again. A copy of a running job
    /// is a run's copy: the move is made only while that run (its `run_id`)
    /// still holds the job, else `Err(LeaseLost)`.
    pub async fn update_status_from<C: ConnectionLike + Send>(
        conn: &mut C,
        job: Job,
        to: JobStatus,
        now: i64,
        outcome: JobOutcome,
    ) -> Result<Job> {
        let id = job.id.clone();
        let run = (job.status == JobStatus::Running).then(|| job.run_id.clone());
        Job::transition(conn, &id, Some(job), run, to, now, outcome, None).await
    }

    /// Moves the job to `to` at `now` if, and only if, the run `run` (a
    /// `run_id`; `None`: a run that recorded none) holds it: the job is
    /// `running` with that `run_id`. Otherwise `Err(LeaseLost)`, and nothing
    /// is written. `ack`: a delivery (queue, entry id) acknowledged with the move.
    #[allow(clippy::too_many_arguments)]
    async fn transition<C: ConnectionLike + Send>(
        conn: &mut C,
        id: &str,
        mut known: Option<Job>,
        run: Option<Option<String>>,
        to: JobStatus,
        now: i64,
        outcome: JobOutcome,
        ack: Option<(&repobox_orm::Queue, &str)>,
    ) -> Result<Job> {
        for _ in 0..ATTEMPTS {
            let job = match known.take() {
                Some(job) => Some(job),
                None => Job::get(conn, id).await?,
            };
            let Some(mut job) = job else {
                return Err(not_found(id));
            };
            let (patch, expected) = transition_write(&job, run.as_ref(), to, now, &outcome)?;
            match write_status(conn, id, &patch, &expected, to, now, ack).await {
                Ok(()) => {
                    patch.apply_to(&mut job);
                    return Ok(job);
                }
                Err(repobox_orm::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(contention(id))
    }

    /// Cancels the job: a queued, delayed or retrying one at once, a running one by asking its
    /// runner (which sees a cancellation token and ends the job `cancelled`).
    /// A job that is over is `Err(InvalidTransition)`.
    pub async fn cancel<C: ConnectionLike + Send>(conn: &mut C, id: &str, now: i64) -> Result<Cancel> {
        let Some(job) = Job::get(conn, id).await? else {
            return Err(not_found(id));
        };
        match job.status {
            JobStatus::Running => {
                let patch = JobPatch {
                    cancel_requested_at: Some(Some(now)),
                    ..Default::default()
                };
                let expected = JobPatch {
                    status: Some(JobStatus::Running),
                    ..Default::default()
                };
                let at = now.to_string();
                let event = [("job_id", id), ("kind", "cancel"), ("at", at.as_str())];
                match Job::update_if_and_append(conn, id, &patch, &expected, JOB_EVENTS, &event).await {
                    Ok(_) => Ok(Cancel::Requested),
                    // It moved on since it was read: decide again.
                    Err(repobox_orm::Error::Conflict { .. }) => Box::pin(Job::cancel(conn, id, now)).await,
                    Err(e) => Err(e.into()),
                }
            }
            _ => {
                Job::update_status_from(conn, job, JobStatus::Cancelled, now, JobOutcome::default()).await?;
                Ok(Cancel::Cancelled)
            }
        }
    }

    /// The user's jobs, newest first; jobs that do not decode are reported in
    /// the listing's `errors`.
    pub async fn user_jobs<C: ConnectionLike + Send>(conn: &mut C, user_id: &str, page: Page) -> Result<Listing<Job>> {
        Ok(Job::by_user_id(conn, user_id, page).await?)
    }

    /// How many jobs the user has.
    pub async fn user_job_count<C: ConnectionLike + Send>(conn: &mut C, user_id: &str) -> Result<u64> {
        Ok(Job::count_by_user_id(conn, user_id).await?)
    }
}

/// How often a compare-and-set on a job is tried before it gives up.
const ATTEMPTS: u32 = 8;

/// The error of a compare-and-set on job `id` that lost [`ATTEMPTS`] races.
fn contention(id: &str) -> Error {
    match Job::key_for(id) {
        Ok(key) => repobox_orm::Error::Contention {
            key,
            attempts: ATTEMPTS,
        }
        .into(),
        Err(e) => e.into(),
    }
}

/// The error of job `id` being absent.
fn not_found(id: &str) -> Error {
    match Job::key_for(id) {
        Ok(key) => repobox_orm::Error::NotFound { key }.into(),
        Err(e) => e.into(),
    }
}

/// How a job ended, for [`Job::update_status`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobOutcome {
    /// The exit code, if the job ran to an end.
    pub exit_code: Option<i32>,
    /// The error, if it failed.
    pub error: Option<String>,
}

/// The write that moves `job` to `to` at `now` with `outcome`: the patch
/// (`started_at` when it starts, `finished_at` with `exit_code` and
/// `error` when it ends) and the compare-and-set's expected values. `run`:
/// the move is a run's, made only while that run (its `run_id`; `None`: a
/// run that recorded none) holds the job, else `Err(LeaseLost)`. An
/// impossible move is `Err(InvalidTransition)`.
pub(crate) fn transition_write(
    job: &Job,
    run: Option<&Option<String>>,
    to: JobStatus,
    now: i64,
    outcome: &JobOutcome,
) -> Result<(JobPatch, JobPatch)> {
    if let Some(run) = run
        && (job.status != JobStatus::Running || job.run_id != *run)
    {
        return Err(Error::LeaseLost {
            key: Job::key_for(&job.id)?,
        });
    }
    let from = job.status;
    if !from.can_become(to) {
        return Err(Error::InvalidTransition {
            key: Job::key_for(&job.id)?,
            from: from.to_string(),
            to: to.to_string(),
        });
    }
    let mut history = job.history.clone();
    history.push(StatusChange::new(to, now, outcome.error.clone()));
    let mut patch = JobPatch {
        status: Some(to),
        history: Some(history),
        ..Default::default()
    };
    match to {
        JobStatus::Running => {
            patch.cancel_requested_at = Some(None);
            patch.started_at = Some(Some(now));
            patch.finished_at = Some(None);
            patch.exit_code = Some(None);
            patch.error = Some(None);
            patch.retries = Some(job.retries.saturating_add(u32::from(job.started_at.is_some())));
        }
        JobStatus::Queued => {
            patch.finished_at = Some(None);
            patch.cancel_requested_at = Some(None);
        }
        _ => {
            patch.finished_at = Some(Some(now));
            patch.exit_code = Some(outcome.exit_code);
            patch.error = Some(outcome.error.clone());
        }
    }
    if to != JobStatus::Running {
        patch.lease_until = Some(None);
    }
    if from.is_scheduled() {
        patch.run_at = Some(None);
    }
    // Compare-and-set on what this transition was decided from: the
    // status, `started_at`, which every start changes, and the run
    // and its lease.
    let expected = JobPatch {
        status: Some(from),
        started_at: Some(job.started_at),
        created_at: Some(job.created_at),
        run_id: Some(job.run_id.clone()),
        lease_until: Some(job.lease_until),
        ..Default::default()
    };
    Ok((patch, expected))
}
