//! What the library tells a metrics recorder (the `metrics` facade: nothing
//! is recorded unless the application installs a recorder, such as
//! `metrics-exporter-prometheus`): each entity operation's latency and
//! errors, by model and operation, and the store's reconnects.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `repobox_operation_duration_seconds` | histogram | `model`, `op` |
//! | `repobox_operation_errors_total` | counter | `model`, `op`, `kind` |
//! | `repobox_write_outcome_unknown_total` | counter | `model`, `op` |
//! | `repobox_store_reconnects_total` | counter | |
//! | `repobox_store_connect_failures_total` | counter | |

use std::future::Future;
use std::time::Instant;

use crate::entity::RedisEntity;
use crate::error::{Error, Result};

/// Runs the operation `op` of `E`, and records its latency and, when it
/// fails, its kind of error.
pub(crate) async fn observe<E: RedisEntity, T>(op: &'static str, run: impl Future<Output = Result<T>>) -> Result<T> {
    let began = Instant::now();
    let out = run.await;
    let model = E::META.name;
    metrics::histogram!("repobox_operation_duration_seconds", "model" => model, "op" => op)
        .record(began.elapsed().as_secs_f64());
    if let Err(e) = &out {
        metrics::counter!("repobox_operation_errors_total", "model" => model, "op" => op, "kind" => kind(e))
            .increment(1);
        if matches!(e, Error::WriteOutcomeUnknown(_)) {
            metrics::counter!("repobox_write_outcome_unknown_total", "model" => model, "op" => op).increment(1);
        }
    }
    out
}

/// The kind of an error, as a label: few values, none of them data.
fn kind(e: &Error) -> &'static str {
    match e {
        Error::NotFound { .. } => "not_found",
        Error::AlreadyExists { .. } | Error::UniqueViolation { .. } => "exists",
        Error::Conflict { .. } | Error::Contention { .. } => "conflict",
        Error::InvalidKeyPart { .. } | Error::InvalidArgument { .. } | Error::Encode { .. } => "invalid",
        Error::Decode { .. } | Error::BadIndexMember { .. } | Error::Decrypt { .. } => "decode",
        Error::WriteOutcomeUnknown(_) => "outcome_unknown",
        Error::ReadOnly(_) => "read_only",
        Error::Timeout(_) => "timeout",
        Error::Closed => "closed",
        e if e.is_unreachable() => "unreachable",
        _ => "other",
    }
}

/// A connection was made: the first of a store, or a reconnect.
pub(crate) fn connected(generation: u64) {
    if generation > 1 {
        metrics::counter!("repobox_store_reconnects_total").increment(1);
    }
}

/// A connect attempt failed.
pub(crate) fn connect_failed() {
    metrics::counter!("repobox_store_connect_failures_total").increment(1);
}
