//! The protocol of the delete script (`scripts/delete_entity.lua`), the
//! delete of one entity: no binary header, because a delete sets no field,
//! claims no unique value and checks no condition.
//!
//! `KEYS`: the hash, the key of each index entry to remove, then the keys
//! deleted with the entity. `ARGV`: the id, the index kinds (one byte per
//! index key, as in the write script's op records), one byte per guard
//! saying whether the engine read a value in it (`=`), found it absent (`-`)
//! or does not know (`?`), how many keys go with the entity, then the guard
//! names and the values read (an empty string where there is none): the
//! script compares them as they come, without building a string per guard.
//! The answers are the write script's ([`WriteReply`](super::write_entity::WriteReply)).
//! Many deletes go in one call as [`Call::joined`] lays them out.

#[cfg(test)]
use redis::Cmd;

use super::kind_letter;
use super::write_entity::IndexOp;
use crate::error::{Error, Result};
use crate::scripts::Call;

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

impl<'w> DeleteCall<'w> {
    /// The index ops whose entry goes (those with an old key).
    fn entries(&self) -> impl Iterator<Item = &'w IndexOp> + use<'w> {
        self.ops.iter().filter(|op| op.old.is_some())
    }

    /// This delete's `KEYS`: the hash, the entries' keys, the other keys.
    fn keys(&self) -> impl Iterator<Item = &'w str> + use<'w> {
        std::iter::once(self.hash_key)
            .chain(self.entries().filter_map(|op| op.old.as_deref()))
            .chain(self.extra_keys.iter().map(String::as_str))
    }

    /// Appends this delete's `ARGV` to `cmd`.
    fn write_args(&self, cmd: &mut Call) {
        let kinds: Vec<u8> = self.entries().map(|op| kind_letter(op.kind)).collect();
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
        cmd.arg(self.id)
            .arg(kinds)
            .arg(seen)
            .arg(self.extra_keys.len())
            .arg(self.guards);
        for value in values {
            cmd.arg(value);
        }
    }

    /// The `EVALSHA` of the delete script, whose SHA1 is `sha`.
    #[cfg(test)]
    pub(crate) fn command(&self, sha: &str) -> Result<Cmd> {
        Ok(self.call()?.command_of(sha))
    }

    /// This delete's `KEYS` and `ARGV`.
    pub(crate) fn call(&self) -> Result<Call> {
        let mut call = Call::default();
        for key in self.keys() {
            call.key(key);
        }
        if call.key_count() > usize::from(u16::MAX) {
            return Err(Error::Encode {
                field: "keys",
                message: format!("{} keys are more than one delete can carry", call.key_count()),
            });
        }
        self.write_args(&mut call);
        Ok(call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::IndexKind;

    #[test]
    fn a_delete_is_encoded_byte_for_byte_as_the_script_reads_it() {
        let ops = [IndexOp {
            kind: IndexKind::Sorted { score: "at" },
            new: None,
            old: Some("jobs:user:u1".into()),
            score: String::new(),
        }];
        let values = [Some(b"u1".to_vec())];
        let extra = ["job:1:output".to_owned()];
        let call = DeleteCall {
            hash_key: "job:1",
            id: "1",
            ops: &ops,
            guards: &["user_id"],
            guard_values: Some(&values),
            extra_keys: &extra,
        };
        let packed = String::from_utf8(call.command("sha").unwrap().get_packed_command()).unwrap();
        let want = "*12\r\n$7\r\nEVALSHA\r\n$3\r\nsha\r\n$1\r\n3\r\n$5\r\njob:1\r\n$12\r\njobs:user:u1\r\n$12\r\njob:1:output\r\n\
                    $1\r\n1\r\n$1\r\nz\r\n$1\r\n=\r\n$1\r\n1\r\n$7\r\nuser_id\r\n$2\r\nu1\r\n";
        assert_eq!(packed, want);
        // The script reads that layout.
        let lua = include_str!("delete_entity.lua");
        assert!(lua.contains("local hkey, id, kinds, seen = KEYS[k + 1], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]"));
        assert!(lua.contains("local nidx, ng, nextra = #kinds, #seen, tonumber(ARGV[a + 4])"));
        assert!(lua.contains("refused_as_other_type"));
    }
}
