//! What the write script (`write_entity.lua`) answers, read into [`WriteReply`].

use redis::Value;

use crate::error::{Error, Result};

/// The first item of each tagged answer of the script (`{ 'stale', ... }`).
pub(super) mod tag {
    pub const OK: &str = "ok";
    pub const STALE: &str = "stale";
    pub const CONFLICT: &str = "conflict";
    pub const EXISTS: &str = "exists";
    pub const UNIQUE: &str = "unique";
    pub const WRONGTYPE: &str = "wrongtype";
    /// Every tag, for the test that holds them against the write script.
    #[cfg(test)]
    pub const ALL: &[&str] = &[OK, STALE, CONFLICT, EXISTS, UNIQUE, WRONGTYPE];
}

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
    /// `key` holds a value of the wrong type; nothing written.
    WrongType { key: String },
}

impl WriteReply {
    /// Reads the script's answer for the write of `key`.
    pub(crate) fn parse(key: &str, reply: Value) -> Result<WriteReply> {
        let unexpected = |what: &dyn std::fmt::Debug| Error::UnexpectedReply {
            key: key.to_owned(),
            detail: format!("the write script answered {what:?}"),
        };
        let items = match reply {
            Value::Int(1) => return Ok(WriteReply::Done),
            Value::Int(0) => return Ok(WriteReply::Missing),
            Value::Array(items) => items,
            Value::ServerError(e) => return Err(Error::from(redis::RedisError::from(e))),
            other => return Err(unexpected(&other)),
        };
        let text = |i: usize| match items.get(i) {
            Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        };
        let Some(found) = text(0) else {
            return Err(unexpected(&items));
        };
        Ok(match found.as_str() {
            tag::OK => match text(1) {
                Some(id) => WriteReply::Appended(id),
                None => WriteReply::Done,
            },
            tag::STALE => WriteReply::Stale(
                items[1..]
                    .iter()
                    .map(|v| match v {
                        Value::BulkString(b) => Some(b.clone()),
                        _ => None,
                    })
                    .collect(),
            ),
            tag::CONFLICT => WriteReply::Conflict {
                field: text(1).unwrap_or_default(),
            },
            tag::EXISTS => WriteReply::Exists,
            tag::UNIQUE => WriteReply::Unique {
                // The script counts ops from 1.
                op: text(1)
                    .and_then(|p| p.parse::<usize>().ok())
                    .unwrap_or(1)
                    .saturating_sub(1),
                owner: text(2).unwrap_or_default(),
            },
            tag::WRONGTYPE => WriteReply::WrongType {
                key: text(1).unwrap_or_else(|| key.to_owned()),
            },
            _ => return Err(unexpected(&items)),
        })
    }
}
