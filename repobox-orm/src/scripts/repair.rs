//! The protocol of `repair.lua`: the repairs of one index key, each made
//! only if, inside the script, the member's entity is still as the engine
//! saw it.
//!
//! `KEYS[1]` is the index key, `KEYS[1 + i]` member i's hash key. `ARGV`:
//! the index kind's letter, the entity's TTL in ms (0: none), how many
//! fields the engine checked and their names, then per member its id, the
//! [`RepairAction`]'s letter, the score (empty unless a re-score or an add to
//! a sorted index) and the values the engine saw (`=` and the value, or `-`
//! for an absent field). The answer is how many members changed.

use redis::{Cmd, Value};

use super::reply::Answer;
use super::{Call, REPAIR, kind_letter};
use crate::error::Result;
use crate::meta::IndexKind;

/// The action letters (`repair.lua` declares the same).
pub(crate) const GONE: &str = "g";
pub(crate) const MISMATCH: &str = "m";
pub(crate) const RESCORE: &str = "s";
pub(crate) const ADD: &str = "a";

/// What a repair of one member does, if its entity is as the engine saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RepairAction<'a> {
    /// Remove it if its hash is absent.
    Gone,
    /// Remove it if its fields still say it belongs elsewhere.
    Mismatch,
    /// Give it this score.
    Rescore(&'a str),
    /// Add it, with this score in a sorted index (else empty).
    Add(&'a str),
}

/// One member's repair.
pub(crate) struct MemberRepair<'a> {
    pub id: &'a str,
    pub hash_key: &'a str,
    pub action: RepairAction<'a>,
    /// The values the engine saw in the checked fields (`None`: absent).
    pub seen: &'a [Option<Vec<u8>>],
}

/// One call of `repair.lua`.
pub(crate) struct RepairCall<'a> {
    pub index_key: &'a str,
    pub kind: IndexKind,
    /// The entity's TTL in ms (0: none); a key a repair adds to lives that long.
    pub ttl_ms: u64,
    pub fields: &'a [&'static str],
    pub members: &'a [MemberRepair<'a>],
}

impl RepairCall<'_> {
    /// The `EVALSHA` of these repairs.
    pub(crate) fn command(&self) -> Cmd {
        let mut call = Call::default();
        call.key(self.index_key);
        for m in self.members {
            call.key(m.hash_key);
        }
        call.arg(&[kind_letter(self.kind)][..])
            .arg(self.ttl_ms)
            .arg(self.fields.len())
            .arg(self.fields);
        for m in self.members {
            let (action, score) = match m.action {
                RepairAction::Gone => (GONE, ""),
                RepairAction::Mismatch => (MISMATCH, ""),
                RepairAction::Rescore(score) => (RESCORE, score),
                RepairAction::Add(score) => (ADD, score),
            };
            call.arg(m.id).arg(action).arg(score);
            for value in m.seen {
                match value {
                    Some(v) => call.arg([b"=".as_slice(), v].concat()),
                    None => call.arg("-"),
                };
            }
        }
        call.command(&REPAIR)
    }
}

/// Reads the answer for the repairs of `index_key`: how many members changed.
pub(crate) fn parse(index_key: &str, reply: Value) -> Result<u64> {
    Answer::count(index_key, "repair.lua", reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_declares_the_same_letters() {
        let lua = include_str!("repair.lua");
        assert!(lua.contains(&format!(
            "local GONE, MISMATCH, RESCORE, ADD = '{GONE}', '{MISMATCH}', '{RESCORE}', '{ADD}'"
        )));
    }

    #[test]
    fn repairs_are_encoded_byte_for_byte() {
        let seen = [Some(b"ann".to_vec()), None];
        let members = [
            MemberRepair {
                id: "1",
                hash_key: "task:1",
                action: RepairAction::Rescore("7"),
                seen: &seen,
            },
            MemberRepair {
                id: "2",
                hash_key: "task:2",
                action: RepairAction::Gone,
                seen: &seen,
            },
        ];
        let call = RepairCall {
            index_key: "tasks:owner:ann",
            kind: IndexKind::Sorted { score: "at" },
            ttl_ms: 0,
            fields: &["owner", "at"],
            members: &members,
        };
        let sha = REPAIR.get_hash();
        let want = format!(
            "*21\r\n$7\r\nEVALSHA\r\n$40\r\n{sha}\r\n$1\r\n3\r\n$15\r\ntasks:owner:ann\r\n$6\r\ntask:1\r\n$6\r\ntask:2\r\n\
             $1\r\nz\r\n$1\r\n0\r\n$1\r\n2\r\n$5\r\nowner\r\n$2\r\nat\r\n\
             $1\r\n1\r\n$1\r\ns\r\n$1\r\n7\r\n$4\r\n=ann\r\n$1\r\n-\r\n\
             $1\r\n2\r\n$1\r\ng\r\n$0\r\n\r\n$4\r\n=ann\r\n$1\r\n-\r\n"
        );
        assert_eq!(String::from_utf8(call.command().get_packed_command()).unwrap(), want);
        assert_eq!(parse("k", Value::Int(2)).unwrap(), 2);
        assert!(parse("k", Value::Nil).is_err());
    }
}
