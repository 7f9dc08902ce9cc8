//! A runner's read that starts the jobs it delivers ([`JobStart`]), and the
//! end of a run that takes the next job with it ([`Job::end_run_and_take`]):
//! on one server, a job at steady state costs one round trip, as BullMQ's
//! `moveToFinished` does.

use std::time::Duration;

use repobox_orm::Queue;
use repobox_orm::prelude::ConnectionLike;
use repobox_orm::queue::{Computed, Finish, PreparedStart, StartTemplate};

use super::events::status_event;
use super::lease::lease_millis;
use super::{JOB_EVENTS, Job, JobOutcome, JobPatch, JobStatus, StatusChange};
use crate::{Error, Result};

/// The start that a runner's read writes on each job it delivers, in the
/// same atomic step ([`Queue::take`]): what [`Job::start`] writes on a
/// queued job that never ran (its status, `started_at`, a new run id, the
/// entry, the lease by Redis's clock, the history entry appended in place
/// and the status event), when the entry names the job's user. Any other
/// job (one to take over, a retry, a job the read cannot start) is
/// delivered unstarted, and the runner starts it with [`Job::start_as_read`].
#[derive(Debug)]
pub struct JobStart {
    prepared: PreparedStart<Job>,
}

impl JobStart {
    /// The start of a run with a lease of `lease` (at most a day).
    pub fn new(lease: Duration) -> Result<JobStart> {
        let lease_ms = lease_millis(lease)?;
        // The history entry as serde writes it, around its time.
        const AT: i64 = i64::MIN;
        let entry = serde_json::to_string(&StatusChange::new(JobStatus::Running, AT, None)).map_err(|e| {
            Error::from(repobox_orm::Error::Encode {
                field: "history",
                message: e.to_string(),
            })
        })?;
        let at = AT.to_string();
        let (before, after) = entry.split_once(&at).ok_or_else(|| {
            Error::from(repobox_orm::Error::Encode {
                field: "history",
                message: "a history entry without its time".into(),
            })
        })?;
        let patch = JobPatch {
            status: Some(JobStatus::Running),
            history: Some(Vec::new()),
            started_at: Some(Some(0)),
            finished_at: Some(None),
            exit_code: Some(None),
            error: Some(None),
            cancel_requested_at: Some(None),
            run_id: Some(Some(String::new())),
            run_entry: Some(Some(String::new())),
            lease_until: Some(Some(0)),
            progress: Some(None),
            progress_message: Some(None),
            ..Default::default()
        };
        let expected = JobPatch {
            status: Some(JobStatus::Queued),
            started_at: Some(None),
            run_id: Some(None),
            lease_until: Some(None),
            ..Default::default()
        };
        let event = status_event("", JobStatus::Running, "");
        let prepared = StartTemplate::new(&patch, &expected)
            .computed("started_at", Computed::Clock { plus_ms: 0 })
            .computed("lease_until", Computed::Clock { plus_ms: lease_ms })
            .computed("run_id", Computed::RandomId)
            .computed("run_entry", Computed::EntryId)
            .computed(
                "history",
                Computed::AppendToArray {
                    before: before.into(),
                    after: after.into(),
                },
            )
            .entry_names("user_id", "user_id")
            .append(
                JOB_EVENTS,
                event
                    .iter()
                    .map(|(name, value)| {
                        let value = match *name {
                            "job_id" => Computed::EntityId,
                            "at" => Computed::Clock { plus_ms: 0 },
                            _ => Computed::Text((*value).into()),
                        };
                        (*name, value)
                    })
                    .collect(),
            )
            .prepare()?;
        Ok(JobStart { prepared })
    }

    /// The template as [`Queue::take`] sends it.
    pub fn prepared(&self) -> &PreparedStart<Job> {
        &self.prepared
    }
}

/// What [`Job::end_run_and_take`] did.
#[derive(Debug)]
pub struct EndAndTake {
    /// The run's end, as [`Job::end_run`] answers it.
    pub ended: Result<Job>,
    /// The next deliveries, each with the index of its queue.
    pub next: Vec<(usize, repobox_orm::Delivery)>,
}

/// Where [`Job::end_run_and_take`] takes the next jobs from.
#[derive(Debug, Clone, Copy)]
pub struct Next<'a> {
    /// The queues (priority levels), read in this order.
    pub queues: &'a [&'a Queue],
    /// The runner's consumer name.
    pub consumer: &'a str,
    /// How many jobs at most.
    pub count: usize,
    /// How each is started.
    pub start: &'a JobStart,
}

impl Job {
    /// Undoes a start that a read made ([`JobStart`]) when the runner cannot
    /// go on with the delivery (an entry it refuses, a job it cannot
    /// decode): the job, still `running` under run `run_id`, goes back to
    /// `queued` without its run (its `started_at`, run, entry and lease
    /// removed; its history keeps the entry the start appended, which the
    /// runner could not decode to rewrite). Written without decoding the
    /// job, so that a hash that does not decode is not left `running`.
    /// `Ok(false)` when the run no longer holds it.
    pub async fn undo_start<C: ConnectionLike + Send>(conn: &mut C, id: &str, run_id: &str, now: i64) -> Result<bool> {
        let patch = JobPatch {
            status: Some(JobStatus::Queued),
            started_at: Some(None),
            run_id: Some(None),
            run_entry: Some(None),
            lease_until: Some(None),
            ..Default::default()
        };
        let expected = JobPatch {
            status: Some(JobStatus::Running),
            run_id: Some(Some(run_id.to_owned())),
            ..Default::default()
        };
        let at = now.to_string();
        let event = status_event(id, JobStatus::Queued, &at);
        match Job::update_if_and_append(conn, id, &patch, &expected, JOB_EVENTS, &event).await {
            Ok(_) => Ok(true),
            Err(repobox_orm::Error::Conflict { .. }) => Ok(false),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// [`Job::end_run`], writing the end and taking the next jobs (each
    /// started as [`JobStart`] says) in one round trip ([`Queue::take`]), on
    /// one server. When the end cannot go in that one call (the job changed
    /// since the run started it), it goes on as `end_run` does.
    pub async fn end_run_and_take<C: ConnectionLike + Send>(
        conn: &mut C,
        run: Job,
        to: JobStatus,
        now: i64,
        outcome: JobOutcome,
        (queue, entry): (&Queue, &str),
        next: Next<'_>,
    ) -> Result<EndAndTake> {
        let (patch, expected) = match super::transition_write(&run, Some(&run.run_id), to, now, &outcome) {
            Ok(write) => write,
            Err(e) => {
                return Ok(EndAndTake {
                    ended: Err(e),
                    next: Vec::new(),
                });
            }
        };
        let at = now.to_string();
        let event = status_event(&run.id, to, &at);
        let finish = Finish {
            id: &run.id,
            patch: &patch,
            expected: &expected,
            append: Some((JOB_EVENTS, &event)),
            ack: Some((queue, entry)),
        };
        let taken = Queue::take::<Job, C>(
            conn,
            next.queues,
            next.consumer,
            next.count,
            "job_id",
            Some(next.start.prepared()),
            Some(finish),
        )
        .await?;
        let ended = match taken.finished {
            Some(Ok(_)) => {
                let mut job = run;
                patch.apply_to(&mut job);
                Ok(job)
            }
            // It changed since: decided again from what it holds now.
            Some(Err(repobox_orm::Error::Conflict { .. })) | None => {
                Job::end_run(conn, run, to, now, outcome, (queue, entry)).await
            }
            Some(Err(e)) => Err(e.into()),
        };
        Ok(EndAndTake {
            ended,
            next: taken.deliveries,
        })
    }
}
