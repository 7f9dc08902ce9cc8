//! The protocol of `scripts/delete.lua`, the delete of one entity: no binary
//! header, because a delete sets no field, claims no unique value and
//! checks no condition.
//!
//! `KEYS`: the hash, the key of each index entry to remove, then the keys
//! deleted with the entity. `ARGV`: the id, the index kinds (one byte per
//! index key, as in `write.lua`'s op records), one byte per guard saying
//! whether the engine read a value in it (`=`), found it absent (`-`) or
//! does not know (`?`), then the guard names and the values read (an empty
//! string where there is none): the script compares them as they come, without building a
//! string per guard. The answers are `write.lua`'s
//! ([`WriteReply`](super::WriteReply)).

use redis::Cmd;

use super::{IndexOp, kind_byte};
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
        let mut seen = Vec::with_capacity(self.guards.len());
        let mut values = Vec::with_capacity(self.guards.len());
        for i in 0..self.guards.len() {
            let value = self.guard_values.map(|v| v.get(i).and_then(Option::as_deref));
            seen.push(match value {
                Some(Some(_)) => b'=',
                Some(None) => b'-',
                None => b'?',
            });
            values.push(value.flatten().unwrap_or_default());
        }
        cmd.arg(self.extra_keys)
            .arg(self.id)
            .arg(kinds)
            .arg(seen)
            .arg(self.guards);
        for value in values {
            cmd.arg(value);
        }
        Ok(cmd)
    }
}
