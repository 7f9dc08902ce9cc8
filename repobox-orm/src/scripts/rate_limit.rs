//! The protocol of `rate_limit.lua`: grants starts under a queue-wide limit
//! of so many per interval, by Redis's clock, and settles them once the read
//! they were granted for returns. `KEYS[1]` is the limiter; `ARGV` the
//! operation and its arguments.

use redis::{Cmd, Value};

use super::reply::Answer;
use super::{Call, RATE_LIMIT};
use crate::error::Result;

/// The operations (`rate_limit.lua` declares the same).
pub(crate) const GRANT: &str = "grant";
pub(crate) const SETTLE: &str = "settle";

/// A request for starts.
pub(crate) struct Grant<'a> {
    pub key: &'a str,
    pub max: u64,
    pub per_ms: u64,
    pub want: u64,
    pub prefix: &'a str,
    /// How late the granted starts may happen: the read's block.
    pub hold_ms: u64,
}

impl Grant<'_> {
    /// The `EVALSHA` of this request.
    pub(crate) fn command(&self) -> Cmd {
        let mut call = Call::default();
        call.key(self.key)
            .arg(GRANT)
            .arg(self.max)
            .arg(self.per_ms)
            .arg(self.want)
            .arg(self.prefix)
            .arg(self.hold_ms);
        call.command(&RATE_LIMIT)
    }

    /// Reads the answer: how many were granted, and (when none) how long
    /// until one may be.
    pub(crate) fn parse(&self, reply: Value) -> Result<(u64, u64)> {
        if let Value::Array(items) = &reply
            && let [Value::Int(granted), Value::Int(wait)] = items.as_slice()
            && let (Ok(granted), Ok(wait)) = (u64::try_from(*granted), u64::try_from(*wait))
            && granted <= self.want
        {
            return Ok((granted, wait));
        }
        // `{ 'wrongtype', key }`, a server error, or nonsense.
        Err(match Answer::parse(self.key, "rate_limit.lua", reply) {
            Ok(answer) => answer.unexpected(self.key, self.key, "rate_limit.lua"),
            Err(e) => e,
        })
    }
}

/// The `EVALSHA` that scores the `used` starts now and gives back the `unused`.
pub(crate) fn settle(key: &str, used: &[String], unused: &[String]) -> Cmd {
    let mut call = Call::default();
    call.key(key).arg(SETTLE).arg(used.len()).arg(used).arg(unused);
    call.command(&RATE_LIMIT)
}

/// Reads the answer of a settle: how many starts were given back.
pub(crate) fn parse_settle(key: &str, reply: Value) -> Result<u64> {
    Answer::count(key, "rate_limit.lua", reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_declares_the_same_operations_and_the_calls_are_encoded() {
        let lua = include_str!("rate_limit.lua");
        assert!(lua.contains(&format!("local GRANT, SETTLE = '{GRANT}', '{SETTLE}'")));
        let grant = Grant {
            key: "q:rate",
            max: 5,
            per_ms: 1000,
            want: 3,
            prefix: "r1:7:",
            hold_ms: 50,
        };
        let packed = String::from_utf8(grant.command().get_packed_command()).unwrap();
        assert!(
            packed.ends_with(
                "$6\r\nq:rate\r\n$5\r\ngrant\r\n$1\r\n5\r\n$4\r\n1000\r\n$1\r\n3\r\n$5\r\nr1:7:\r\n$2\r\n50\r\n"
            ),
            "{packed}"
        );
        let reply = Value::Array(vec![Value::Int(2), Value::Int(0)]);
        assert_eq!(grant.parse(reply).unwrap(), (2, 0));
        assert!(grant.parse(Value::Array(vec![Value::Int(9), Value::Int(0)])).is_err());
        let packed = String::from_utf8(settle("k", &["a".into()], &["b".into()]).get_packed_command()).unwrap();
        assert!(
            packed.ends_with("$1\r\nk\r\n$6\r\nsettle\r\n$1\r\n1\r\n$1\r\na\r\n$1\r\nb\r\n"),
            "{packed}"
        );
    }
}
