//! The one answer format of repobox's scripts: an integer (a status whose
//! meaning the script's protocol names: 1 done, 0 missing, ...) on the paths
//! that must build no table, else a table whose first item is a tag naming
//! what happened, followed by its details. `{ 'wrongtype', key }` means the
//! same from every script (`lib.lua`'s `refused_as_other_type`). Each script's
//! protocol module decodes an [`Answer`] into its own typed reply.

use redis::Value;

use crate::error::{Error, Result};

/// The tags of the scripts' tagged answers; each script that answers one
/// declares it in its Lua file too, and its protocol tests check that.
pub(crate) mod tag {
    /// Done, with details (`{ 'ok', stream id }`).
    pub const OK: &str = "ok";
    /// The guard fields hold other values (`{ 'stale', value.. }`).
    pub const STALE: &str = "stale";
    /// A condition did not hold (`{ 'conflict', field }`).
    pub const CONFLICT: &str = "conflict";
    /// A create found the hash present.
    pub const EXISTS: &str = "exists";
    /// A unique value is held by another entity (`{ 'unique', [op,] owner }`).
    pub const UNIQUE: &str = "unique";
    /// A key holds another type (`{ 'wrongtype', key }`).
    pub const WRONGTYPE: &str = "wrongtype";
}

/// An answer of a script, before its protocol reads it.
#[derive(Debug)]
pub(crate) enum Answer {
    /// An integer status.
    Status(i64),
    /// A tag and the whole table (the tag is item 0).
    Tagged(String, Items),
}

/// The items of a tagged answer.
#[derive(Debug)]
pub(crate) struct Items(pub Vec<Value>);

impl Items {
    /// Item `i` as text, if it is a string.
    pub(crate) fn text(&self, i: usize) -> Option<String> {
        match self.0.get(i)? {
            Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::SimpleString(s) => Some(s.clone()),
            Value::Int(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// Item `i` as bytes (`None`: nil or absent).
    pub(crate) fn bytes(&mut self, i: usize) -> Option<Vec<u8>> {
        match self.0.get_mut(i)? {
            Value::BulkString(b) => Some(std::mem::take(b)),
            _ => None,
        }
    }

    /// How many items there are, the tag included.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl Answer {
    /// Reads the answer of `script` for the write of `key` (as messages show
    /// it). A server error is the call's error; `WRONGTYPE` (the server's or
    /// a script's) is [`Error::WrongType`].
    pub(crate) fn parse(key: &str, script: &str, reply: Value) -> Result<Answer> {
        match reply {
            Value::Int(n) => Ok(Answer::Status(n)),
            Value::Array(items) => {
                let tag = match items.first() {
                    Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(Value::SimpleString(s)) => s.clone(),
                    _ => return Err(unexpected(key, script, &items)),
                };
                Ok(Answer::Tagged(tag, Items(items)))
            }
            Value::ServerError(e) if e.code() == "WRONGTYPE" => Err(Error::WrongType { key: key.to_owned() }),
            Value::ServerError(e) => Err(Error::from(redis::RedisError::from(e))),
            other => Err(unexpected(key, script, &other)),
        }
    }

    /// Reads an answer that is a count (how many members or entries
    /// changed): a negative one counts as none.
    pub(crate) fn count(key: &str, script: &str, reply: Value) -> Result<u64> {
        match Answer::parse(key, script, reply)? {
            Answer::Status(n) => Ok(u64::try_from(n).unwrap_or(0)),
            other => Err(other.unexpected(key, key, script)),
        }
    }

    /// The error for an answer the script's protocol does not expect here:
    /// [`Error::WrongType`] for `{ 'wrongtype', key }`, and
    /// [`Error::UnexpectedReply`] for anything else. `key` is the key the
    /// script was called for as messages show it, `raw` that key itself: a
    /// `wrongtype` of it names it as shown (a secret key as its fingerprint).
    pub(crate) fn unexpected(self, key: &str, raw: &str, script: &str) -> Error {
        match self {
            Answer::Tagged(tag, items) if tag == tag::WRONGTYPE => Error::WrongType {
                key: match items.text(1) {
                    Some(k) if k != raw => k,
                    _ => key.to_owned(),
                },
            },
            Answer::Tagged(_, Items(items)) => unexpected(key, script, &items),
            Answer::Status(n) => unexpected(key, script, &n),
        }
    }
}

fn unexpected(key: &str, script: &str, what: &dyn std::fmt::Debug) -> Error {
    Error::UnexpectedReply {
        key: key.to_owned(),
        detail: format!("{script} answered {what:?}"),
    }
}
