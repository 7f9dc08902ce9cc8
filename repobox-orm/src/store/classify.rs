//! Which commands may be re-sent after a connection failure, and which
//! errors mean the connection is gone.

use redis::{Cmd, RedisError, Value};

/// Commands that only read, and so can be re-sent after a connection failure.
pub(super) fn is_read_command(name: &[u8]) -> bool {
    const READS: &[&str] = &[
        "GET",
        "MGET",
        "EXISTS",
        "TYPE",
        "TTL",
        "PTTL",
        "STRLEN",
        "HGET",
        "HGETALL",
        "HMGET",
        "HEXISTS",
        "HLEN",
        "HKEYS",
        "HVALS",
        "HSCAN",
        "SMEMBERS",
        "SISMEMBER",
        "SMISMEMBER",
        "SCARD",
        "SSCAN",
        "ZRANGE",
        "ZRANGEBYSCORE",
        "ZREVRANGE",
        "ZREVRANGEBYSCORE",
        "ZCARD",
        "ZCOUNT",
        "ZSCORE",
        "ZRANK",
        "ZREVRANK",
        "ZSCAN",
        "LRANGE",
        "LLEN",
        "LINDEX",
        "XRANGE",
        "XREVRANGE",
        "XLEN",
        "XPENDING",
        "XINFO",
        "PING",
        "ECHO",
        "INFO",
        "DBSIZE",
        "KEYS",
        "SCAN",
        "TIME",
        "SCRIPT",
    ];
    READS.iter().any(|r| r.as_bytes().eq_ignore_ascii_case(name))
}

pub(super) fn command_name(cmd: &Cmd) -> &[u8] {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => name,
        _ => b"",
    }
}

/// Replies that may carry a server error.
pub(super) trait Replies {
    /// The detail of a `READONLY` error among the replies.
    fn read_only_error(&self) -> Option<String>;
}

fn read_only(value: &Value) -> Option<String> {
    match value {
        Value::ServerError(e) if e.kind() == Some(redis::ServerErrorKind::ReadOnly) => {
            Some(e.details().unwrap_or("READONLY").to_owned())
        }
        _ => None,
    }
}

impl Replies for Value {
    fn read_only_error(&self) -> Option<String> {
        read_only(self)
    }
}

impl Replies for Vec<Value> {
    fn read_only_error(&self) -> Option<String> {
        self.iter().find_map(read_only)
    }
}

impl crate::Error {
    /// Whether the server refused who we are (`WRONGPASS`, `NOAUTH`,
    /// `NOPERM`): trying again cannot help, as the [`Store`](super::Store)
    /// itself never retries it.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, crate::Error::Redis(r) if is_auth_failure(r))
    }

    /// Whether Redis could not be reached or cannot serve yet: a refused,
    /// reset or dropped connection, a timeout, or a server that is loading,
    /// has no primary or a cluster that is down (`LOADING`, `MASTERDOWN`,
    /// `CLUSTERDOWN`, `TRYAGAIN`). Waiting may help; nothing else will.
    pub fn is_unreachable(&self) -> bool {
        const BUSY: [&str; 4] = ["LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN"];
        match self {
            crate::Error::Timeout(_) => true,
            crate::Error::Redis(r) => {
                r.is_connection_refusal()
                    || r.is_io_error()
                    || r.is_timeout()
                    || r.is_connection_dropped()
                    || r.code().is_some_and(|c| BUSY.contains(&c))
            }
            _ => false,
        }
    }

    /// Whether a key held another type than the command needs (`WRONGTYPE`).
    pub fn is_wrong_type(&self) -> bool {
        matches!(self, crate::Error::WrongType { .. })
            || matches!(self, crate::Error::Redis(r) if r.code() == Some("WRONGTYPE"))
    }

    /// Whether a stream command found no consumer group to work in
    /// (`NOGROUP`), or `XINFO` found no stream (`no such key`): the stream
    /// was deleted, or never created.
    pub fn is_missing_group(&self) -> bool {
        matches!(self, crate::Error::Redis(r) if r.code() == Some("NOGROUP") || {
            let text = r.to_string();
            text.contains("NOGROUP") || text.contains("no such key")
        })
    }
}

/// Whether the error is the server refusing who we are (`WRONGPASS`, `NOAUTH`,
/// `NOPERM`): trying again cannot help, so it is never retried.
pub(super) fn is_auth_failure(err: &RedisError) -> bool {
    const CODES: [&str; 3] = ["WRONGPASS", "NOAUTH", "NOPERM"];
    err.kind() == redis::ErrorKind::AuthenticationFailed || err.code().is_some_and(|c| CODES.contains(&c)) || {
        let text = err.to_string();
        CODES.iter().any(|c| text.contains(c))
    }
}

/// Whether a cluster's answer says the command did not run: a redirect
/// (`MOVED`, `ASK`), a slot in flux (`TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`),
/// a node that refused the connection, or no connection to send it on
/// (`ClusterConnectionNotFound`: a node that is down or not yet known). An `ASK` to one command of a
/// write pipeline may follow others that ran (keys of a migrating slot), so
/// it counts as not run only for a single command or a read pipeline
/// (`resend_on_ask`).
pub(super) fn not_run(err: &RedisError, resend_on_ask: bool) -> bool {
    use redis::ServerErrorKind::{Ask, ClusterDown, MasterDown, Moved, TryAgain};
    match err.kind() {
        redis::ErrorKind::Server(Moved | TryAgain | ClusterDown | MasterDown) => true,
        redis::ErrorKind::Server(Ask) => resend_on_ask,
        redis::ErrorKind::ClusterConnectionNotFound => true,
        _ => err.is_connection_refusal(),
    }
}

/// Whether the error says the connection is unusable (and a read may be re-sent).
pub(super) fn is_connection_failure(err: &RedisError) -> bool {
    !is_auth_failure(err)
        && (err.is_io_error()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_unrecoverable_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_told_from_writes() {
        assert!(is_read_command(b"hgetall"));
        assert!(is_read_command(b"ZRANGE"));
        for w in [
            "EVALSHA",
            "HSET",
            "XADD",
            "RPUSH",
            "DEL",
            "XACK",
            "XREADGROUP",
            "XAUTOCLAIM",
            "MULTI",
        ] {
            assert!(!is_read_command(w.as_bytes()), "{w}");
        }
    }
}
