//! The state of an ordered batch (each write's claims and outbox record,
//! and the outcomes), and the steps that undo or finish a write.

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};

use super::super::outbox;
use super::super::plan::{Outcome, WritePlan};
use crate::engine::pipeline;
use crate::error::{Error, Result};
use crate::scripts::INDEX_ENTRY;
use crate::scripts::index_entry::Action as EntryAction;
use crate::scripts::write_entity::{IndexOp, Mode};

#[cfg(feature = "testing")]
use super::super::faults::OrderedStep;

/// One write of the batch on its way through the steps.
pub(super) struct Write {
    /// Its position in the plans.
    pub(super) plan: usize,
    /// Entries this write has claimed (op, key), and those it added itself
    /// (released if the write is refused); kept across rounds while the
    /// entity's new index keys stay the same.
    pub(super) held: Vec<(usize, String)>,
    pub(super) added: Vec<(usize, String)>,
    /// The outbox record of its stream entry (attempt id), once recorded.
    pub(super) outboxed: Option<String>,
    /// This round's index ops and the TTL (ms) its index keys need.
    pub(super) ops: Vec<IndexOp>,
    pub(super) life: Option<u64>,
    /// Set aside: it met a unique value's owner, which may be another write
    /// of the batch, so it is judged once the rest of the batch is written.
    pub(super) deferred: bool,
}

impl Write {
    /// A write of plan `plan` that has taken no step yet.
    pub(super) fn new(plan: usize) -> Write {
        Write {
            plan,
            held: Vec::new(),
            added: Vec::new(),
            outboxed: None,
            ops: Vec::new(),
            life: None,
            deferred: false,
        }
    }

    /// The same write, with the outbox record it already made.
    pub(super) fn with_outbox(mut self, outboxed: Option<String>) -> Write {
        self.outboxed = outboxed;
        self
    }
}

/// The writes of a batch and their outcomes.
pub(super) struct Batch<'r> {
    pub(super) writes: Vec<Write>,
    pub(super) results: &'r mut [Option<Result<Outcome>>],
}

impl Batch<'_> {
    pub(super) fn live(&self) -> Vec<usize> {
        (0..self.writes.len())
            .filter(|&w| self.results[self.writes[w].plan].is_none() && !self.writes[w].deferred)
            .collect()
    }

    pub(super) fn end(&mut self, plan: usize, outcome: Result<Outcome>) {
        if self.results[plan].is_none() {
            self.results[plan] = Some(outcome);
        }
    }

    /// Ends every write of `members` with `e` (a step that failed for all
    /// of them): the first gets the error itself, the others its account.
    pub(super) fn fail(&mut self, members: &[usize], e: Error, after_hash: bool) {
        let e = if after_hash { e.after_writes() } else { e };
        let account = e.part_way();
        let mut first = Some(e);
        for &w in members {
            let plan = self.writes[w].plan;
            let e = first.take().unwrap_or_else(|| account.part_way());
            self.end(plan, Err(e));
        }
    }
}

/// Ends write `w` with `outcome` after releasing the entries it added: it
/// was refused (or failed) before its hash was written.
pub(super) async fn refuse<C: ConnectionLike + Send>(
    conn: &mut C,
    plans: &[WritePlan<'_, '_>],
    batch: &mut Batch<'_>,
    w: usize,
    outcome: Result<Outcome>,
) {
    let write = &mut batch.writes[w];
    let added = std::mem::take(&mut write.added);
    write.held.clear();
    let plan = write.plan;
    release(conn, &plans[plan], &write.ops, &added).await;
    batch.end(plan, outcome);
}

/// A write that was refused leaves nothing for the outbox sweep to append.
pub(super) async fn clear_refused<C: ConnectionLike + Send>(
    conn: &mut C,
    plans: &[WritePlan<'_, '_>],
    batch: &Batch<'_>,
) {
    let clears: Vec<Cmd> = batch
        .writes
        .iter()
        .filter(|w| {
            matches!(
                &batch.results[w.plan],
                Some(
                    Ok(Outcome::Missing)
                        | Err(Error::AlreadyExists { .. }
                            | Error::UniqueViolation { .. }
                            | Error::Conflict { .. }
                            | Error::Contention { .. }
                            | Error::InvalidArgument { .. }
                            | Error::Encode { .. }
                            | Error::OutOfMemory(_)
                            | Error::WrongType { .. }
                            | Error::UnexpectedReply { .. })
                )
            )
        })
        .filter_map(|w| {
            let (stream, _) = plans[w.plan].options.stream?;
            Some(outbox::clear(stream, w.outboxed.as_deref()?))
        })
        .collect();
    if let Err(e) = pipeline::query(conn, &clears).await {
        tracing::warn!(error = %e, "could not clear the outbox entry of a refused write");
    }
}

/// Sends single-slot steps as one pipeline (a [`Store`](crate::Store) on a
/// cluster splits it per slot and sends the parts concurrently), loading
/// the index-entry script where a server lost it.
pub(crate) async fn send_steps<C: ConnectionLike + Send>(conn: &mut C, cmds: &[Cmd]) -> Result<Vec<Value>> {
    let mut replies = pipeline::query(conn, cmds).await?;
    pipeline::resend_unknown(
        conn,
        cmds,
        &mut replies,
        &INDEX_ENTRY,
        &mut pipeline::Reloads::default(),
    )
    .await?;
    Ok(replies)
}

