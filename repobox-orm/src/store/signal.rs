//! What a [`Store`](super::Store) has to say through redis-rs's error type.
//!
//! `ConnectionLike` can only fail with a `RedisError`, so the store's own
//! outcomes (closed, timed out, read-only, outcome unknown) travel inside one
//! as a typed error source and are turned back into the matching
//! [`Error`](crate::Error) variant by the `From<RedisError>` impl here. Nothing is parsed
//! back out of a message.

use std::sync::Arc;
use std::time::Duration;

use redis::RedisError;

use crate::error::Error;

/// One of the store's own outcomes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StoreSignal {
    #[error("the store is closed")]
    Closed,
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("the server is a read-only replica: {0}")]
    ReadOnly(String),
    #[error("the outcome of a write is unknown: {0}")]
    WriteOutcomeUnknown(String),
}

impl StoreSignal {
    /// The signal that `err` carries, if it is one of the store's.
    pub(crate) fn of(err: &RedisError) -> Option<&StoreSignal> {
        // redis-rs keeps the io::Error behind an `Arc<dyn Error>` and hands
        // that out as the source.
        let source = std::error::Error::source(err)?;
        let io: &std::io::Error = match source.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
            Some(shared) => shared.downcast_ref()?,
            None => source.downcast_ref()?,
        };
        io.get_ref()?.downcast_ref()
    }
}

impl From<StoreSignal> for RedisError {
    fn from(signal: StoreSignal) -> Self {
        // The one way into a `RedisError` that keeps a typed source.
        RedisError::from(std::io::Error::other(signal))
    }
}

impl From<redis::RedisError> for Error {
    fn from(err: redis::RedisError) -> Self {
        match StoreSignal::of(&err) {
            Some(StoreSignal::Closed) => Error::Closed,
            Some(StoreSignal::Timeout(d)) => Error::Timeout(*d),
            Some(StoreSignal::ReadOnly(detail)) => Error::ReadOnly(detail.clone()),
            Some(StoreSignal::WriteOutcomeUnknown(detail)) => Error::WriteOutcomeUnknown(detail.clone()),
            None if is_oom(&err) => Error::OutOfMemory(err.detail().unwrap_or("OOM").to_owned()),
            None => Error::Redis(err),
        }
    }
}

/// Whether the server refused a command for lack of memory: `-OOM ...`, a
/// script's write refused so (`... OOM command not allowed ...`), or a
/// transaction aborted because one of its commands was.
fn is_oom(err: &RedisError) -> bool {
    if err.code() == Some("OOM") {
        return true;
    }
    // A transaction aborted (EXECABORT) because a command was refused so.
    if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ExecAbort)
        && let Some(errors) = err.clone().into_server_errors()
        && errors.iter().any(|(_, e)| e.code() == "OOM")
    {
        return true;
    }
    let text = err.to_string();
    text.contains("OOM command not allowed") || text.contains("\"OOM\": command not allowed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_survives_the_trip_through_a_redis_error() {
        for signal in [
            StoreSignal::Closed,
            StoreSignal::Timeout(Duration::from_micros(1_234_567)),
            StoreSignal::ReadOnly("READONLY You can't write against a read only replica.".into()),
            StoreSignal::WriteOutcomeUnknown("broken pipe: timeout:7".into()),
        ] {
            let err = RedisError::from(signal.clone());
            assert_eq!(StoreSignal::of(&err), Some(&signal));
            let converted = crate::Error::from(err);
            let expected = match signal {
                StoreSignal::Closed => matches!(converted, crate::Error::Closed),
                StoreSignal::Timeout(d) => matches!(converted, crate::Error::Timeout(t) if t == d),
                StoreSignal::ReadOnly(ref s) => matches!(converted, crate::Error::ReadOnly(ref t) if t == s),
                StoreSignal::WriteOutcomeUnknown(ref s) => {
                    matches!(converted, crate::Error::WriteOutcomeUnknown(ref t) if t == s)
                }
            };
            assert!(expected, "{signal:?} became {converted:?}");
        }
    }

    #[test]
    fn other_errors_carry_no_signal_even_when_they_look_like_one() {
        let lookalike = RedisError::from((redis::ErrorKind::Client, "store", "repobox-store:closed".to_owned()));
        assert_eq!(StoreSignal::of(&lookalike), None);
        let io = RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"));
        assert_eq!(StoreSignal::of(&io), None);
        assert!(matches!(crate::Error::from(io), crate::Error::Redis(_)));
    }
}
