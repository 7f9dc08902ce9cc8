//! A check's second look. A check reads an index entry and its entity's
//! hash in two steps, and a write of the application can land between them
//! (a delete, a move to another index key): what the two reads saw together
//! never existed. A check (not a repair, whose script checks inside itself)
//! counts a finding only when a second look, made in the same order as the
//! first, sees it again: a write that landed between the first look's reads
//! has finished by then, and its entry and hash agree.

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};

use super::verify::{Action, Repair};
use crate::engine::pipeline;
use crate::error::Result;
use crate::meta::{IndexKind, IndexMeta};

/// The command that reads whether `id` is under `index_key`.
fn entry(index: &IndexMeta, index_key: &str, id: &str) -> Cmd {
    let mut cmd = match index.kind {
        IndexKind::Sorted { .. } => redis::cmd("ZSCORE"),
        IndexKind::Set => redis::cmd("SISMEMBER"),
        IndexKind::Unique => redis::cmd("GET"),
    };
    cmd.arg(index_key);
    if !matches!(index.kind, IndexKind::Unique) {
        cmd.arg(id);
    }
    cmd
}

/// Whether the answer of [`entry`] says `id` is there.
fn present(index: &IndexMeta, id: &str, reply: &Value) -> bool {
    match (index.kind, reply) {
        (_, Value::Nil) => false,
        (IndexKind::Set, Value::Int(n)) => *n != 0,
        (IndexKind::Set, Value::Boolean(b)) => *b,
        (IndexKind::Unique, Value::BulkString(b)) => b == id.as_bytes(),
        (IndexKind::Unique, _) => false,
        _ => true,
    }
}

/// The score in a `ZSCORE` answer.
fn score(reply: &Value) -> Option<f64> {
    match reply {
        Value::Double(x) => Some(*x),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// The values of `fields` in an `HMGET` answer (`None`: absent); `None`
/// for an answer of another shape.
fn values(reply: Value, fields: usize) -> Option<Vec<Option<Vec<u8>>>> {
    match reply {
        Value::Array(items) if items.len() == fields => Some(
            items
                .into_iter()
                .map(|v| match v {
                    Value::BulkString(b) => Some(b),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    }
}

/// Which of `repairs`, findings of one look at `index_key`, a second look
/// sees again: the entry first and then the hash for what the index pass
/// found (gone, mismatched, re-scored), the hash first and then the entry
/// for what the hash pass found (missing), as the first look read them.
/// Each look is one pipeline; the second is sent after the first answered.
pub(crate) async fn confirm<C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
    fields: &[&'static str],
    repairs: &[Repair],
) -> Result<Vec<bool>> {
    if repairs.is_empty() {
        return Ok(Vec::new());
    }
    let hash = |r: &Repair| {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&r.hash_key).arg(fields);
        cmd
    };
    let entry_first = |r: &Repair| !matches!(r.action, Action::Add(_));
    let first: Vec<Cmd> = repairs
        .iter()
        .map(|r| {
            if entry_first(r) {
                entry(index, index_key, &r.id)
            } else {
                hash(r)
            }
        })
        .collect();
    let first = pipeline::query(conn, &first).await?;
    let second: Vec<Cmd> = repairs
        .iter()
        .map(|r| {
            if entry_first(r) {
                hash(r)
            } else {
                entry(index, index_key, &r.id)
            }
        })
        .collect();
    let second = pipeline::query(conn, &second).await?;
    Ok(repairs
        .iter()
        .zip(first.into_iter().zip(second))
        .map(|(r, (a, b))| {
            let (held, now) = if entry_first(r) { (a, b) } else { (b, a) };
            // A re-scored entry is seen again only with a score that still
            // is not its entity's (a write between the reads moves both).
            let wrong_score = match &r.action {
                Action::Rescore(want) => score(&held) != want.parse::<f64>().ok(),
                _ => true,
            };
            let held = present(index, &r.id, &held);
            let now = values(now, fields.len());
            match r.action {
                Action::Gone => held && now.is_some_and(|v| v.iter().all(Option::is_none)),
                Action::Mismatch | Action::Rescore(_) => held && wrong_score && now.as_ref() == Some(&r.seen),
                Action::Add(_) => !held && now.as_ref() == Some(&r.seen),
            }
        })
        .collect())
}
