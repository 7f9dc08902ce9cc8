//! Leases: at most one run of a job at a time.
//!
//! A delivery that starts a job takes a lease on it with [`Job::start`]: a
//! fresh `run_id`, the stream entry that started the run (`run_entry`) and an
//! expiry by Redis's clock (`lease_until`), written by the start's
//! compare-and-set. The runner renews the lease while the handler runs
//! ([`Job::renew_lease`]). Another delivery of the job finds the lease live
//! and does not run it ([`Start::Leased`]); only a lease that has passed can
//! be taken over, and the compare-and-set (on the status, `started_at`, the
//! run and its lease) lets exactly one delivery win. Every status write of a
//! run names its run ([`Job::update_status_from`] with the run's copy,
//! [`Job::release`]), so a runner that lost its lease cannot overwrite the
//! run that replaced it.

use std::time::Duration;

use repobox_orm::Queue;
use repobox_orm::prelude::ConnectionLike;

use super::{ATTEMPTS, Job, JobOutcome, JobPatch, JobStatus, StatusChange, contention, not_found};
use crate::{Error, Result, redis_now};

/// The longest lease a run may take: a day. Longer ones are refused, so the
/// arithmetic on Redis's clock stays far from overflowing.
const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);

/// Who holds a running job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The run's id.
    pub run_id: Option<String>,
    /// The stream entry whose delivery started the run.
    pub entry: Option<String>,
    /// Unix millis, by Redis's clock, until which the lease holds.
    pub until: i64,
}

/// What [`Job::start`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// This delivery holds the job now: the job as written, with its new
    /// `run_id` and `lease_until`.
    Started(Box<Job>),
    /// Another run holds a live lease on the job: this delivery must not
    /// run it.
    Leased(Lease),
    /// The job cannot be started: it is over (or failed, waiting for a
    /// retry); the status it is in. A running job whose lease passed while
    /// someone had asked to cancel it is cancelled here and reported so.
    Over(JobStatus),
    /// The stream entry names another user than the job's: the entry is
    /// not the job's own (a forged or mixed-up entry) and is not run.
    ForeignEntry {
        /// The job's `user_id`.
        owner: String,
    },
}

