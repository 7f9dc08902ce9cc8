//! Jobs for later: jobs enqueued to run at a time (`delayed`), failed runs
//! waiting for their backoff (`retrying`), and their promotion to the stream.
//!
//! Both wait in `jobs:delayed`, a partial sorted index of [`Job`] scored by
//! `run_at` (Redis's clock): a job is in it exactly while it has a `run_at`,
//! and the ORM keeps it there atomically with the job's hash (in order, and
//! healed on read, where a cluster splits the keys). Promotion is one
//! compare-and-set that makes the job `queued`, drops its `run_at` (so its
//! entry in `jobs:delayed`) and appends its stream entry in the same write:
//! of two runners promoting the same job, exactly one appends an entry.

use std::hash::BuildHasher;
use std::time::Duration;

use repobox_orm::Queue;
use repobox_orm::prelude::{ConnectionLike, Page};

use super::{ATTEMPTS, JOBS_STREAM, Job, JobOutcome, JobPatch, JobStatus, RetryPolicy, StatusChange, contention};
use crate::{Error, Result, redis_now};

static UNREADABLE: repobox_orm::queue::LogLimit =
    repobox_orm::queue::LogLimit::warn("a member of jobs:delayed cannot be read; left alone");

/// What [`Job::promote_due`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Promoted {
    /// The jobs put on the stream, with their entry ids.
    pub jobs: Vec<(String, String)>,
    /// Due jobs that another writer moved first (promoted, cancelled).
    pub raced: usize,
}

/// `now + ms`, refused where it would overflow.
fn later(now: i64, wait_ms: u64) -> Result<i64> {
    i64::try_from(wait_ms)
        .ok()
        .and_then(|ms| now.checked_add(ms))
        .ok_or_else(|| {
            repobox_orm::Error::InvalidArgument {
                name: "run_at",
                reason: format!("{wait_ms} ms after {now} is past the largest timestamp"),
            }
            .into()
        })
}

impl Job {
    /// Creates the job `delayed` until `run_at` (unix millis, by Redis's
    /// clock), with its index entries, in one atomic write. It has no stream
    /// entry until it is due: then a runner ([`Job::promote_due`]) queues it.
    /// A `run_at` in the past makes it due at once.
    pub async fn enqueue_at<C: ConnectionLike + Send>(conn: &mut C, job: &Job, run_at: i64) -> Result<()> {
        if let Some(policy) = &job.retry {
            policy.check()?;
        }
        let mut delayed = job.clone();
        delayed.status = JobStatus::Delayed;
        delayed.run_at = Some(run_at);
        let mut entry = StatusChange::new(JobStatus::Delayed, job.created_at, None);
        entry.run_at = Some(run_at);
        delayed.history = vec![entry];
        Ok(Job::create(conn, &delayed).await?)
    }

    /// [`Job::enqueue_at`] `after` from now by Redis's clock; returns the
    /// job's `run_at`.
    pub async fn enqueue_in<C: ConnectionLike + Send>(conn: &mut C, job: &Job, after: Duration) -> Result<i64> {
        let now = redis_now(conn).await?;
        let run_at = later(now, u64::try_from(after.as_millis()).unwrap_or(u64::MAX))?;
        Job::enqueue_at(conn, job, run_at).await?;
        Ok(run_at)
    }

    /// Queues up to `limit` jobs of `jobs:delayed` that are due by Redis's
    /// clock, oldest `run_at` first, on `stream` (`jobs:stream` for the
    /// models' queue): each one's status, `run_at` and stream entry in one
    /// write. Members of `jobs:delayed` whose job is gone or no longer
    /// waiting are dropped by the read.
    pub async fn promote_due<C: ConnectionLike + Send>(conn: &mut C, stream: &str, limit: usize) -> Result<Promoted> {
        let now = redis_now(conn).await?;
        // Scores are millis: exact in an f64 for the next 285,000 years.
        let due = Job::due(conn, Page::oldest(limit).scores(f64::NEG_INFINITY, now as f64)).await?;
        for e in &due.errors {
            if let Some(held_back) = UNREADABLE.admit() {
                tracing::warn!(error = %e, "a member of jobs:delayed cannot be read; left alone{held_back}");
            }
        }
        let mut promoted = Promoted::default();
        for job in due.items {
            let id = job.id.clone();
            match Job::promote(conn, job, now, stream, None).await? {
                Some(entry) => promoted.jobs.push((id, entry)),
                None => promoted.raced += 1,
            }
        }
        Ok(promoted)
    }

    /// Queues a `delayed` or `retrying` job now, on `jobs:stream`; returns
    /// its entry id. Any other status is `Err(InvalidTransition)`.
    pub async fn run_now<C: ConnectionLike + Send>(conn: &mut C, id: &str, now: i64) -> Result<String> {
        Job::run_now_on(conn, id, now, JOBS_STREAM).await
    }

    /// [`Job::run_now`] onto another stream.
    pub async fn run_now_on<C: ConnectionLike + Send>(
        conn: &mut C,
        id: &str,
        now: i64,
        stream: &str,
    ) -> Result<String> {
        for _ in 0..ATTEMPTS {
            let Some(job) = Job::get(conn, id).await? else {
                return Err(super::not_found(id));
            };
            if !job.status.is_scheduled() {
                return Err(Error::InvalidTransition {
                    key: Job::key_for(id)?,
                    from: job.status.to_string(),
                    to: JobStatus::Queued.to_string(),
                });
            }
            if let Some(entry) = Job::promote(conn, job, now, stream, Some("run now")).await? {
                return Ok(entry);
            }
        }
        Err(contention(id))
    }