/// Removes the members that step 2 added (op, key), after a refused or failed write.
///
/// Another write of the same entity may have claimed the same entry while
/// this one held it (its claim found the member there and added nothing),
/// and won: the entry is that write's now. So the hash is read after the
/// removal, and an entry it says belongs where it was goes back. A write
/// whose hash lands after that read asserts its own entries after its hash
/// write, so no entry the final hash needs stays removed; at worst an entry
/// goes back that a later move then leaves behind, which reads filter out
/// and a repair removes.
pub(super) async fn release<C: ConnectionLike + Send>(
    conn: &mut C,
    plan: &WritePlan<'_, '_>,
    ops: &[IndexOp],
    added: &[(usize, String)],
) {
    if added.is_empty() {
        return;
    }
    let cmds: Vec<Cmd> = added
        .iter()
        .filter_map(|(i, key)| Some(plan.entry_cmd(EntryAction::Remove, ops.get(*i)?, key, 0, *i)))
        .collect();
    if let Err(e) = send_steps(conn, &cmds).await {
        tracing::warn!(key = %plan.target.shown(), error = %e, "could not release index entries of a refused write; a repair removes them");
        return;
    }
    let restores = match pipeline::command(conn, &crate::engine::read::hgetall(&plan.target.key)).await {
        Ok(reply) => plan.restore_cmds(&reply, ops, added),
        Err(e) => {
            tracing::warn!(key = %plan.target.shown(), error = %e, "could not read the entity after releasing its index entries; a repair restores any it needs");
            return;
        }
    };
    if let Err(e) = send_steps(conn, &restores).await {
        tracing::warn!(key = %plan.target.shown(), error = %e, "could not restore index entries a racing write needs; a repair restores them");
    }
}

/// The steps after the hash write: old entries removed; new ones given their
/// final score and TTL (an expire only lengthens their TTL); for a delete that
/// found the entity (`found`), the keys deleted with it.
pub(super) fn after_hash(plan: &WritePlan<'_, '_>, ops: &[IndexOp], life: u64, found: bool) -> Vec<Cmd> {
    let mut cmds = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if let Some(old) = op.old.as_deref() {
            cmds.push(plan.entry_cmd(EntryAction::Remove, op, old, 0, i));
        }
        let action = match plan.mode {
            Mode::Delete => continue,
            Mode::SetTtl => EntryAction::Touch,
            _ => EntryAction::Add,
        };
        if let Some(new) = op.new.as_deref() {
            cmds.push(plan.entry_cmd(action, op, new, life, i));
        }
    }
    if plan.mode == Mode::Delete && found {
        cmds.extend(plan.options.delete_keys.iter().map(|k| {
            let mut del = redis::cmd("DEL");
            del.arg(k);
            del
        }));
    }
    cmds
}

/// A step that failed for the writes `.0`.
pub(super) type Failed = (Vec<usize>, Error);

/// Before the rounds: the lookups of the writes that must learn their
/// indexed fields, and step 1, the outbox records.
pub(super) async fn prepare<C: ConnectionLike + Send>(
    conn: &mut C,
    plans: &mut [WritePlan<'_, '_>],
    batch: &mut Batch<'_>,
) -> std::result::Result<(), Failed> {
    let all = batch.live();
    let lookups: Vec<(usize, Cmd)> = all
        .iter()
        .filter_map(|&w| Some((w, plans[batch.writes[w].plan].lookup()?)))
        .collect();
    let cmds: Vec<Cmd> = lookups.iter().map(|(_, c)| c.clone()).collect();
    let members: Vec<usize> = lookups.iter().map(|(w, _)| *w).collect();
    let replies = pipeline::query(conn, &cmds).await.map_err(|e| (members, e))?;
    for ((w, _), reply) in lookups.iter().zip(replies) {
        let plan = batch.writes[*w].plan;
        if let Err(e) = plans[plan].take_lookup(reply) {
            batch.end(plan, Err(e));
        }
    }
    let mut records = Vec::new();
    for w in batch.live() {
        let plan = batch.writes[w].plan;
        if let Some((stream, entry)) = plans[plan].options.stream
            && batch.writes[w].outboxed.is_none()
        {
            match outbox::attempt_id() {
                Ok(attempt) => {
                    records.push((w, outbox::record(stream, &attempt, &plans[plan].target.key, entry)));
                    batch.writes[w].outboxed = Some(attempt);
                }
                Err(e) => batch.end(plan, Err(e)),
            }
        }
    }
    let cmds: Vec<Cmd> = records.iter().map(|(_, c)| c.clone()).collect();
    let members: Vec<usize> = records.iter().map(|(w, _)| *w).collect();
    let replies = pipeline::query(conn, &cmds).await.map_err(|e| (members, e))?;
    for ((w, _), reply) in records.into_iter().zip(replies) {
        let plan = batch.writes[w].plan;
        match reply {
            Value::ServerError(e) => {
                batch.writes[w].outboxed = None;
                batch.end(plan, Err(redis::RedisError::from(e).into()));
            }
            _ => {
                let _ = crashed!(batch, plans, w, Outboxed);
            }
        }
    }
    Ok(())
}
