//! The pieces of a plan that an ordered write sends one slot at a time: the
//! hash on its own, and each index entry on its own.

use redis::Cmd;

use super::{WritePlan, ttl_millis};
use crate::error::Result;
use crate::scripts;
use crate::scripts::index_entry::{Action, EntryCall};
use crate::scripts::write_entity::{IndexOp, Mode};

impl WritePlan<'_, '_> {
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
    pub fn entry_cmd(&self, action: Action, op: &IndexOp, key: &str, life_ms: u64, op_index: usize) -> Cmd {
        EntryCall {
            index_key: key,
            action,
            kind: op.kind,
            id: &self.target.id,
            score: &op.score,
            life_ms,
            stale_owner: self.stale_owner(op_index).unwrap_or(""),
        }
        .command()
    }
}
