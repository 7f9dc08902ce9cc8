//! The engine's fault hook: a test stops an ordered write after one of its
//! steps, as a crash of the writer would, to show what the steps leave
//! behind. Compiled only with the `testing` feature (the test kit re-exports
//! it as `testing::faults`); a release build has no hook and no lock.
//!
//! A fault is armed for one entity key, so tests that run in parallel do not
//! trip each other's; it fires once and disarms. The one place it is checked
//! is the ordered state machine's `checkpoint`, which a single write and a
//! batch both pass.

use std::sync::Mutex;

/// The steps of an ordered write (see the engine's `ordered` module), after
/// which a fault can stop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderedStep {
    /// The stream entry is in the outbox; nothing else is written.
    Outboxed,
    /// The new index entries are claimed; the hash is not written.
    Claimed,
    /// The hash is written (or, for a delete, deleted); old index entries
    /// are still there, new ones not yet asserted again.
    HashWritten,
    /// The stream entry is appended; the outbox still holds it.
    Appended,
}

static ARMED: Mutex<Vec<(String, OrderedStep)>> = Mutex::new(Vec::new());

/// Arms a fault: the next ordered write of the entity at `key` stops right
/// after `step`, failing as a dropped connection would.
pub fn fail_after(key: &str, step: OrderedStep) {
    ARMED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((key.to_owned(), step));
}

/// Whether a fault is armed for `key` at `step` (and disarms it).
fn fires(key: &str, step: OrderedStep) -> bool {
    let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
    match armed.iter().position(|(k, s)| k == key && *s == step) {
        Some(i) => {
            armed.remove(i);
            true
        }
        None => false,
    }
}

/// Stops the write of the entity at `key` here when a test armed a fault for
/// `step`, failing as a dropped connection would.
pub(crate) fn checkpoint(key: &str, step: OrderedStep) -> crate::Result<()> {
    if fires(key, step) {
        return Err(crate::Error::Redis(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            format!("injected fault after {step:?}"),
        ))));
    }
    Ok(())
}
