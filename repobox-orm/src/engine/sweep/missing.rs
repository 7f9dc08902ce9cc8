//! The hash pass of a sweep: each entity's entries looked up in its indexes,
//! the missing ones counted (and added by a repair), unique values claimed
//! twice reported, and index keys of another type reported for a person.

use std::collections::{BTreeMap, HashMap};

use redis::Value;
use redis::aio::ConnectionLike;

use super::{IndexReport, PROBLEMS_KEPT, index_key_life};
use crate::engine::encoding::{Encoded, decode};
use crate::engine::index::{Action, Repair, check_fields, confirm, previous_index_key, run_repair};
use crate::engine::pipeline;
use crate::engine::read::hgetall;
use crate::entity::{RawHash, RedisEntity};
use crate::error::Result;
use crate::meta::IndexKind;

/// Looks up the entries of the entities at `hash_keys` (one chunk), in
/// every index of `E` or in the `only` one.
pub(crate) async fn find_missing<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    repair: bool,
    reports: &mut [IndexReport],
    hash_keys: &[String],
    claims: &mut HashMap<(usize, String), String>,
    only: Option<usize>,
) -> Result<()> {
    let cmds: Vec<redis::Cmd> = hash_keys.iter().map(|key| hgetall(key)).collect();
    let replies = pipeline::query(conn, &cmds).await?;
    // (index, index key, repair) per entry that each entity should have.
    let mut wanted: Vec<(usize, String, Repair)> = Vec::new();
    for (key, reply) in hash_keys.iter().zip(&replies) {
        let Ok(hash) = RawHash::from_reply(key, reply) else {
            continue;
        };
        if hash.is_empty() {
            continue;
        }
        // Undecodable entities are reported by the index pass, where they are members.
        let Ok(entity) = decode::<E>(key, key, &hash) else {
            continue;
        };
        let Ok(encoded) = Encoded::plain(&entity) else { continue };
        for (i, index) in E::META.indexes.iter().enumerate() {
            if only.is_some_and(|only| only != i) {
                continue;
            }
            let Ok(index_key) = encoded.index_key(&index.key) else {
                continue;
            };
            let score = match index.kind {
                IndexKind::Sorted { score } => {
                    match encoded.fields.get(score).and_then(|b| std::str::from_utf8(b).ok()) {
                        Some(text) => text.to_owned(),
                        None => continue,
                    }
                }
                _ => String::new(),
            };
            let seen = check_fields(index)
                .iter()
                .map(|f| hash.get(f).map(<[u8]>::to_vec))
                .collect();
            wanted.push((
                i,
                index_key,
                Repair {
                    id: encoded.target.id.clone(),
                    hash_key: key.clone(),
                    action: Action::Add(score),
                    seen,
                },
            ));
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let cmds: Vec<redis::Cmd> = wanted
        .iter()
        .map(|(i, index_key, r)| {
            let mut cmd = match E::META.indexes[*i].kind {
                IndexKind::Sorted { .. } => redis::cmd("ZSCORE"),
                IndexKind::Set => redis::cmd("SISMEMBER"),
                IndexKind::Unique => redis::cmd("GET"),
            };
            cmd.arg(index_key);
            if !matches!(E::META.indexes[*i].kind, IndexKind::Unique) {
                cmd.arg(&r.id);
            }
            cmd
        })
        .collect();
    let present = pipeline::query(conn, &cmds).await?;
    // Grouped by index key, one repair call each.
    let mut missing: BTreeMap<(usize, String), Vec<Repair>> = BTreeMap::new();
    let shown = |key: &str| E::META.key.shown(key).into_owned();
    for ((i, index_key, r), held) in wanted.into_iter().zip(present) {
        let unique = matches!(E::META.indexes[i].kind, IndexKind::Unique);
        if unique {
            // Who holds the value, or else who claimed it first in this sweep.
            let holder = match &held {
                Value::BulkString(owner) => Some(String::from_utf8_lossy(owner).into_owned()),
                _ => claims.get(&(i, index_key.clone())).cloned(),
            };
            match holder {
                Some(holder) if holder != r.id => {
                    reports[i].conflicts += 1;
                    if reports[i].problems.len() < PROBLEMS_KEPT {
                        reports[i].problems.push(format!(
                            "`{}` claims a unique value that `{}` holds (index key {}): a conflict to settle by hand",
                            shown(&r.hash_key),
                            shown(&E::META.key.key_from_id(&holder).unwrap_or_default()),
                            crate::error::Shown::new(&index_key),
                        ));
                    }
                    continue;
                }
                _ => {
                    claims.insert((i, index_key.clone()), r.id.clone());
                }
            }
        }
        if let Value::ServerError(e) = &held
            && e.code() == "WRONGTYPE"
        {
            // Its index key holds something else: the entity cannot be in
            // its index, and no repair can put it there. A person decides.
            reports[i].bad += 1;
            let problem = format!(
                "index key {} holds another type: the entities that belong in it are not in it (rename or remove it by hand)",
                crate::error::Shown::new(&index_key),
            );
            if reports[i].problems.len() < PROBLEMS_KEPT && !reports[i].problems.contains(&problem) {
                reports[i].problems.push(problem);
            }
            continue;
        }
        let absent = match (&E::META.indexes[i].kind, &held) {
            (_, Value::ServerError(_)) => false,
            (IndexKind::Set, Value::Int(n)) => *n == 0,
            (IndexKind::Set, Value::Boolean(b)) => !*b,
            (_, held) => matches!(held, Value::Nil),
        };
        if absent {
            missing.entry((i, index_key)).or_default().push(r);
        }
    }
    for ((i, index_key), mut repairs) in missing {
        let index = &E::META.indexes[i];
        // Under the previous key of a re-keyed index, an entry is not missing.
        if let Some(old) = previous_index_key(index, &index_key) {
            let cmds: Vec<redis::Cmd> = repairs
                .iter()
                .map(|r| {
                    let command = if index.kind == IndexKind::Set {
                        "SISMEMBER"
                    } else {
                        "ZSCORE"
                    };
                    redis::cmd(command).arg(&old).arg(&r.id).clone()
                })
                .collect();
            let held = pipeline::query(conn, &cmds).await?;
            let mut held = held.iter();
            repairs.retain(|_| matches!(held.next(), Some(Value::Nil | Value::Int(0) | Value::Boolean(false))));
            if repairs.is_empty() {
                continue;
            }
        }
        let fields = check_fields(index);
        if repair {
            reports[i].missing += repairs.len() as u64;
            let life = index_key_life::<E, C>(conn, &repairs).await?;
            run_repair(conn, index, &index_key, &fields, &repairs, life).await?;
        } else {
            // A check counts what a second look sees again.
            let again = confirm(conn, index, &index_key, &fields, &repairs).await?;
            reports[i].missing += again.into_iter().filter(|a| *a).count() as u64;
        }
    }
    Ok(())
}
