//! The dead letters of every priority level: listed, requeued with their
//! job, deleted. What `repobox queue dead|requeue-dead` and the web UI's
//! dead-letter page call.

use repobox_orm::Queue;
use repobox_orm::prelude::ConnectionLike;
use repobox_orm::queue::Entry;

use crate::{JOBS_GROUP, JOBS_STREAM, Job, JobOutcome, JobStatus, Priority, Result, now_millis};

/// One dead letter and the priority level it died on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The level whose stream the entry came from.
    pub level: Priority,
    /// The dead letter: its original fields and `original_id`, `reason`,
    /// `deliveries`, `consumer`, `dead_at`.
    pub entry: Entry,
}

impl DeadLetter {
    /// A field of the letter.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.entry.fields.get(name).map(String::as_str)
    }
}

/// The queue of each priority level, highest first (the normal one is
/// `jobs:stream`).
pub fn level_queues() -> impl Iterator<Item = (Priority, Queue)> {
    Priority::LEVELS
        .into_iter()
        .map(|level| (level, Queue::new(level.stream(JOBS_STREAM).into_owned(), JOBS_GROUP)))
}

impl Job {
    /// Up to `limit` dead letters in all, highest level first, oldest first
    /// within a level.
    pub async fn dead_letters<C: ConnectionLike + Send>(conn: &mut C, limit: usize) -> Result<Vec<DeadLetter>> {
        let mut dead = Vec::new();
        for (level, q) in level_queues() {
            let left = limit.saturating_sub(dead.len());
            if left == 0 {
                break;
            }
            let letters = q.dead_letters(conn, "-", left).await?;
            dead.extend(letters.into_iter().map(|entry| DeadLetter { level, entry }));
        }
        Ok(dead)
    }

    /// Puts the dead letters named by `ids` (`None`: all of them) back on
    /// their own level's stream. A letter's job, when it is `failed`, goes
    /// back to `queued` first (with a history entry), then the entry onto
    /// the stream: a runner that reads the entry at once finds the job
    /// queued, not failed. Returns the letters requeued.
    pub async fn requeue_dead<C: ConnectionLike + Send>(
        conn: &mut C,
        ids: Option<&[String]>,
    ) -> Result<Vec<DeadLetter>> {
        let mut done = Vec::new();
        for (level, q) in level_queues() {
            for entry in q.dead_letters(conn, "-", usize::MAX).await? {
                if ids.is_some_and(|ids| !ids.contains(&entry.id)) {
                    continue;
                }
                if let Some(job_id) = entry.fields.get("job_id")
                    && let Ok(Some(job)) = Job::get(conn, job_id.as_str()).await
                    && job.status == JobStatus::Failed
                {
                    Job::update_status_from(conn, job, JobStatus::Queued, now_millis(), JobOutcome::default()).await?;
                }
                q.requeue_letter(conn, &entry).await?;
                done.push(DeadLetter { level, entry });
            }
        }
        Ok(done)
    }

    /// Deletes the dead letters named by `ids` from every level; returns how
    /// many there were. Their jobs stay as they are.
    pub async fn delete_dead<C: ConnectionLike + Send>(conn: &mut C, ids: &[String]) -> Result<u64> {
        let mut removed = 0u64;
        for (_, q) in level_queues() {
            removed = removed.saturating_add(q.delete_dead(conn, ids).await?);
        }
        Ok(removed)
    }
}
