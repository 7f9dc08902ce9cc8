//! What the write script (`write_entity.lua`) answers, read into [`WriteReply`].

use redis::Value;

use crate::error::Result;
use crate::scripts::reply::Answer;

pub(super) use crate::scripts::reply::tag;

/// What the write script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteReply {
    /// Written (`1`).
    Done,
    /// Written, and the stream entry got this id (`{ 'ok', id }`).
    Appended(String),
    /// The hash is absent and the mode needs it (`0`).
    Missing,
    /// The guard fields hold these values, not the expected ones; nothing written.
    Stale(Vec<Option<Vec<u8>>>),
    /// A condition did not hold; nothing written.
    Conflict { field: String },
    /// A create found the hash present; nothing written.
    Exists,
    /// The unique index of op `op` (0-based) is held by `owner`; nothing written.
    Unique { op: usize, owner: String },
}

impl WriteReply {
    /// Reads the script's answer for the write of `key` (as messages show
    /// it; `raw` is the key itself). `script` names the script in messages.
    pub(crate) fn parse(key: &str, raw: &str, script: &str, reply: Value) -> Result<WriteReply> {
        let (found, mut items) = match Answer::parse(key, script, reply)? {
            Answer::Status(1) => return Ok(WriteReply::Done),
            Answer::Status(0) => return Ok(WriteReply::Missing),
            Answer::Tagged(found, items) => (found, items),
            other => return Err(other.unexpected(key, raw, script)),
        };
        Ok(match found.as_str() {
            tag::OK => match items.text(1) {
                Some(id) => WriteReply::Appended(id),
                None => WriteReply::Done,
            },
            tag::STALE => WriteReply::Stale((1..items.len()).map(|i| items.bytes(i)).collect()),
            tag::CONFLICT => WriteReply::Conflict {
                field: items.text(1).unwrap_or_default(),
            },
            tag::EXISTS => WriteReply::Exists,
            tag::UNIQUE => WriteReply::Unique {
                // The script counts ops from 1.
                op: items
                    .text(1)
                    .and_then(|p| p.parse::<usize>().ok())
                    .unwrap_or(1)
                    .saturating_sub(1),
                owner: items.text(2).unwrap_or_default(),
            },
            _ => return Err(Answer::Tagged(found, items).unexpected(key, raw, script)),
        })
    }
}