pub(super) fn lease_millis(lease: Duration) -> Result<i64> {
    if lease.is_zero() || lease > MAX_LEASE {
        return Err(repobox_orm::Error::InvalidArgument {
            name: "lease",
            reason: format!("{lease:?} is not between 1 ms and {MAX_LEASE:?}"),
        }
        .into());
    }
    // At most a day of milliseconds: it fits.
    Ok(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
}

/// `now + ms`, refused where a clock reading from Redis is absurd.
fn until(now: i64, ms: i64) -> Result<i64> {
    now.checked_add(ms).ok_or_else(|| {
        repobox_orm::Error::InvalidArgument {
            name: "lease",
            reason: format!("Redis's clock ({now} ms) is past the largest timestamp"),
        }
        .into()
    })
}

/// A new run id (see [`repobox_orm::random_id`]).
fn new_run_id() -> Result<String> {
    Ok(repobox_orm::random_id("run_id")?)
}

impl Job {
    /// Starts a run of the job for the delivery of stream entry `entry`
    /// (which names `entry_user` as the job's user, when it names one), with
    /// a lease of `lease` (at most a day) by Redis's clock.
    ///
    /// A queued job, or a running one whose lease has passed (its runner
    /// died) or that has none, becomes `running` under a new `run_id`; of
    /// several deliveries that try at once exactly one wins, the others see
    /// [`Start::Leased`]. A live lease is [`Start::Leased`]; a job that is
    /// over (or failed) is [`Start::Over`]; an entry whose user is not the
    /// job's is [`Start::ForeignEntry`]. Two round trips: the read with
    /// Redis's clock, the compare-and-set (one with
    /// [`start_as_read`](Self::start_as_read)).
    pub async fn start<C: ConnectionLike + Send>(
        conn: &mut C,
        id: &str,
        entry: &str,
        entry_user: Option<&str>,
        lease: Duration,
    ) -> Result<Start> {
        Job::start_as_read(conn, None, id, entry, entry_user, lease).await
    }

    /// [`start`](Self::start) from `as_read`, the job and Redis's clock
    /// as a read of the delivery saw them
    /// ([`Delivery::entity_as_read`](repobox_orm::Delivery::entity_as_read)):
    /// one round trip, the compare-and-set, while they are still true; the
    /// job is read again only when they no longer are.
    pub async fn start_as_read<C: ConnectionLike + Send>(
        conn: &mut C,
        mut as_read: Option<(i64, Option<Job>)>,
        id: &str,
        entry: &str,
        entry_user: Option<&str>,
        lease: Duration,
    ) -> Result<Start> {
        let lease_ms = lease_millis(lease)?;
        for _ in 0..ATTEMPTS {
            let (now, job) = match as_read.take() {
                Some(read) => read,
                None => Job::get_with_clock(conn, id).await?,
            };
            let Some(mut job) = job else {
                return Err(not_found(id));
            };
            if entry_user.is_some_and(|user| user != job.user_id) {
                return Ok(Start::ForeignEntry { owner: job.user_id });
            }
            match job.status {
                JobStatus::Queued => {}
                JobStatus::Running => {
                    if let Some(until) = job.lease_until.filter(|until| *until > now) {
                        return Ok(Start::Leased(Lease {
                            run_id: job.run_id,
                            entry: job.run_entry,
                            until,
                        }));
                    }
                    if job.cancel_requested_at.is_some() {
                        // Its runner died after someone asked to stop it.
                        let outcome = JobOutcome {
                            exit_code: None,
                            error: Some("cancelled".into()),
                        };
                        return match Job::update_status_from(conn, job, JobStatus::Cancelled, now, outcome).await {
                            Ok(_) => Ok(Start::Over(JobStatus::Cancelled)),
                            Err(Error::LeaseLost { .. }) => continue,
                            Err(e) => Err(e),
                        };
                    }
                }
                other => return Ok(Start::Over(other)),
            }
            let reason = (job.status == JobStatus::Running).then(|| match &job.run_id {
                Some(run) => format!("taken over: the lease of run {run} passed"),
                None => "taken over: the run held no lease".to_owned(),
            });
            let mut history = job.history.clone();
            history.push(StatusChange::new(JobStatus::Running, now, reason));
            let patch = JobPatch {
                status: Some(JobStatus::Running),
                history: Some(history),
                started_at: Some(Some(now)),
                finished_at: Some(None),
                exit_code: Some(None),
                error: Some(None),
                cancel_requested_at: Some(None),
                retries: Some(job.retries.saturating_add(u32::from(job.started_at.is_some()))),
                run_id: Some(Some(new_run_id()?)),
                run_entry: Some(Some(entry.to_owned())),
                lease_until: Some(Some(until(now, lease_ms)?)),
                progress: Some(None),
                progress_message: Some(None),
                ..Default::default()
            };
            let expected = JobPatch {
                status: Some(job.status),
                started_at: Some(job.started_at),
                created_at: Some(job.created_at),
                run_id: Some(job.run_id.clone()),
                lease_until: Some(job.lease_until),
                ..Default::default()
            };
            match super::write_status(conn, id, &patch, &expected, JobStatus::Running, now, None).await {
                Ok(()) => {
                    patch.apply_to(&mut job);
                    return Ok(Start::Started(Box::new(job)));
                }
                Err(repobox_orm::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(contention(id))
    }

    /// Renews run `run_id`'s lease on the job to `lease` from now by Redis's
    /// clock. `Ok(Some(until))` while the run holds the job; `Ok(None)` once
    /// it does not (another run took it over, the job left `running` or is
    /// gone): the run must stop. Two round trips.
    pub async fn renew_lease<C: ConnectionLike + Send>(
        conn: &mut C,
        id: &str,
        run_id: &str,
        lease: Duration,
    ) -> Result<Option<i64>> {
        let lease_ms = lease_millis(lease)?;
        let now = redis_now(conn).await?;
        let until = until(now, lease_ms)?;
        let patch = JobPatch {
            lease_until: Some(Some(until)),
            ..Default::default()
        };
        let expected = JobPatch {
            status: Some(JobStatus::Running),
            run_id: Some(Some(run_id.to_owned())),
            ..Default::default()
        };
        match Job::update_if(conn, id, &patch, &expected).await {
            Ok(()) => Ok(Some(until)),
            Err(repobox_orm::Error::Conflict { .. }) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// [`Job::update_status_from`] a run's copy (as [`Job::start`] returned
    /// it), acknowledging the run's delivery, entry `entry` of `queue`, in the
    /// same write: the status, its index and event, and the acknowledgement
    /// in one script on one server; on a cluster, the acknowledgement goes
    /// after the write (a delivery left pending comes again and finds the job
    /// over). `Err(LeaseLost)`, and nothing acknowledged, if the run no longer
    /// holds the job.
    pub async fn end_run<C: ConnectionLike + Send>(
        conn: &mut C,
        run: Job,
        to: JobStatus,
        now: i64,
        outcome: JobOutcome,
        (queue, entry): (&Queue, &str),
    ) -> Result<Job> {
        let id = run.id.clone();
        let run_id = Some(run.run_id.clone());
        Job::transition(conn, &id, Some(run), run_id, to, now, outcome, Some((queue, entry))).await
    }

    /// Puts a job that run `run_id` holds back to `queued` (the runner shuts
    /// down before it finished), with `reason` in its history; its delivery
    /// stays pending for another runner. `Err(LeaseLost)` if the run no
    /// longer holds it.
    pub async fn release<C: ConnectionLike + Send>(
        conn: &mut C,
        id: &str,
        run_id: &str,
        now: i64,
        reason: &str,
    ) -> Result<Job> {
        let outcome = JobOutcome {
            exit_code: None,
            error: Some(reason.to_owned()),
        };
        Job::transition(
            conn,
            id,
            None,
            Some(Some(run_id.to_owned())),
            JobStatus::Queued,
            now,
            outcome,
            None,
        )
        .await
    }

    /// The live lease on the job, by Redis's clock: `Some` while the job is
    /// `running` under a lease that has not passed. One round trip.
    pub async fn live_lease<C: ConnectionLike + Send>(conn: &mut C, id: &str) -> Result<Option<Lease>> {
        let (now, job) = Job::get_with_clock(conn, id).await?;
        let Some(job) = job else {
            return Ok(None);
        };
        Ok(match job.lease_until {
            Some(until) if job.status == JobStatus::Running && until > now => Some(Lease {
                run_id: job.run_id,
                entry: job.run_entry,
                until,
            }),
            _ => None,
        })
    }

    /// Marks the job failed with `reason` (its delivery is being
    /// dead-lettered), unless a run other than `own_run` holds a live lease
    /// on it: that run decides the job's status. `Ok(None)` when the job was
    /// left alone (absent, over, or leased by another run).
    pub async fn fail_unless_leased<C: ConnectionLike + Send>(
        conn: &mut C,
        id: &str,
        own_run: Option<&str>,
        reason: &str,
    ) -> Result<Option<Job>> {
        for _ in 0..ATTEMPTS {
            let (now, job) = Job::get_with_clock(conn, id).await?;
            let Some(job) = job else {
                return Ok(None);
            };
            let leased_by_other = job.status == JobStatus::Running
                && job.lease_until.is_some_and(|until| until > now)
                && job.run_id.as_deref() != own_run;
            if leased_by_other || !job.status.can_become(JobStatus::Failed) {
                return Ok(None);
            }
            let outcome = JobOutcome {
                exit_code: None,
                error: Some(reason.to_owned()),
            };
            match Job::update_status_from(conn, job, JobStatus::Failed, now, outcome).await {
                Ok(job) => return Ok(Some(job)),
                // It changed since it was read: decide again.
                Err(Error::LeaseLost { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(contention(id))
    }
}
