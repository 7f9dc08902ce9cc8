//! The protocols of `put.lua` and `update.lua`, the writes that maintain no
//! index entry: [`PutCall`] writes the hash and its TTL, [`UpdateCall`] only
//! sets fields of a hash that exists. Both answer a [`PutReply`].

use std::borrow::Cow;

use redis::{Cmd, Value};

use super::reply::{Answer, tag};
use super::{Call, PUT, UPDATE};
use crate::error::Result;

/// The modes of `put.lua` (it declares the same).
pub(crate) const SAVE: &str = "s";
pub(crate) const UPDATE_MODE: &str = "u";
pub(crate) const CREATE: &str = "c";
/// The answer statuses of both scripts.
pub(crate) const DONE: i64 = 1;
pub(crate) const MISSING: i64 = 0;

/// How `put.lua` writes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum PutMode {
    /// Whether or not the hash exists.
    Save,
    /// Only if it exists.
    Update,
    /// Only if it does not.
    Create,
}

/// Field/value pairs to set.
type Pairs<'a> = [(&'static str, Cow<'a, [u8]>)];

/// One call of `put.lua`.
pub(crate) struct PutCall<'a> {
    pub key: &'a str,
    pub mode: PutMode,
    /// The TTL in ms (0: leave it).
    pub ttl_ms: u64,
    pub set: &'a Pairs<'a>,
    pub del: &'a [&'static str],
}

impl PutCall<'_> {
    /// The `EVALSHA` of this write.
    pub(crate) fn command(&self) -> Cmd {
        let mut call = Call::default();
        call.key(self.key);
        let mode = match self.mode {
            PutMode::Save => SAVE,
            PutMode::Update => UPDATE_MODE,
            PutMode::Create => CREATE,
        };
        call.arg(mode).arg(self.ttl_ms).arg(self.set.len());
        for (name, value) in self.set {
            call.arg(*name).arg(value.as_ref());
        }
        call.arg(self.del);
        call.command(&PUT)
    }
}

/// One call of `update.lua`.
pub(crate) struct UpdateCall<'a> {
    pub key: &'a str,
    pub set: &'a Pairs<'a>,
}

impl UpdateCall<'_> {
    /// The `EVALSHA` of this update.
    pub(crate) fn command(&self) -> Cmd {
        let mut call = Call::default();
        call.key(self.key);
        for (name, value) in self.set {
            call.arg(*name).arg(value.as_ref());
        }
        call.command(&UPDATE)
    }
}

/// What `put.lua` or `update.lua` answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PutReply {
    Done,
    /// The hash is absent and the write needs it; nothing written.
    Missing,
    /// A create found the hash present; nothing written.
    Exists,
}

impl PutReply {
    /// Reads the answer of `script` for the write of `key` (as messages show
    /// it; `raw` is the key itself).
    pub(crate) fn parse(key: &str, raw: &str, script: &str, reply: Value) -> Result<PutReply> {
        match Answer::parse(key, script, reply)? {
            Answer::Status(DONE) => Ok(PutReply::Done),
            Answer::Status(MISSING) => Ok(PutReply::Missing),
            Answer::Tagged(t, _) if t == tag::EXISTS => Ok(PutReply::Exists),
            other => Err(other.unexpected(key, raw, script)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn the_scripts_declare_the_same_constants() {
        let put = include_str!("put.lua");
        assert!(put.contains(&format!(
            "local SAVE, UPDATE, CREATE = '{SAVE}', '{UPDATE_MODE}', '{CREATE}'"
        )));
        for lua in [put, include_str!("update.lua")] {
            assert!(lua.contains(&format!("local DONE, MISSING = {DONE}, {MISSING}")));
            assert!(lua.contains("refused_as_other_type"));
        }
        assert!(put.contains(&format!("'{}'", tag::EXISTS)));
    }

    #[test]
    fn calls_are_encoded_byte_for_byte() {
        let set = [("name", Cow::Borrowed(&b"ann"[..]))];
        let put = PutCall {
            key: "user:1",
            mode: PutMode::Create,
            ttl_ms: 5,
            set: &set,
            del: &["note"],
        };
        let sha = PUT.get_hash();
        let want = format!(
            "*10\r\n$7\r\nEVALSHA\r\n$40\r\n{sha}\r\n$1\r\n1\r\n$6\r\nuser:1\r\n$1\r\nc\r\n$1\r\n5\r\n$1\r\n1\r\n$4\r\nname\r\n$3\r\nann\r\n$4\r\nnote\r\n"
        );
        assert_eq!(String::from_utf8(put.command().get_packed_command()).unwrap(), want);
        let update = UpdateCall {
            key: "user:1",
            set: &set,
        };
        let sha = UPDATE.get_hash();
        let want =
            format!("*6\r\n$7\r\nEVALSHA\r\n$40\r\n{sha}\r\n$1\r\n1\r\n$6\r\nuser:1\r\n$4\r\nname\r\n$3\r\nann\r\n");
        assert_eq!(String::from_utf8(update.command().get_packed_command()).unwrap(), want);
    }

    #[test]
    fn answers_are_decoded() {
        let parse =
            |resp: &[u8]| PutReply::parse("user:1", "user:1", "put.lua", redis::parse_redis_value(resp).unwrap());
        assert_eq!(parse(b":1\r\n").unwrap(), PutReply::Done);
        assert_eq!(parse(b":0\r\n").unwrap(), PutReply::Missing);
        assert_eq!(parse(b"*1\r\n$6\r\nexists\r\n").unwrap(), PutReply::Exists);
        let wrong = parse(b"*2\r\n$9\r\nwrongtype\r\n$6\r\nuser:1\r\n").unwrap_err();
        assert!(
            matches!(wrong, Error::WrongType { ref key } if key == "user:1"),
            "{wrong:?}"
        );
        assert!(matches!(parse(b":2\r\n"), Err(Error::UnexpectedReply { .. })));
    }
}
