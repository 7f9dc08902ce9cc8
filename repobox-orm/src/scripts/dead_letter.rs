//! The protocol of `dead_letter.lua`: moves one pending delivery to the
//! dead-letter stream and acknowledges it, atomically. `KEYS`: the stream,
//! its dead-letter stream. `ARGV`: the group, the entry id, the reason, the
//! delivery count, the consumer, then the entry's field/value pairs. The
//! answer is `{ 'ok', dead letter id }`.

use redis::{Cmd, Value};

use super::reply::{Answer, tag};
use super::{Call, DEAD_LETTER};
use crate::error::Result;

/// One call of `dead_letter.lua`.
pub(crate) struct DeadLetterCall<'a> {
    pub stream: &'a str,
    pub dead: &'a str,
    pub group: &'a str,
    pub id: &'a str,
    pub reason: &'a str,
    pub deliveries: u64,
    pub consumer: &'a str,
    /// The entry's field/value pairs.
    pub fields: &'a [(&'a String, &'a String)],
}

impl DeadLetterCall<'_> {
    /// The `EVALSHA` of this move.
    pub(crate) fn command(&self) -> Cmd {
        let mut call = Call::default();
        call.key(self.stream).key(self.dead);
        call.arg(self.group)
            .arg(self.id)
            .arg(self.reason)
            .arg(self.deliveries)
            .arg(self.consumer);
        for (k, v) in self.fields {
            call.arg(k.as_str()).arg(v.as_str());
        }
        call.command(&DEAD_LETTER)
    }

    /// Reads the answer: the dead letter's id.
    pub(crate) fn parse(&self, reply: Value) -> Result<String> {
        match Answer::parse(self.stream, "dead_letter.lua", reply)? {
            Answer::Tagged(t, items) if t == tag::OK && items.text(1).is_some() => {
                Ok(items.text(1).unwrap_or_default())
            }
            other => Err(other.unexpected(self.stream, self.stream, "dead_letter.lua")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_is_encoded_byte_for_byte_and_its_answer_read() {
        let (k, v) = ("job_id".to_owned(), "7".to_owned());
        let fields = [(&k, &v)];
        let call = DeadLetterCall {
            stream: "jobs",
            dead: "jobs:dead",
            group: "runners",
            id: "1-0",
            reason: "boom",
            deliveries: 3,
            consumer: "r1",
            fields: &fields,
        };
        let sha = DEAD_LETTER.get_hash();
        let want = format!(
            "*12\r\n$7\r\nEVALSHA\r\n$40\r\n{sha}\r\n$1\r\n2\r\n$4\r\njobs\r\n$9\r\njobs:dead\r\n$7\r\nrunners\r\n\
             $3\r\n1-0\r\n$4\r\nboom\r\n$1\r\n3\r\n$2\r\nr1\r\n$6\r\njob_id\r\n$1\r\n7\r\n"
        );
        assert_eq!(String::from_utf8(call.command().get_packed_command()).unwrap(), want);
        let ok = redis::parse_redis_value(b"*2\r\n$2\r\nok\r\n$3\r\n9-0\r\n").unwrap();
        assert_eq!(call.parse(ok).unwrap(), "9-0");
        assert!(call.parse(Value::Int(1)).is_err());
        assert!(include_str!("dead_letter.lua").contains(&format!("return {{ '{}', dead_id }}", tag::OK)));
    }
}
