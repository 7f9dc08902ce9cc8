//! The protocol of `index_entry.lua`: one index entry on its own, the
//! single-slot step of an ordered write and of an ordered index repair.
//!
//! `KEYS[1]` is the index key. `ARGV`: the [`Action`]'s letter, the index
//! kind's letter (`z` sorted, `s` set, `u` unique), the member id, its score
//! (sorted adds; else empty), the life in ms the key must have at least (0:
//! leave its TTL alone), and for a unique add the owner the engine found
//! stale and may take over (empty: none). The answer is decoded into
//! [`EntryReply`].

use redis::{Cmd, Value};

use super::reply::{Answer, tag};
use super::{INDEX_ENTRY, evalsha, kind_letter};
use crate::error::Result;
use crate::meta::IndexKind;

/// What an index-entry step does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Action {
    /// Add the member; a member already there keeps its score.
    Claim,
    /// Add the member, or give it the new score.
    Add,
    /// Remove the member (a unique key only while it holds this id).
    Remove,
    /// Only lengthen the key's TTL.
    Touch,
    /// Write nothing; refuse a key of another type than the index's.
    Check,
}

impl Action {
    /// The action's letter, as `index_entry.lua` names it.
    pub(crate) const fn letter(self) -> &'static str {
        match self {
            Action::Claim => CLAIM,
            Action::Add => ADD,
            Action::Remove => REMOVE,
            Action::Touch => TOUCH,
            Action::Check => CHECK,
        }
    }
}

/// The action letters (`index_entry.lua` declares the same).
pub(crate) const CLAIM: &str = "n";
pub(crate) const ADD: &str = "a";
pub(crate) const REMOVE: &str = "r";
pub(crate) const TOUCH: &str = "t";
pub(crate) const CHECK: &str = "c";
/// The kind letter of a stream, for a [`check_stream`].
pub(crate) const STREAM: u8 = b'x';

/// One call of `index_entry.lua`.
pub(crate) struct EntryCall<'a> {
    pub index_key: &'a str,
    pub action: Action,
    pub kind: IndexKind,
    pub id: &'a str,
    /// The score of a sorted add; else empty.
    pub score: &'a str,
    /// The TTL (ms) the index key must have at least; 0 leaves it alone.
    pub life_ms: u64,
    /// The owner of a unique value that may be taken over; empty: none.
    pub stale_owner: &'a str,
}

impl EntryCall<'_> {
    /// The `EVALSHA` of this step.
    pub(crate) fn command(&self) -> Cmd {
        let mut cmd = evalsha(&INDEX_ENTRY, &[self.index_key]);
        cmd.arg(self.action.letter())
            .arg(&[kind_letter(self.kind)][..])
            .arg(self.id)
            .arg(self.score)
            .arg(self.life_ms)
            .arg(self.stale_owner);
        cmd
    }
}

/// A step that writes nothing and refuses `stream` if it holds another type
/// than a stream (answers 0, or `{ 'wrongtype', stream }`).
pub(crate) fn check_stream(stream: &str) -> Cmd {
    let mut cmd = evalsha(&INDEX_ENTRY, &[stream]);
    cmd.arg(CHECK).arg(&[STREAM][..]).arg("").arg("").arg(0).arg("");
    cmd
}

/// What one index-entry step answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EntryReply {
    /// `true` when it changed the key, `false` when there was nothing to do.
    Changed(bool),
    /// The unique value is held by this owner; nothing written.
    Unique(String),
}

impl EntryReply {
    /// Reads the answer of the step on `index_key`.
    pub(crate) fn parse(index_key: &str, reply: Value) -> Result<EntryReply> {
        match Answer::parse(index_key, "index_entry.lua", reply)? {
            Answer::Status(n) => Ok(EntryReply::Changed(n > 0)),
            Answer::Tagged(t, items) if t == tag::UNIQUE => Ok(EntryReply::Unique(items.text(1).unwrap_or_default())),
            other => Err(other.unexpected(index_key, index_key, "index_entry.lua")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn the_script_declares_the_same_letters() {
        let lua = include_str!("index_entry.lua");
        for (name, letter) in [
            ("CLAIM", CLAIM),
            ("ADD", ADD),
            ("REMOVE", REMOVE),
            ("TOUCH", TOUCH),
            ("CHECK", CHECK),
        ] {
            assert!(lua.contains(&format!("local {name} = '{letter}'")), "{name}");
        }
        assert!(lua.contains(&format!("'{}'", tag::UNIQUE)));
        assert!(lua.contains(&format!("kind == '{}' and 'stream'", char::from(STREAM))));
    }

    #[test]
    fn a_claim_is_encoded_byte_for_byte() {
        let call = EntryCall {
            index_key: "users:email:a@x.io",
            action: Action::Claim,
            kind: IndexKind::Unique,
            id: "7",
            score: "",
            life_ms: 60_000,
            stale_owner: "3",
        };
        let packed = call.command().get_packed_command();
        let sha = INDEX_ENTRY.get_hash();
        let want = format!(
            "*10\r\n$7\r\nEVALSHA\r\n$40\r\n{sha}\r\n$1\r\n1\r\n$18\r\nusers:email:a@x.io\r\n$1\r\nn\r\n$1\r\nu\r\n$1\r\n7\r\n$0\r\n\r\n$5\r\n60000\r\n$1\r\n3\r\n"
        );
        assert_eq!(String::from_utf8(packed).unwrap(), want);
    }

    #[test]
    fn answers_are_decoded() {
        let parse = |resp: &[u8]| EntryReply::parse("k", redis::parse_redis_value(resp).unwrap());
        assert_eq!(parse(b":1\r\n").unwrap(), EntryReply::Changed(true));
        assert_eq!(parse(b":0\r\n").unwrap(), EntryReply::Changed(false));
        assert_eq!(
            parse(b"*2\r\n$6\r\nunique\r\n$1\r\n9\r\n").unwrap(),
            EntryReply::Unique("9".into())
        );
        let wrong = parse(b"*2\r\n$9\r\nwrongtype\r\n$1\r\nk\r\n").unwrap_err();
        assert!(matches!(wrong, Error::WrongType { ref key } if key == "k"), "{wrong:?}");
        assert!(parse(b"*1\r\n$5\r\nweird\r\n").is_err());
    }
}
