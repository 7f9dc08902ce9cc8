//! The pieces of a plan that an ordered write sends one slot at a time: the
//! hash on its own, and each index entry on its own.

use redis::Cmd;

use super::{WritePlan, ttl_millis};
use crate::engine::write::protocol::{IndexOp, Mode, kind_byte};
use crate::error::Result;
use crate::scripts::{self, INDEX_ENTRY};

/// What an index-entry step does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum EntryAction {
    /// Add the member; a member already there keeps its score.
    Claim,
    /// Add the member, or give it the plan's score.
    Add,
    Remove,
    /// Only lengthen the key's TTL.
    Touch,
}

impl WritePlan<'_, '_> {
    /// The index entries this attempt maintains (see `index_ops`).
    pub fn entries(&self) -> Result<Vec<IndexOp>> {
        self.index_ops()
    }

    /// The write script call for the hash alone: its fields, TTL, guards and
    /// conditions, without index entries, stream entry or other keys.
    pub fn hash_invocation(&self) -> Result<Cmd> {
        self.write_call(Vec::new(), false)?.command(scripts::WRITE.get_hash())
    }

    /// The TTL (ms) an index key needs when this write sets the entity's
    /// TTL; `None` when it keeps the entity's remaining TTL (an update).
    pub fn life_ms(&self) -> Result<Option<u64>> {
        match (self.mode, self.ttl) {
            (_, None) => Ok(Some(0)),
            (Mode::Update, Some(_)) => Ok(None),
            (Mode::Delete, _) => Ok(Some(0)),
            (_, Some(ttl)) => Ok(Some(ttl_millis(ttl)?)),
        }
    }

    /// Drops a save's assumption that its indexed fields did not move, so
    /// that [`lookup`](WritePlan::lookup) reads them: in a batch of ordered
    /// writes one read per chunk is cheaper than a refused hash write (and
    /// its released claims) for every entity that moved.
    pub fn read_before_save(&mut self) {
        if self.mode == Mode::Save && !self.guards.is_empty() {
            self.current = None;
        }
    }

    /// The owner this plan judged stale for op `op`, to take over.
    pub fn stale_owner(&self, op: usize) -> Option<&str> {
        self.takeovers
            .iter()
            .rev()
            .find(|t| t.op == op)
            .map(|t| t.owner.as_str())
    }

    /// One index-entry step on `key`.
    pub fn entry_cmd(&self, action: EntryAction, op: &IndexOp, key: &str, life_ms: u64, op_index: usize) -> Cmd {
        let mut cmd = scripts::evalsha(&INDEX_ENTRY, &[key]);
        let action = match action {
            EntryAction::Claim => "n",
            EntryAction::Add => "a",
            EntryAction::Remove => "r",
            EntryAction::Touch => "t",
        };
        cmd.arg(action)
            .arg(&[kind_byte(op.kind)][..])
            .arg(&self.target.id)
            .arg(&op.score)
            .arg(life_ms)
            .arg(self.stale_owner(op_index).unwrap_or(""));
        cmd
    }
}
