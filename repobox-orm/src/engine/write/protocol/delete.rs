//! The protocol of `scripts/delete.lua`, the delete of one entity: no binary
//! header, because a delete sets no field, claims no unique value and
//! checks no condition.
//!
//! `KEYS`: the hash, the key of each index entry to remove, then the keys
//! deleted with the entity. `ARGV`: the id, the index kinds (one byte per
//! index key, as in `write.lua`'s op records), then the guard names and
//! the values the engine read from them. The answers are `write.lua`'s
//! ([`WriteReply`](super::WriteReply)).

use redis::Cmd;

use super::{IndexOp, UNKNOWN, expected, kind_byte};
use crate::error::{Error, Result};

/// One call of the delete script.
pub(crate) struct DeleteCall<'w> {
    pub hash_key: &'w str,
    pub id: &'w str,
    /// The entries to remove: each op's old key (ops without one are skipped).
    pub ops: &'w [IndexOp],
    /// Fields whose values decided the entries' keys...
    pub guards: &'w [&'static str],
    /// ...and what the engine read from them (`None`: it does not know).
    pub guard_values: Option<&'w [Option<Vec<u8>>]>,
    /// Keys deleted with the entity.
    pub extra_keys: &'w [String],
}

impl DeleteCall<'_> {
    /// The `EVALSHA` of the script whose SHA1 is `sha`.
    pub(crate) fn command(&self, sha: &str) -> Result<Cmd> {
        let entries: Vec<&IndexOp> = self.ops.iter().filter(|op| op.old.is_some()).collect();
        let numkeys = 1 + entries.len() + self.extra_keys.len();
        if numkeys > usize::from(u16::MAX) {
            return Err(Error::Encode {
                field: "keys",
                message: format!("{numkeys} keys are more than one delete can carry"),
            });
        }
        let kinds: Vec<u8> = entries.iter().map(|op| kind_byte(op.kind)).collect();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(sha).arg(numkeys).arg(self.hash_key);
        for op in &entries {
            cmd.arg(op.old.as_deref());
        }
        cmd.arg(self.extra_keys).arg(self.id).arg(kinds).arg(self.guards);
        for i in 0..self.guards.len() {
            match self.guard_values {
                None => cmd.arg(UNKNOWN),
                Some(values) => cmd.arg(expected(values.get(i).and_then(Option::as_deref))),
            };
        }
        Ok(cmd)
    }
}
