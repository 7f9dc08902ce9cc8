//! The outbox of a stream: where an ordered write (an entity created with a
//! stream entry on a cluster, where the two are in different slots) records
//! the entry before it writes anything else, and clears it once the entry is
//! appended. A writer that dies between the steps leaves its entry here;
//! [`Queue::sweep_outbox`](crate::Queue::sweep_outbox) appends it for the
//! entity that exists, so no created entity loses its stream entry. An entry
//! may then be appended twice; consumers must be idempotent (the runner's
//! lease keeps a job from running twice at once, and a finished job from
//! running again).
//!
//! Each entry belongs to the attempt that recorded it. A caller that retries
//! a write whose first attempt failed after writing the entity (a failover at
//! the `XADD`) is refused `AlreadyExists`; that refusal clears only its own
//! attempt's record, never the first attempt's, which the sweep then appends.
//!
//! The outbox is the hash `<stream>:outbox`: field = the attempt's id (32
//! random hex digits), value = JSON `{"at": <unix ms>, "key": <the entity's
//! hash key>, "entry": [[field, value], ...]}`. A record without `"key"`
//! (written before attempt ids) is keyed by its field.

use std::time::{SystemTime, UNIX_EPOCH};

use redis::Cmd;

use crate::error::Result;

/// The outbox key of `stream`.
pub fn key(stream: &str) -> String {
    format!("{stream}:outbox")
}

/// The clock of the outbox's records, in unix ms.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A new attempt id (see [`random_id`](crate::random_id)).
pub(crate) fn attempt_id() -> Result<String> {
    crate::random_id("outbox")
}

/// Records `entry` for the entity at `hash_key`, as attempt `attempt`.
pub(crate) fn record(stream: &str, attempt: &str, hash_key: &str, entry: &[(&str, &str)]) -> Cmd {
    let value = serde_json::json!({ "at": now_ms(), "key": hash_key, "entry": entry });
    let mut cmd = redis::cmd("HSET");
    cmd.arg(key(stream)).arg(attempt).arg(value.to_string());
    cmd
}

/// Appends `entry` to `stream` (answers its id).
pub(crate) fn append(stream: &str, entry: &[(&str, &str)]) -> Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*").arg(entry);
    cmd
}

/// Takes attempt `attempt`'s record out of the outbox (and no other's).
pub(crate) fn clear(stream: &str, attempt: &str) -> Cmd {
    let mut cmd = redis::cmd("HDEL");
    cmd.arg(key(stream)).arg(attempt);
    cmd
}
