//! The protocols of `rekey.lua` (a move in one script) and
//! `rekey_step.lua` (the single-slot steps of a move across slots); the
//! scripts' headers lay out their calls and answers.

use redis::{Cmd, Value};

use super::reply::Answer;
use super::{Call, REKEY, REKEY_STEP, kind_letter};
use crate::error::Result;
use crate::meta::IndexKind;

/// One index entry a move changes: the index key (filled from the hash),
/// its kind and, in a sorted index, the member's score as stored.
pub(crate) struct Entry {
    pub key: String,
    pub kind: IndexKind,
    pub score: Option<String>,
    /// An entry under the index's previous template
    /// (`#[index(..., previous = "...")]`): the move only removes the
    /// previous id from it.
    pub previous: bool,
}

/// What `rekey.lua` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MoveAnswer {
    /// Nothing at the previous key.
    Absent,
    /// Moved.
    Moved,
    /// The key was taken: the previous hash and its entries were removed.
    Taken,
    /// The previous hash changed since it was read: nothing written.
    Changed,
}

fn pairs(call: &mut Call, hash: &[(Vec<u8>, Vec<u8>)]) {
    call.arg(hash.len());
    for (field, value) in hash {
        call.arg(field.as_slice()).arg(value.as_slice());
    }
}

/// The `EVALSHA` of `rekey.lua` that moves `hash` (as read at `old`) to `new`.
pub(crate) fn move_command(
    (old, old_id): (&str, &str),
    (new, new_id): (&str, &str),
    hash: &[(Vec<u8>, Vec<u8>)],
    entries: &[&Entry],
) -> Cmd {
    let mut call = Call::default();
    call.key(old).key(new);
    for entry in entries {
        call.key(&entry.key);
    }
    call.arg(old_id).arg(new_id);
    pairs(&mut call, hash);
    for entry in entries {
        let letter = kind_letter(entry.kind);
        let letter = if entry.previous {
            letter.to_ascii_uppercase()
        } else {
            letter
        };
        call.arg(&[letter][..]).arg(entry.score.as_deref().unwrap_or(""));
    }
    call.command(&REKEY)
}

/// Reads `rekey.lua`'s answer for the move of `key` (as messages show it).
pub(crate) fn parse_move(key: &str, reply: Value) -> Result<MoveAnswer> {
    match Answer::parse(key, "rekey.lua", reply)? {
        Answer::Status(0) => Ok(MoveAnswer::Absent),
        Answer::Status(1) => Ok(MoveAnswer::Moved),
        Answer::Status(2) => Ok(MoveAnswer::Taken),
        Answer::Status(-1) => Ok(MoveAnswer::Changed),
        other => Err(other.unexpected(key, key, "rekey.lua")),
    }
}

/// The `place` step: writes `hash` at `new` (expiring at `expire_at_ms`,
/// Unix ms, 0 never) unless it is taken or its tombstone says the entity
/// was deleted; `prior` is a hash this mover placed there before, which it
/// may replace.
pub(crate) fn place(
    new: &str,
    tombstone: &str,
    expire_at_ms: u64,
    prior: &[(Vec<u8>, Vec<u8>)],
    hash: &[(Vec<u8>, Vec<u8>)],
) -> Cmd {
    let mut call = Call::default();
    call.key(new).key(tombstone).arg("place").arg(expire_at_ms);
    pairs(&mut call, prior);
    pairs(&mut call, hash);
    call.command(&REKEY_STEP)
}

/// The `release` step: deletes the previous hash at `old` if it still holds `hash`.
pub(crate) fn release(old: &str, hash: &[(Vec<u8>, Vec<u8>)]) -> Cmd {
    let mut call = Call::default();
    call.key(old).arg("release");
    pairs(&mut call, hash);
    call.command(&REKEY_STEP)
}

/// The `unique` step: the unique index key `key` holds `then` (`""`
/// deletes it) if it held `held` (or, when `then` is an id, nothing); a
/// key it creates expires at `expire_at_ms` (Unix ms, 0 never).
pub(crate) fn unique(key: &str, held: &str, then: &str, expire_at_ms: u64) -> Cmd {
    let mut call = Call::default();
    call.key(key).arg("unique").arg(held).arg(then).arg(expire_at_ms);
    call.command(&REKEY_STEP)
}

/// Reads a step's answer: its status number.
pub(crate) fn parse_step(key: &str, reply: Value) -> Result<i64> {
    match Answer::parse(key, "rekey_step.lua", reply)? {
        Answer::Status(n) => Ok(n),
        other => Err(other.unexpected(key, key, "rekey_step.lua")),
    }
}
