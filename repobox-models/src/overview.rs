//! The queue at a glance, read in a fixed number of calls whatever its size
//! (never a `SCAN`): what `/metrics` exports as gauges.

use repobox_orm::Queue;
use repobox_orm::prelude::ConnectionLike;

use crate::{JOBS_GROUP, JOBS_STREAM, Job, JobStatus, Priority, Result};

/// One priority level's stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LevelOverview {
    /// The level (`high`, `normal`, `low`).
    pub level: Priority,
    /// Its stream.
    pub stream: String,
    /// Entries its stream holds (delivered or not, until trimmed).
    pub length: u64,
    /// Entries no consumer has been handed yet (the group's lag).
    pub waiting: u64,
    /// Deliveries not acknowledged yet.
    pub pending: u64,
    /// Consumers of its group.
    pub consumers: u64,
    /// Its dead letters.
    pub dead: u64,
}

/// The job queue (`jobs:stream` and its levels) at a glance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Overview {
    /// Jobs per status (the status indexes' sizes), in [`JobStatus::ALL`]'s order.
    pub jobs: Vec<(JobStatus, u64)>,
    /// Each priority level, highest first.
    pub levels: Vec<LevelOverview>,
    /// Since when (unix millis) the queue is paused; `None`: it is not.
    pub paused_since: Option<i64>,
}

impl Overview {
    /// Reads the overview: a count of each status index, five reads of
    /// each level and one of the pause, however many jobs, entries or keys
    /// there are. A level never used yet counts
    /// its entries as waiting, as its group will be made from its start.
    pub async fn read<C: ConnectionLike + Send>(conn: &mut C) -> Result<Overview> {
        let mut jobs = Vec::with_capacity(JobStatus::ALL.len());
        for status in JobStatus::ALL {
            jobs.push((status, Job::count_by_status(conn, status).await?));
        }
        let mut levels = Vec::with_capacity(Priority::LEVELS.len());
        for level in Priority::LEVELS {
            let q = Queue::new(level.stream(JOBS_STREAM).into_owned(), JOBS_GROUP);
            let length = q.len(conn).await?;
            let (waiting, pending, consumers) =
                match (q.waiting(conn).await, q.pending(conn).await, q.consumers(conn).await) {
                    (Ok(w), Ok(p), Ok(c)) => (w, p.count, u64::try_from(c.len()).unwrap_or(u64::MAX)),
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) if e.is_missing_group() => (length, 0, 0),
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Err(e.into()),
                };
            levels.push(LevelOverview {
                level,
                stream: q.stream().to_owned(),
                length,
                waiting,
                pending,
                consumers,
                dead: q.dead_len(conn).await?,
            });
        }
        let paused_since = Queue::new(JOBS_STREAM, JOBS_GROUP).paused_since(conn).await?;
        Ok(Overview {
            jobs,
            levels,
            paused_since,
        })
    }

    /// How many jobs have `status`.
    pub fn jobs_with(&self, status: JobStatus) -> u64 {
        self.jobs.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n)
    }

    /// The level `level`.
    pub fn level(&self, level: Priority) -> Option<&LevelOverview> {
        self.levels.iter().find(|l| l.level == level)
    }
}
