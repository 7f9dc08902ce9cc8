//! Following one job as it runs: its output lines and its state, woken by
//! `jobs:events` (blocking reads on a connection of their own) instead of
//! polling, with a look of its own every few seconds in case an event was
//! not written (another client's writes). What `repobox jobs tail -f` and
//! the web UI's job page follow.

use std::time::Duration;

use repobox_orm::Store;

use crate::{Error, Job, JobEvent, OutputRange, Result};

/// How long one blocking read of `jobs:events` waits.
const EVENT_WAIT: Duration = Duration::from_secs(1);

/// How often the job is looked at without an event.
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// A job being followed.
pub struct Follow {
    store: Store,
    events: Store,
    id: String,
    /// The last event seen.
    after: String,
    /// Output lines handed out so far.
    seen: isize,
    looked: bool,
}

/// What changed since the last [`Follow::next`].
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The job as it is now.
    pub job: Job,
    /// Output lines it printed since, in order.
    pub lines: Vec<String>,
    /// Whether the job is over and every line of it handed out: nothing
    /// more will come.
    pub done: bool,
}

impl Follow {
    /// Starts following job `id`: the first [`next`](Follow::next) reads it
    /// at once; events from before that read are covered by it.
    pub async fn start(store: &Store, id: &str) -> Result<Follow> {
        let mut conn = store.clone();
        let after = JobEvent::last_id(&mut conn).await?;
        Ok(Follow {
            store: store.clone(),
            events: store.dedicated(Some(EVENT_WAIT)),
            id: id.to_owned(),
            after,
            seen: 0,
            looked: false,
        })
    }

    /// Hands out output lines from line `n` (0-based) on: the lines before
    /// were shown already.
    pub fn from_line(mut self, n: isize) -> Follow {
        self.seen = n.max(0);
        self
    }

    /// The job's state and new lines: at once the first time, then after an
    /// event of the job (or the look of every few seconds). `Err(NotFound)`
    /// when the job is gone.
    pub async fn next(&mut self) -> Result<Update> {
        if self.looked {
            self.wait().await;
        }
        self.looked = true;
        let mut conn = self.store.clone();
        let job = Job::get(&mut conn, self.id.as_str()).await?.ok_or_else(|| {
            Error::Orm(repobox_orm::Error::NotFound {
                key: format!("job:{}", self.id),
            })
        })?;
        let lines = Job::output(
            &mut conn,
            &self.id,
            OutputRange {
                start: self.seen,
                end: -1,
            },
        )
        .await?;
        self.seen = self
            .seen
            .saturating_add(isize::try_from(lines.len()).unwrap_or(isize::MAX));
        let done = job.status.is_final() && lines.is_empty();
        Ok(Update { job, lines, done })
    }

    /// Until an event of the job, or the look of every few seconds.
    async fn wait(&mut self) {
        let deadline = tokio::time::Instant::now() + LOOK_EVERY;
        while tokio::time::Instant::now() < deadline {
            match JobEvent::read(&mut self.events, &self.after, Some(EVENT_WAIT), 100).await {
                Ok(read) => {
                    if let Some(last) = read.last() {
                        self.after = last.id.clone();
                    }
                    if read.iter().any(|e| e.job_id == self.id) {
                        return;
                    }
                }
                Err(_) => tokio::time::sleep(EVENT_WAIT).await,
            }
        }
    }
}
