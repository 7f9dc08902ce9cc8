//! A run's slot among its user's running jobs (`max_running_per_user`): taken
//! before the job starts, renewed with its lease, given back (and a parked
//! job of the user put back on the stream of its priority) when the run ends.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use repobox_models::{Job, Priority, now_millis};
use repobox_orm::queue::Slot;
use repobox_orm::{Delivery, Queue, Store};

/// A slot this run holds.
pub(crate) struct UserSlot {
    queue: Queue,
    user: String,
    job: String,
    limit: u32,
}

/// What taking a slot gave.
pub(crate) enum Taken {
    /// No per-user limit.
    Unlimited,
    /// A slot: the job may start.
    Slot(UserSlot),
    /// Every slot of the user is taken: the job is parked.
    Parked { user: String },
}

/// Where a parked job goes back (`None`: the normal level) and its entry,
/// once its priority is read.
pub(crate) type Requeued = Pin<Box<dyn Future<Output = (Option<String>, Vec<(String, String)>)> + Send>>;

/// Where a job put back from the parked ones goes, on `base`'s levels: the
/// stream of its priority (`None`: the normal one, `base`'s own; also when
/// the job cannot be read), and its entry.
pub(crate) fn entry(store: &Store, base: &Queue, user: &str, job: &str) -> Requeued {
    let (mut conn, base, user, job) = (store.clone(), base.clone(), user.to_owned(), job.to_owned());
    Box::pin(async move { entry_of(&mut conn, &base, &user, &job).await })
}

async fn entry_of(conn: &mut Store, base: &Queue, user: &str, job: &str) -> (Option<String>, Vec<(String, String)>) {
    let level = match Job::get(conn, job).await {
        Ok(Some(job)) => job.priority.unwrap_or_default(),
        Ok(None) => Priority::Normal,
        Err(e) => {
            tracing::debug!(job = %job, error = %e, "a parked job's priority cannot be read; back on the normal level");
            Priority::Normal
        }
    };
    let stream = (level != Priority::Normal).then(|| level.stream(base.stream()).into_owned());
    let fields = vec![
        ("job_id".to_owned(), job.to_owned()),
        ("user_id".to_owned(), user.to_owned()),
        ("enqueued_at".to_owned(), now_millis().to_string()),
    ];
    (stream, fields)
}

impl UserSlot {
    /// Takes a slot of the delivery's user for job `job` (or parks it);
    /// `Err` with the reason when the user cannot be told.
    pub(crate) async fn take(
        conn: &mut Store,
        queue: &Queue,
        limit: Option<u32>,
        delivery: &Delivery,
        job: &str,
        lease: Duration,
    ) -> Result<Taken, String> {
        let Some(limit) = limit else {
            return Ok(Taken::Unlimited);
        };
        let user = match delivery.field("user_id") {
            Some(user) => user.to_owned(),
            // An entry without its user: the job says.
            None => match Job::get(conn, job).await {
                Ok(Some(j)) => j.user_id,
                Ok(None) => return Err("the job does not exist".into()),
                Err(e) => return Err(format!("the job cannot be read: {e}")),
            },
        };
        match queue.acquire_slot(conn, &user, job, lease, limit).await {
            Ok(Slot::Taken) => Ok(Taken::Slot(UserSlot {
                queue: queue.clone(),
                user,
                job: job.to_owned(),
                limit,
            })),
            Ok(Slot::Parked) => Ok(Taken::Parked { user }),
            Err(e) => Err(format!("the user's slots cannot be read: {e}")),
        }
    }

    /// Lengthens the slot with the run's lease.
    pub(crate) async fn renew(&self, conn: &mut Store, lease: Duration) {
        if let Err(e) = self.queue.renew_slot(conn, &self.user, &self.job, lease).await {
            tracing::debug!(job = %self.job, error = %e, "could not renew the run's slot");
        }
    }

    /// Gives the slot back and puts the user's oldest parked jobs back on
    /// the stream, as many as there are free slots. A failure leaves the
    /// slot to pass with its lease, and the parked jobs to the sweep.
    pub(crate) async fn release(self, conn: &mut Store) {
        let store = conn.clone();
        if let Err(e) = self.queue.release_slot(conn, &self.user, &self.job).await {
            tracing::debug!(job = %self.job, error = %e, "could not give the run's slot back");
            return;
        }
        match self
            .queue
            .unpark(conn, &self.user, self.limit, |job| {
                entry(&store, &self.queue, &self.user, job)
            })
            .await
        {
            Ok(back) => {
                for job in back {
                    tracing::info!(job = %job, user = %self.user, "a slot freed: parked job queued again");
                }
            }
            Err(e) => tracing::debug!(user = %self.user, error = %e, "could not put parked jobs back"),
        }
    }
}
