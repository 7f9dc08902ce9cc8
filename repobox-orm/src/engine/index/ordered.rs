//! Index repair on a cluster, where an index key and its members' hashes are
//! in different slots and `repair.lua` cannot see both: each repair is made
//! on the index key alone, then every repaired member's hash is read again.
//! A member whose fields are still what the engine saw keeps the repair; one
//! whose entity changed in between is put where its fields now say (added
//! with its score if it belongs under the key, removed if not).
//!
//! With the ordered writes' last step (the new entry asserted again after the
//! hash is written), no interleaving of a write and a repair loses an entry:
//! a repair's removal that lands after that assertion reads the hash after it
//! too, and puts the member back.

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};

use super::verify::{Action, Repair};
use crate::engine::target::fill;
use crate::engine::write::send_steps;
use crate::error::Result;
use crate::meta::{IndexKind, IndexMeta};
use crate::scripts::index_entry::{Action as Step, EntryCall};

fn entry(index: &IndexMeta, index_key: &str, action: Step, id: &str, score: &str, life_ms: u64) -> Cmd {
    EntryCall {
        index_key,
        action,
        kind: index.kind,
        id,
        score,
        life_ms,
        stale_owner: "",
    }
    .command()
}

/// Where the raw `values` of `fields` put a member: `Some(score)` (empty
/// for a set or unique index) when under `index_key`, `None` when not.
fn place(index: &IndexMeta, index_key: &str, fields: &[&'static str], values: &[Option<Vec<u8>>]) -> Option<String> {
    let value = |f: &'static str| fields.iter().position(|g| *g == f).and_then(|i| values[i].as_deref());
    if fill(&index.key, value).ok().as_deref() != Some(index_key) {
        return None;
    }
    match index.kind {
        IndexKind::Sorted { score } => {
            let text = std::str::from_utf8(value(score)?).ok()?;
            text.parse::<f64>().ok().filter(|x| !x.is_nan())?;
            Some(text.to_owned())
        }
        _ => Some(String::new()),
    }
}

/// Makes `repairs` on `index_key` as single-slot steps, then settles every
/// member whose entity changed meanwhile.
pub(crate) async fn repair_ordered<C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
    fields: &[&'static str],
    repairs: &[Repair],
    ttl_ms: u64,
) -> Result<()> {
    let first: Vec<Cmd> = repairs
        .iter()
        .map(|r| match &r.action {
            Action::Gone | Action::Mismatch => entry(index, index_key, Step::Remove, &r.id, "", 0),
            Action::Rescore(score) => entry(index, index_key, Step::Add, &r.id, score, 0),
            Action::Add(score) => entry(index, index_key, Step::Add, &r.id, score, ttl_ms),
        })
        .collect();
    send_steps(conn, &first).await?;
    let reads: Vec<Cmd> = repairs
        .iter()
        .map(|r| {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(&r.hash_key).arg(fields);
            cmd
        })
        .collect();
    let now = send_steps(conn, &reads).await?;
    let mut settle = Vec::new();
    for (r, reply) in repairs.iter().zip(now) {
        let values: Vec<Option<Vec<u8>>> = match reply {
            Value::Array(items) if items.len() == fields.len() => items
                .into_iter()
                .map(|v| match v {
                    Value::BulkString(b) => Some(b),
                    _ => None,
                })
                .collect(),
            _ => continue,
        };
        if values == r.seen {
            continue;
        }
        settle.push(match place(index, index_key, fields, &values) {
            Some(score) => entry(index, index_key, Step::Add, &r.id, &score, ttl_ms),
            None => entry(index, index_key, Step::Remove, &r.id, "", 0),
        });
    }
    if !settle.is_empty() {
        tracing::debug!(
            index = index.name,
            key = index_key,
            members = settle.len(),
            "entities changed during an ordered repair; settling them"
        );
        send_steps(conn, &settle).await?;
    }
    Ok(())
}
