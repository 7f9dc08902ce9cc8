//! Handing deliveries to their work, each in a task of its own.

use repobox_orm::queue::defaults;
use tokio::task::JoinSet;

use super::Runner;
use super::levels::Levels;
use crate::work::Work;
use crate::{JobHandler, RunStats, RunnerControl};

impl<H: JobHandler> Runner<H> {
    /// Hands each delivery to a [`Work`] in a task of its own, each once a
    /// slot is free.
    pub(super) async fn spawn_all(
        &self,
        batch: Vec<(usize, repobox_orm::Delivery)>,
        tasks: &mut JoinSet<RunStats>,
        consumer: &str,
        control: &RunnerControl,
        levels: &Levels,
    ) {
        for (level, delivery) in batch {
            let permit = self
                .permits
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            let work = Work {
                store: self.store.clone(),
                queue: levels.queue(level).clone(),
                levels: levels.clone(),
                rate_limited: self.config.rate_limit.is_some(),
                paused: self.paused.clone(),
                base: self.queue.clone(),
                handler: self.handler.clone(),
                consumer: consumer.to_owned(),
                heartbeat: self.config.min_idle.min(self.config.lease_duration()) / defaults::HEARTBEAT_DIVISOR,
                lease: self.config.lease_duration(),
                running: self.running.clone(),
                control: control.clone(),
                retry: self.config.retry.clone(),
                per_user: self.config.max_running_per_user,
                cancels: self.cancels.clone(),
                tally: self.tally.clone(),
            };
            tasks.spawn(async move { work.process(delivery, permit).await });
        }
    }
}
