//! The protocol of `trim.lua`: trims a stream without dropping an entry a
//! consumer group still needs. `KEYS[1]` is the stream; `ARGV` the
//! [`Trim`]'s mode and its bound. The answer is how many entries went.

use redis::{Cmd, Value};

use super::reply::Answer;
use super::{Call, TRIM};
use crate::error::Result;

/// The modes (`trim.lua` declares the same).
pub(crate) const MAXLEN: &str = "maxlen";
pub(crate) const AGE: &str = "age";

/// How a stream is trimmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trim {
    /// Keep about this many entries.
    MaxLen(u64),
    /// Drop the entries older than this many ms, by Redis's clock.
    Age(u64),
}

impl Trim {
    /// The `EVALSHA` of this trim of `stream`.
    pub(crate) fn command(self, stream: &str) -> Cmd {
        let mut call = Call::default();
        call.key(stream);
        match self {
            Trim::MaxLen(n) => call.arg(MAXLEN).arg(n),
            Trim::Age(ms) => call.arg(AGE).arg(ms),
        };
        call.command(&TRIM)
    }

    /// Reads the answer for `stream`: how many entries went.
    pub(crate) fn parse(stream: &str, reply: Value) -> Result<u64> {
        Answer::count(stream, "trim.lua", reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_declares_the_same_modes_and_the_call_is_encoded_byte_for_byte() {
        let lua = include_str!("trim.lua");
        assert!(lua.contains(&format!("local MAXLEN, AGE = '{MAXLEN}', '{AGE}'")));
        let sha = TRIM.get_hash();
        let want =
            format!("*6\r\n$7\r\nEVALSHA\r\n$40\r\n{sha}\r\n$1\r\n1\r\n$4\r\njobs\r\n$3\r\nage\r\n$4\r\n5000\r\n");
        let packed = Trim::Age(5000).command("jobs").get_packed_command();
        assert_eq!(String::from_utf8(packed).unwrap(), want);
        assert_eq!(Trim::parse("jobs", Value::Int(3)).unwrap(), 3);
    }
}
