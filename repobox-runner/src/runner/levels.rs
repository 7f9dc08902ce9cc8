//! The queue's priority levels, one stream each (`<stream>:high`, the
//! stream itself, `<stream>:low`; see [`Priority`]): read high first, then
//! normal, then low, except every `fair_every`th read, which takes low
//! first, so that no level waits longer than that many reads while the
//! others are busy.

use std::time::Duration;

use repobox_models::{Job, Priority, Result};
use repobox_orm::queue::Claimed;
use repobox_orm::{Delivery, Queue, Store};

/// The levels of one queue, highest first; the normal one is the queue.
pub(crate) struct Levels {
    queues: Vec<Queue>,
    fair_every: u64,
    reads: u64,
}

/// The index of the normal level in [`Levels`].
pub(crate) const NORMAL: usize = 1;

impl Levels {
    pub(crate) fn new(base: &Queue, fair_every: u64) -> Self {
        let queues = Priority::LEVELS
            .iter()
            .map(|p| {
                Queue::new(p.stream(base.stream()).into_owned(), base.group().to_owned())
                    .max_deliveries(base.max_deliveries_value())
            })
            .collect();
        Levels {
            queues,
            fair_every: fair_every.max(2),
            reads: 0,
        }
    }

    /// The level's queue.
    pub(crate) fn queue(&self, level: usize) -> &Queue {
        &self.queues[level.min(self.queues.len() - 1)]
    }

    /// Every level's queue, highest first.
    pub(crate) fn all(&self) -> &[Queue] {
        &self.queues
    }

    /// Creates every level's stream and group.
    pub(crate) async fn ensure_groups(&self, conn: &mut Store) -> repobox_orm::Result<()> {
        for q in &self.queues {
            q.ensure_group(conn).await?;
        }
        Ok(())
    }

    /// Takes over stalled deliveries of every level.
    pub(crate) async fn claim_stalled(
        &self,
        conn: &mut Store,
        consumer: &str,
        min_idle: Duration,
        batch: usize,
    ) -> repobox_orm::Result<(Vec<(usize, Delivery)>, Vec<String>)> {
        let mut taken = Vec::new();
        let mut deleted = Vec::new();
        // A level that cannot be read does not lose what the others took
        // over (those deliveries are this runner's now).
        let mut refused = None;
        for (level, q) in self.queues.iter().enumerate() {
            match q.claim_stalled(conn, consumer, min_idle, batch).await {
                Ok(Claimed {
                    deliveries,
                    deleted: gone,
                }) => {
                    taken.extend(deliveries.into_iter().map(|d| (level, d)));
                    deleted.extend(gone);
                }
                // A level never used has nothing stalled.
                Err(e) if e.is_missing_group() => {}
                Err(e) => {
                    refused.get_or_insert(e);
                }
            }
        }
        match refused {
            Some(e) if taken.is_empty() && deleted.is_empty() => Err(e),
            _ => Ok((taken, deleted)),
        }
    }

    /// Up to `count` new deliveries, by level: at once from the levels in
    /// this read's order, else waiting up to `block` on the normal level.
    pub(crate) async fn read(
        &mut self,
        conn: &mut Store,
        reader: &mut Store,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> repobox_orm::Result<Vec<(usize, Delivery)>> {
        self.reads = self.reads.wrapping_add(1);
        let order: [usize; 3] = if self.reads.is_multiple_of(self.fair_every) {
            [2, 1, 0]
        } else {
            [0, 1, 2]
        };
        let mut got = Vec::new();
        if conn.is_cluster() {
            // The levels' streams are in different slots: one read each. A
            // level that cannot be read does not lose what the others
            // delivered, nor keep them from being read.
            let mut refused = None;
            for level in order {
                let left = count.saturating_sub(got.len());
                if left == 0 {
                    break;
                }
                match self.queues[level].read(conn, consumer, left, None).await {
                    Ok(read) => got.extend(read.into_iter().map(|d| (level, d))),
                    Err(e) => {
                        // A deleted stream or group is made again at once,
                        // as `Queue::read_first` does on one server.
                        if e.is_missing_group() {
                            let _ = self.queues[level].ensure_group(conn).await;
                        }
                        refused.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = refused
                && got.is_empty()
            {
                return Err(e);
            }
        } else {
            // One server: every level in one script call, which also
            // reads each delivered job (its start needs no read of its own).
            let queues = order.map(|level| &self.queues[level]);
            let read = Queue::read_first_with::<Job, _>(conn, &queues, consumer, count, "job_id").await?;
            got.extend(read.into_iter().map(|(i, d)| (order[i], d)));
        }
        if got.is_empty() {
            let read = self.queues[NORMAL].read(reader, consumer, count, Some(block)).await?;
            got.extend(read.into_iter().map(|d| (NORMAL, d)));
        }
        Ok(got)
    }

    /// Entries that wait, and deliveries not acknowledged, over every level.
    pub(crate) async fn backlog(&self, conn: &mut Store) -> Result<(u64, u64)> {
        let (mut waiting, mut pending) = (0u64, 0u64);
        for q in &self.queues {
            match q.waiting(conn).await {
                Ok(n) => waiting = waiting.saturating_add(n),
                // A level never used: nothing waits on it.
                Err(e) if e.is_missing_group() => continue,
                Err(e) => return Err(e.into()),
            }
            pending = pending.saturating_add(q.pending(conn).await?.count);
        }
        Ok((waiting, pending))
    }
}