    /// Moves a waiting job to `queued` with its stream entry, if it is still
    /// exactly as read; `None` if another writer moved it first.
    async fn promote<C: ConnectionLike + Send>(
        conn: &mut C,
        job: Job,
        now: i64,
        stream: &str,
        reason: Option<&str>,
    ) -> Result<Option<String>> {
        if !job.status.is_scheduled() {
            // Another writer's job with a `run_at` that does not wait for
            // it: the `run_at` goes, so it leaves `jobs:delayed` and cannot
            // hold up the jobs that do wait.
            let patch = JobPatch {
                run_at: Some(None),
                ..Default::default()
            };
            let expected = JobPatch {
                status: Some(job.status),
                run_at: Some(job.run_at),
                ..Default::default()
            };
            match Job::update_if(conn, &job.id, &patch, &expected).await {
                Ok(()) | Err(repobox_orm::Error::Conflict { .. } | repobox_orm::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(None);
        }
        let mut history = job.history.clone();
        history.push(StatusChange::new(JobStatus::Queued, now, reason.map(str::to_owned)));
        let patch = JobPatch {
            status: Some(JobStatus::Queued),
            run_at: Some(None),
            history: Some(history),
            ..Default::default()
        };
        let expected = JobPatch {
            status: Some(job.status),
            run_at: Some(job.run_at),
            started_at: Some(job.started_at),
            ..Default::default()
        };
        let enqueued_at = now.to_string();
        let entry = job.stream_entry(&enqueued_at);
        let stream = job.level_stream(stream);
        match Job::update_if_and_append(conn, &job.id, &patch, &expected, &stream, &entry).await {
            Ok(id) => Ok(Some(id)),
            Err(repobox_orm::Error::Conflict { .. } | repobox_orm::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Ends a failed run of the job (`run`: the run's copy, as
    /// [`Job::start`] returned it): `retrying` until a backoff from now by
    /// Redis's clock when `retryable` and the job (or else `policy`) allows
    /// another attempt; else `failed`. The history entry names the attempt
    /// and, for a retry, when it runs. `Err(LeaseLost)` if the run no longer
    /// holds the job.
    pub async fn fail_run<C: ConnectionLike + Send>(
        conn: &mut C,
        run: Job,
        outcome: JobOutcome,
        policy: &RetryPolicy,
        retryable: bool,
    ) -> Result<Job> {
        Job::fail_run_and_ack(conn, run, outcome, policy, retryable, None).await
    }

    /// [`Job::fail_run`], acknowledging the run's delivery (queue, entry id)
    /// in the same write (see [`Job::end_run`]) when the delivery is over:
    /// the job is `retrying`, or `failed` by a failure that is not
    /// retryable. A retryable failure of the last attempt acknowledges
    /// nothing: the caller dead-letters the delivery.
    pub async fn fail_run_and_ack<C: ConnectionLike + Send>(
        conn: &mut C,
        run: Job,
        outcome: JobOutcome,
        policy: &RetryPolicy,
        retryable: bool,
        ack: Option<(&Queue, &str)>,
    ) -> Result<Job> {
        // A policy another writer stored is taken within bounds.
        let policy = run.retry.clone().unwrap_or_else(|| policy.clone()).bounded();
        let attempt = run.attempt();
        let now = redis_now(conn).await?;
        if !retryable || attempt >= policy.max_attempts {
            return match ack.filter(|_| !retryable) {
                Some(ack) => Job::end_run(conn, run, JobStatus::Failed, now, outcome, ack).await,
                None => Job::update_status_from(conn, run, JobStatus::Failed, now, outcome).await,
            };
        }
        let random = std::collections::hash_map::RandomState::new().hash_one((&run.id, now));
        let run_at = later(now, policy.backoff.wait_ms(attempt, random))?;
        let mut change = StatusChange::new(JobStatus::Retrying, now, outcome.error.clone());
        change.attempt = Some(attempt);
        change.run_at = Some(run_at);
        let mut history = run.history.clone();
        history.push(change);
        let patch = JobPatch {
            status: Some(JobStatus::Retrying),
            history: Some(history),
            run_at: Some(Some(run_at)),
            lease_until: Some(None),
            finished_at: Some(Some(now)),
            exit_code: Some(outcome.exit_code),
            error: Some(outcome.error),
            ..Default::default()
        };
        let expected = JobPatch {
            status: Some(JobStatus::Running),
            started_at: Some(run.started_at),
            run_id: Some(run.run_id.clone()),
            ..Default::default()
        };
        match super::write_status(conn, &run.id, &patch, &expected, JobStatus::Retrying, now, ack).await {
            Ok(()) => {
                let mut job = run;
                patch.apply_to(&mut job);
                Ok(job)
            }
            Err(repobox_orm::Error::Conflict { .. }) => Err(Error::LeaseLost {
                key: Job::key_for(&run.id)?,
            }),
            Err(e) => Err(e.into()),
        }
    }
}
