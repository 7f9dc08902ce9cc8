//! A job's status and the moves between them.

use repobox_orm::prelude::RedisValue;

/// Where a job is in its life.
#[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting in `jobs:stream`.
    Queued,
    /// Waiting for its `run_at` (enqueued for later), in `jobs:delayed`.
    Delayed,
    /// A run failed and the job waits for its `run_at` (the backoff) to run
    /// again, in `jobs:delayed`.
    Retrying,
    /// A runner has it.
    Running,
    /// Finished with exit code 0.
    Succeeded,
    /// Finished with an error or a non-zero exit code.
    Failed,
    /// Stopped before it finished.
    Cancelled,
}

impl JobStatus {
    /// Whether a job may move from `self` to `to`. A running job is never
    /// started again by a status write: only [`Job::start`](super::Job::start) takes a running
    /// job over, and only once its run's lease has expired; a failed run
    /// may wait to be retried; a delayed or retrying job is queued when due
    /// (or cancelled); a failed job may be queued again; succeeded and
    /// cancelled are final.
    pub fn can_become(self, to: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, to),
            (Queued, Running | Failed | Cancelled)
                | (Running, Succeeded | Failed | Cancelled | Queued | Retrying)
                | (Delayed | Retrying, Queued | Cancelled)
                | (Failed, Queued)
        )
    }

    /// Whether the job waits in `jobs:delayed` for its `run_at`.
    pub fn is_scheduled(self) -> bool {
        matches!(self, JobStatus::Delayed | JobStatus::Retrying)
    }

    /// Every status, in the order of a job's life.
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Delayed,
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Retrying,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// Whether the job is over.
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
