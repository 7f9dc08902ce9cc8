//! Removing finished jobs: one by one ([`Job::remove`]) or by status and age
//! ([`Job::purge`]), each with its output list and index entries in one
//! write (ordered, and healed on read, where a cluster splits the keys).

use repobox_orm::Walk;
use repobox_orm::prelude::{ConnectionLike, Page};

use super::{Job, JobStatus};
use crate::{Error, Result};

/// How many jobs one page of a purge reads.
const PURGE_PAGE: usize = 100;

/// What [`Job::purge`] found, and removed unless it was a dry run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    /// The jobs that matched (ids), oldest first.
    pub matched: Vec<String>,
    /// How many of them were removed (0 on a dry run; fewer than matched
    /// when another writer removed some first).
    pub removed: u64,
}

impl Job {
    /// Removes the job with its output list and index entries; `false` if
    /// there was none. A running job is `Err(InvalidTransition)`: cancel it
    /// first. The removal is a compare-and-set on the status it was decided
    /// from: a job that a retry or a start moves on meanwhile is decided
    /// again, never removed from under its new run.
    pub async fn remove<C: ConnectionLike + Send>(conn: &mut C, id: &str) -> Result<bool> {
        for _ in 0..super::ATTEMPTS {
            let removed = match Job::get(conn, id).await? {
                None => Job::delete_with_output(conn, id).await,
                Some(job) if job.status == JobStatus::Running => {
                    return Err(Error::InvalidTransition {
                        key: Job::key_for(id)?,
                        from: job.status.to_string(),
                        to: "removed".into(),
                    });
                }
                Some(job) => Job::delete_with_output_in(conn, id, job.status).await,
            };
            match removed {
                Err(Error::Orm(repobox_orm::Error::Conflict { .. })) => continue,
                other => return other,
            }
        }
        Err(super::contention(id))
    }

    /// Finds up to `limit` jobs in `status` (a final one: succeeded, failed
    /// or cancelled) that finished before `finished_before` (unix millis),
    /// oldest first, and, unless `dry_run`, removes each with its output and
    /// index entries. Walks `jobs:status:<status>` only as far as jobs
    /// created before the cutoff (none created later finished before it).
    pub async fn purge<C: ConnectionLike + Send>(
        conn: &mut C,
        status: JobStatus,
        finished_before: i64,
        limit: usize,
        dry_run: bool,
    ) -> Result<Purged> {
        Job::purge_with(conn, status, finished_before, limit, dry_run, &Walk::new()).await
    }

    /// [`purge`](Self::purge), telling `walk`'s progress how many of the
    /// status index's jobs it has looked at, and looking at no more a second
    /// than its rate allows.
    pub async fn purge_with<C: ConnectionLike + Send>(
        conn: &mut C,
        status: JobStatus,
        finished_before: i64,
        limit: usize,
        dry_run: bool,
        walk: &Walk<'_>,
    ) -> Result<Purged> {
        if !status.is_final() {
            return Err(repobox_orm::Error::InvalidArgument {
                name: "status",
                reason: format!("only finished jobs are purged, not `{status}` ones"),
            }
            .into());
        }
        let mut purged = Purged::default();
        let mut offset = 0;
        let mut pace = walk.begin(&format!("{status} jobs"), Job::count_by_status(conn, status).await?);
        while purged.matched.len() < limit {
            let page = Page::oldest(PURGE_PAGE)
                .offset(offset)
                .scores(f64::NEG_INFINITY, finished_before as f64);
            let listing = Job::by_status(conn, status, page).await?;
            for e in &listing.errors {
                tracing::warn!(error = %e, "a job in the status index cannot be read; not purged");
            }
            let read = listing.items.len() + listing.errors.len();
            for job in listing.items {
                if purged.matched.len() == limit {
                    break;
                }
                if job.status != status || job.finished_at.is_none_or(|at| at >= finished_before) {
                    offset += 1;
                    continue;
                }
                if dry_run {
                    offset += 1;
                } else {
                    // Only while it is still what was matched: a job retried
                    // since is not purged.
                    match Job::delete_with_output_in(conn, &job.id, status).await {
                        Ok(true) => purged.removed += 1,
                        Ok(false) => {}
                        Err(Error::Orm(repobox_orm::Error::Conflict { .. })) => {
                            offset += 1;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
                purged.matched.push(job.id);
            }
            offset += listing.errors.len();
            walk.step(&mut pace, u64::try_from(read).unwrap_or(u64::MAX)).await;
            if read < PURGE_PAGE {
                break;
            }
        }
        Ok(purged)
    }
}
