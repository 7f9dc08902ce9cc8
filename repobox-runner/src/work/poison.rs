//! Deliveries that cannot be processed: left pending for another delivery,
//! then dead-lettered with the reason.

use repobox_models::{Job, Result};
use repobox_orm::Delivery;

use super::{DEAD_LETTERING, Done, FOREIGN, NOT_DEAD_LETTERED, RETRYING, Work};
use crate::JobHandler;

impl<H: JobHandler> Work<H> {
    /// A delivery that could not be processed: left pending for another
    /// delivery, or, once it has had `max_deliveries`, dead-lettered with the
    /// reason (and its job, if it exists and decodes, marked failed).
    pub(crate) async fn poison(&self, delivery: &Delivery, reason: &str) -> Done {
        if delivery.deliveries < self.queue.max_deliveries_value() {
            if let Some(held_back) = RETRYING.admit() {
                tracing::warn!(entry = %delivery.id, delivery = delivery.deliveries, %reason, "a delivery failed; it will be delivered again{held_back}");
            }
            return Done::Retried;
        }
        match self.give_up(delivery, reason).await {
            Ok(done) => done,
            Err(e) => {
                if let Some(held_back) = NOT_DEAD_LETTERED.admit() {
                    tracing::warn!(entry = %delivery.id, error = %e, "could not dead-letter a delivery; it will be delivered again{held_back}");
                }
                Done::Retried
            }
        }
    }

    /// Marks the job failed (when there is one that can be) and moves the
    /// delivery to the dead letters with the reason.
    async fn give_up(&self, delivery: &Delivery, reason: &str) -> Result<Done> {
        let mut conn = self.store.clone();
        // A job whose entry is not its own is not touched: the entry is
        // not the job's to fail.
        let own = !reason.starts_with(FOREIGN);
        if let Some(job_id) = delivery.field("job_id").filter(|id| own && Job::key_for(*id).is_ok()) {
            // This entry's own run still holds the job (its runner died, or
            // is stalled, with a lease longer than the idle time): the entry
            // stays pending until the lease passes, when this decides again;
            // dead-lettering it now would leave the job running with nothing
            // to take it over.
            if let Ok(Some(lease)) = Job::live_lease(&mut conn, job_id).await
                && lease.entry.as_deref() == Some(delivery.id.as_str())
            {
                tracing::info!(job = %job_id, entry = %delivery.id, "the entry's run holds the job's lease; left pending until the lease passes");
                return Ok(Done::Skipped);
            }
            match Job::fail_unless_leased(&mut conn, job_id, None, reason).await {
                Ok(_) => {}
                // Gone, undecodable, over or held by a live run: the dead
                // letter says why.
                Err(e) => tracing::debug!(job = %job_id, error = %e, "a dead-lettered job's status was not written"),
            }
        }
        if let Some(held_back) = DEAD_LETTERING.admit() {
            tracing::warn!(entry = %delivery.id, deliveries = delivery.deliveries, %reason, "dead-lettering a delivery{held_back}");
        }
        self.queue
            .dead_letter(&mut conn, delivery, &self.consumer, reason)
            .await?;
        self.tally.dead_lettered();
        Ok(Done::DeadLettered)
    }
}
