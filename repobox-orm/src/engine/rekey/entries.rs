//! Moving the entries of an index whose template changed
//! (`#[index(..., previous = "...")]`) from a key of its previous template
//! to the keys of its template, window by window (`Step::rekey_index`).
//!
//! Per member of a window, with the entity's hash as read:
//!
//! - an entity still under its previous key is moved first (`relocate`),
//!   which takes its entries out of the previous index keys itself;
//! - a member whose entity is gone, or whose fields no longer give this
//!   key under the previous template, is removed (`repair.lua`, only while
//!   the entity is as it was seen);
//! - a member that belongs is added under the key its fields give under
//!   the index's template, then removed here, each only while the entity
//!   still holds the fields it was read with. A write in between makes
//!   both refuse (the write put its own entry where it belongs); the
//!   member is looked at again in the next pass over the key.
//!
//! Between the add and the removal the entity is named in both keys;
//! reads list it once.

use std::collections::BTreeMap;

use super::{Wanted, member_key, previous_key, relocate};
use crate::engine::index::{Action, Repair, check_fields, previous_view, run_repair, scan_members};
use crate::engine::pipeline;
use crate::engine::read::hgetall;
use crate::engine::target::fill;
use crate::engine::write::BULK_CHUNK;
use crate::engine::write::route::Router;
use crate::entity::{RawHash, RedisEntity};
use crate::error::Result;
use crate::meta::{IndexKind, IndexMeta};
use crate::store::Store;

/// How often a key is walked before its leftovers are reported: a member
/// a write kept changing under the walk stays for the next run.
const PASSES: usize = 3;

/// What moving one key's entries did.
#[derive(Debug, Default)]
pub(crate) struct EntriesMoved {
    /// Members moved to the index's keys (or whose entity's move took them out).
    pub moved: u64,
    /// Members removed because their entity is gone or does not belong.
    pub removed: u64,
    /// What could not be moved, for a person.
    pub problems: Vec<String>,
}

/// Moves every member of `old`, a key of the previous template of `E`'s
/// index `index`, to where it belongs; with `dry_run`, counts them.
pub(crate) async fn move_entries<E: RedisEntity>(
    store: &mut Store,
    index: &'static IndexMeta,
    old: &str,
    dry_run: bool,
) -> Result<EntriesMoved> {
    let mut out = EntriesMoved::default();
    let view = previous_view(index).expect("only an index with a previous template is re-keyed");
    for _ in 0..PASSES {
        let mut cursor = 0;
        loop {
            let (next, members) = scan_members(store, index.kind, old, cursor, BULK_CHUNK).await?;
            if dry_run {
                out.moved += members.len() as u64;
            } else {
                let ids: Vec<String> = members
                    .iter()
                    .filter_map(|m| String::from_utf8(m.raw.clone()).ok())
                    .collect();
                if ids.len() < members.len() {
                    out.problems
                        .push(format!("{old}: a member that is not UTF-8 (left for `index check`)"));
                }
                window::<E>(store, index, &view, old, &ids, &mut out).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let left: i64 = redis::cmd("EXISTS").arg(old).query_async(store).await?;
        if dry_run || left == 0 {
            return Ok(out);
        }
    }
    out.problems.push(format!(
        "{old}: members kept changing under the move, or are not ids of the entity: run the migration again, or see `index check`"
    ));
    Ok(out)
}

async fn window<E: RedisEntity>(
    store: &mut Store,
    index: &'static IndexMeta,
    view: &IndexMeta,
    old: &str,
    ids: &[String],
    out: &mut EntriesMoved,
) -> Result<()> {
    let mut keyed = Vec::with_capacity(ids.len());
    let mut wanted = Vec::new();
    for id in ids {
        let Ok((key, at_previous)) = member_key(E::META, id) else {
            continue;
        };
        // An entity still under its previous key is moved first.
        match at_previous {
            true => wanted.push(Wanted {
                old: key.clone(),
                new: None,
            }),
            false => {
                if let Some(Ok(previous)) = previous_key(E::META, &key) {
                    wanted.push(Wanted {
                        old: previous,
                        new: Some(key.clone()),
                    });
                }
            }
        }
        keyed.push((id, key));
    }
    if !wanted.is_empty() {
        let mut router = Router::new(store);
        for moved in relocate(store, &mut router, E::META, &wanted).await? {
            if let Err(e) = moved {
                out.problems.push(e.to_string());
            }
        }
    }
    let cmds: Vec<redis::Cmd> = keyed.iter().map(|(_, key)| hgetall(key)).collect();
    let replies = pipeline::query(store, &cmds).await?;
    let fields = check_fields(index);
    let (mut drop, mut moved) = (Vec::new(), Vec::new());
    let mut adds: BTreeMap<String, Vec<Repair>> = BTreeMap::new();
    for ((id, key), reply) in keyed.into_iter().zip(&replies) {
        let Ok(hash) = RawHash::from_reply(&E::META.key.shown(&key), reply) else {
            continue;
        };
        let seen: Vec<Option<Vec<u8>>> = fields.iter().map(|f| hash.get(f).map(<[u8]>::to_vec)).collect();
        let repair = |action| Repair {
            id: id.clone(),
            hash_key: key.clone(),
            action,
            seen: seen.clone(),
        };
        if hash.is_empty() {
            drop.push(repair(Action::Gone));
            continue;
        }
        if fill(&view.key, |f| hash.get(f)).ok().as_deref() != Some(old) {
            drop.push(repair(Action::Mismatch));
            continue;
        }
        let score = match index.kind {
            IndexKind::Sorted { score } => hash.get(score).and_then(|b| std::str::from_utf8(b).ok()),
            _ => Some(""),
        };
        match (fill(&index.key, |f| hash.get(f)), score) {
            (Ok(new), Some(score)) => {
                adds.entry(new).or_default().push(repair(Action::Add(score.to_owned())));
                moved.push(repair(Action::Mismatch));
            }
            _ => out.problems.push(format!(
                "{}: its fields give no key or score of `{}` (left for `index check`)",
                E::META.key.shown(&key),
                index.key.source
            )),
        }
    }
    if !drop.is_empty() {
        run_repair(store, view, old, &fields, &drop, 0).await?;
        out.removed += drop.len() as u64;
    }
    for (new, adds) in &adds {
        let life = crate::engine::sweep::index_key_life::<E, Store>(store, adds).await?;
        run_repair(store, index, new, &fields, adds, life).await?;
    }
    if !moved.is_empty() {
        run_repair(store, view, old, &fields, &moved, 0).await?;
        out.moved += moved.len() as u64;
    }
    Ok(())
}
