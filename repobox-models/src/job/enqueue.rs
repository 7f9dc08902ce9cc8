//! Putting jobs on their stream: one or many at creation, and a failed one
//! again; each on the stream of its priority.

use repobox_orm::prelude::ConnectionLike;

use super::{JOBS_GROUP, JOBS_STREAM, Job, JobOutcome, JobStatus, Priority, not_found};
use crate::{Error, Result};

impl Job {
    /// The stream of the job's priority on the queue of `base`.
    pub fn level_stream<'s>(&self, base: &'s str) -> std::borrow::Cow<'s, str> {
        self.priority.unwrap_or_default().stream(base)
    }

    /// The fields of the job's `jobs:stream` entry.
    pub(super) fn stream_entry<'j>(&'j self, enqueued_at: &'j str) -> [(&'static str, &'j str); 3] {
        [
            ("job_id", self.id.as_str()),
            ("user_id", self.user_id.as_str()),
            ("enqueued_at", enqueued_at),
        ]
    }

    /// Creates the job, its `jobs:user:<user_id>` entry and its `jobs:stream`
    /// entry (`job_id`, `user_id`, `enqueued_at`) in one atomic round trip.
    /// Creating the same job id twice is `Err(AlreadyExists)` and enqueues nothing.
    /// Returns the stream entry id.
    pub async fn create_and_enqueue<C: ConnectionLike + Send>(conn: &mut C, job: &Job, now: i64) -> Result<String> {
        Job::create_and_enqueue_on(conn, job, now, JOBS_STREAM).await
    }

    /// [`create_and_enqueue`](Self::create_and_enqueue) onto another stream
    /// (a namespace of its own, for a demo or a test).
    pub async fn create_and_enqueue_on<C: ConnectionLike + Send>(
        conn: &mut C,
        job: &Job,
        now: i64,
        stream: &str,
    ) -> Result<String> {
        let enqueued_at = now.to_string();
        let entry = job.stream_entry(&enqueued_at);
        Ok(Job::create_and_append(conn, job, &job.level_stream(stream), &entry).await?)
    }

    /// Creates and enqueues many jobs, each like
    /// [`create_and_enqueue`](Self::create_and_enqueue) (its hash, index
    /// entries and stream entry in one atomic write), many writes per round
    /// trip; per job its stream entry id or why it was not created (then
    /// nothing of it was enqueued).
    pub async fn create_and_enqueue_many<C: ConnectionLike + Send>(
        conn: &mut C,
        jobs: &[Job],
        now: i64,
    ) -> Result<Vec<Result<String>>> {
        Job::create_and_enqueue_many_on(conn, jobs, now, JOBS_STREAM).await
    }

    /// [`create_and_enqueue_many`](Self::create_and_enqueue_many) onto another stream.
    pub async fn create_and_enqueue_many_on<C: ConnectionLike + Send>(
        conn: &mut C,
        jobs: &[Job],
        now: i64,
        stream: &str,
    ) -> Result<Vec<Result<String>>> {
        let enqueued_at = now.to_string();
        let mut results: Vec<Option<Result<String>>> = jobs.iter().map(|_| None).collect();
        // One call per level, each job onto its level's stream.
        for level in Priority::LEVELS {
            let at: Vec<usize> = (0..jobs.len())
                .filter(|&i| jobs[i].priority.unwrap_or_default() == level)
                .collect();
            if at.is_empty() {
                continue;
            }
            let some: Vec<Job> = at.iter().map(|&i| jobs[i].clone()).collect();
            let entries: Vec<Vec<(&str, &str)>> = some.iter().map(|j| j.stream_entry(&enqueued_at).to_vec()).collect();
            let created = Job::create_and_append_many(conn, &some, &level.stream(stream), &entries).await?;
            for (i, r) in at.into_iter().zip(created) {
                results[i] = Some(r.map_err(Error::from));
            }
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(repobox_orm::Error::UnexpectedReply {
                        key: String::new(),
                        detail: "no outcome".into(),
                    }
                    .into())
                })
            })
            .collect())
    }

    /// Puts a failed (or dead-lettered) job back: status `queued` with a
    /// history entry, then a new entry on `jobs:stream`. Returns the entry id.
    /// A job that is not failed is `Err(InvalidTransition)`.
    pub async fn retry<C: ConnectionLike + Send>(conn: &mut C, id: &str, now: i64) -> Result<String> {
        let Some(job) = Job::get(conn, id).await? else {
            return Err(not_found(id));
        };
        if job.status != JobStatus::Failed {
            return Err(Error::InvalidTransition {
                key: Job::key_for(id)?,
                from: job.status.to_string(),
                to: JobStatus::Queued.to_string(),
            });
        }
        let job = Job::update_status_from(conn, job, JobStatus::Queued, now, JobOutcome::default()).await?;
        let enqueued_at = now.to_string();
        let entry = job.stream_entry(&enqueued_at);
        let queue = repobox_orm::Queue::new(job.level_stream(JOBS_STREAM), JOBS_GROUP);
        Ok(queue.enqueue(conn, &entry).await?)
    }
}
