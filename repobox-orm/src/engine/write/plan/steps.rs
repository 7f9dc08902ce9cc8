//! The pieces of a plan that an ordered write sends one slot at a time: the
//! hash on its own, and each index entry on its own.

use redis::{Cmd, Value};

use super::values::checked_score;
use super::{WritePlan, ttl_millis};
use crate::entity::RawHash;
use crate::error::Result;
use crate::meta::IndexKind;
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

    /// The steps that put back entries this write released (op, key) that
    /// the hash, as `reply` (its `HGETALL` after the release) shows it, says
    /// belong where they were: another write of the entity claimed the same
    /// entry while this one held it (finding it there, it added nothing),
    /// wrote its hash and asserted its entries before this release took the
    /// entry away.
    pub fn restore_cmds(&self, reply: &Value, ops: &[IndexOp], released: &[(usize, String)]) -> Vec<Cmd> {
        let key = &self.target.key;
        let Ok(hash) = RawHash::from_reply(key, reply) else {
            return Vec::new();
        };
        if hash.is_empty() {
            return Vec::new();
        }
        released
            .iter()
            .filter_map(|(i, index_key)| {
                let index = self.indexes.get(*i)?;
                let op = ops.get(*i)?;
                if (self.index_key_of)(key, &hash, index).as_deref() != Some(index_key.as_str()) {
                    return None;
                }
                let score = match index.kind {
                    IndexKind::Sorted { score } => checked_score(score, hash.get(score)).ok()?,
                    _ => String::new(),
                };
                let entry = IndexOp {
                    kind: op.kind,
                    new: Some(index_key.clone()),
                    old: None,
                    score,
                };
                Some(self.entry_cmd(Action::Add, &entry, index_key, 0, *i))
            })
            .collect()
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
