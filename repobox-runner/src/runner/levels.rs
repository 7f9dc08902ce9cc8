//! The queue's priority levels, one stream each (`<stream>:high`, the
//! stream itself, `<stream>:low`; see [`Priority`]): read high first, then
//! normal, then low, except every `fair_every`th read, which takes low
//! first, so that no level waits longer than that many reads while the
//! others are busy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use repobox_models::{Job, JobStart, Priority, Result};
use repobox_orm::queue::{Claimed, LogLimit};
use repobox_orm::{Delivery, Queue, Store};

/// The levels of one queue, highest first; the normal one is the queue.
/// Clones share the queues, the count of reads that decides each read's
/// order, and the start that reads make on the jobs they deliver.
#[derive(Clone)]
pub(crate) struct Levels {
    queues: Arc<[Queue]>,
    fair_every: u64,
    reads: Arc<AtomicU64>,
    /// The start each read makes on the jobs it delivers, on one server
    /// (`None`: the runner starts each job itself, after its checks).
    start: Option<Arc<JobStart>>,
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
            reads: Arc::default(),
            start: None,
        }
    }

    /// These levels, whose reads start the jobs they deliver with `start`.
    pub(crate) fn starting(mut self, start: JobStart) -> Self {
        self.start = Some(Arc::new(start));
        self
    }

    /// The start reads make, if they make one.
    pub(crate) fn start(&self) -> Option<&JobStart> {
        self.start.as_deref()
    }

    /// The order of the next read: high first, then normal, then low,
    /// except every `fair_every`th read, which takes low first.
    pub(crate) fn next_order(&self) -> [usize; 3] {
        let reads = self.reads.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if reads.is_multiple_of(self.fair_every) {
            [2, 1, 0]
        } else {
            [0, 1, 2]
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
        for q in self.queues.iter() {
            q.ensure_group(conn).await?;
        }
        Ok(())
    }

    /// Takes over stalled deliveries of every level. A level that cannot
    /// be claimed from (its stream deleted, a key of another type in its
    /// place) is said in the log and skipped: it holds up neither the other
    /// levels nor the reads. `Err` when Redis itself cannot serve and
    /// nothing was taken.
    pub(crate) async fn claim_stalled(
        &self,
        conn: &mut Store,
        consumer: &str,
        min_idle: Duration,
        batch: usize,
    ) -> repobox_orm::Result<(Vec<(usize, Delivery)>, Vec<String>)> {
        let mut taken = Vec::new();
        let mut deleted = Vec::new();
        // What the other levels took over is this runner's now: never lost
        // to one level's error.
        let mut unreachable = None;
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
                    if let Some(e) = skip_level(q.stream(), e) {
                        unreachable.get_or_insert(e);
                    }
                }
            }
        }
        match unreachable {
            Some(e) if taken.is_empty() && deleted.is_empty() => Err(e),
            _ => Ok((taken, deleted)),
        }
    }

    /// Up to `count` new deliveries, by level: at once from the levels in
    /// this read's order, else waiting up to `block` on the normal level.
    /// A level that cannot be read is said in the log and skipped, as in
    /// [`claim_stalled`](Self::claim_stalled); a deleted one is made again
    /// at once.
    pub(crate) async fn read(
        &self,
        conn: &mut Store,
        reader: &mut Store,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> repobox_orm::Result<Vec<(usize, Delivery)>> {
        let order = self.next_order();
        let mut got = Vec::new();
        if conn.is_cluster() {
            // The levels' streams are in different slots: one read each.
            for level in order {
                let left = count.saturating_sub(got.len());
                if left == 0 {
                    break;
                }
                let q = &self.queues[level];
                match q.read(conn, consumer, left, None).await {
                    Ok(read) => got.extend(read.into_iter().map(|d| (level, d))),
                    Err(e) => {
                        // A deleted stream or group is made again at once,
                        // as `Queue::read_first` does on one server.
                        if e.is_missing_group() {
                            let _ = q.ensure_group(conn).await;
                        }
                        if let Some(e) = skip_level(q.stream(), e) {
                            return Err(e);
                        }
                    }
                }
            }
        } else {
            // One server: every level in one script call, which also
            // reads each delivered job and starts it when it can (its start
            // then needs no round trip of its own). It answers a level's
            // error only when nothing was delivered.
            let queues = order.map(|level| &self.queues[level]);
            let start = self.start.as_ref().map(|s| s.prepared());
            match Queue::take::<Job, _>(conn, &queues, consumer, count, "job_id", start, None).await {
                Ok(taken) => got.extend(taken.deliveries.into_iter().map(|(i, d)| (order[i], d))),
                Err(e) => {
                    let streams: Vec<&str> = self.queues.iter().map(|q| q.stream()).collect();
                    if let Some(e) = skip_level(&streams.join(" or "), e) {
                        return Err(e);
                    }
                }
            }
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
        for q in self.queues.iter() {
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

static LEVEL_SKIPPED: LogLimit = LogLimit::warn("a priority level's stream cannot be used; the other levels go on");

/// What a level's error means for the call: `None` when it is the level's
/// own (a key of another type, a group that is gone), said in the log and
/// skipped; `Some` when Redis itself cannot serve (unreachable, refusing
/// credentials), which the runner's own failure handling rides out.
fn skip_level(stream: &str, e: repobox_orm::Error) -> Option<repobox_orm::Error> {
    if e.is_unreachable() || e.is_auth_failure() {
        return Some(e);
    }
    if let Some(held_back) = LEVEL_SKIPPED.admit() {
        tracing::warn!(stream, error = %e, "a priority level's stream cannot be used; the other levels go on{held_back}");
    }
    None
}
