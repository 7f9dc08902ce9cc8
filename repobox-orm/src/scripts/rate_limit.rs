//! The protocol of `rate_limit.lua`: grants starts under a queue-wide limit
//! of so many per interval, by Redis's clock. `KEYS[1]` is the limiter;
//! `ARGV` the limit, the interval in ms, how many starts are wanted and the
//! prefix of the granted members' names. The answer is `{granted, wait_ms}`.

use redis::{Cmd, Value};

use super::reply::Answer;
use super::{Call, RATE_LIMIT};
use crate::error::Result;

/// One request for starts.
pub(crate) struct RateCall<'a> {
    pub key: &'a str,
    pub max: u64,
    pub per_ms: u64,
    pub want: u64,
    pub prefix: &'a str,
}

impl RateCall<'_> {
    /// The `EVALSHA` of this request.
    pub(crate) fn command(&self) -> Cmd {
        let mut call = Call::default();
        call.key(self.key)
            .arg(self.max)
            .arg(self.per_ms)
            .arg(self.want)
            .arg(self.prefix);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_is_encoded_and_the_answer_read() {
        let call = RateCall {
            key: "q:rate",
            max: 5,
            per_ms: 1000,
            want: 3,
            prefix: "r1:7:",
        };
        let packed = String::from_utf8(call.command().get_packed_command()).unwrap();
        assert!(
            packed.ends_with("$6\r\nq:rate\r\n$1\r\n5\r\n$4\r\n1000\r\n$1\r\n3\r\n$5\r\nr1:7:\r\n"),
            "{packed}"
        );
        let reply = Value::Array(vec![Value::Int(2), Value::Int(0)]);
        assert_eq!(call.parse(reply).unwrap(), (2, 0));
        let too_many = Value::Array(vec![Value::Int(9), Value::Int(0)]);
        assert!(call.parse(too_many).is_err());
    }
}
