//! The offline counterpart of the checks that index reads do: walk every key
//! of every index of an entity (`SCAN` for the template's pattern), and check
//! or repair every member. A scanned key is touched only if it parses exactly
//! as the template and holds the index's Redis type; any other key is counted
//! as skipped and left alone.

use std::collections::{BTreeMap, HashMap};

use redis::Value;
use redis::aio::ConnectionLike;

use crate::engine::encoding::{Encoded, decode};
use crate::engine::index::{Action, Repair, check_fields, run_repair, scan_members, verify};
use crate::engine::pipeline;
use crate::engine::read::hgetall;
use crate::engine::write::BULK_CHUNK;
use crate::entity::{RawHash, RedisEntity};
use crate::error::Result;
use crate::meta::{IndexKind, IndexMeta, KeyTemplate, Segment};

mod count;
mod report;
mod walk;

pub use self::count::count_entities_with;
pub use self::report::IndexReport;
use self::walk::scan;
pub use self::walk::{Pace, Walk, WalkProgress};

/// How many problem messages a report keeps.
const PROBLEMS_KEPT: usize = 100;

/// The `SCAN MATCH` pattern of a template: placeholders become `*`, glob
/// characters in the literal text are escaped. It matches more than the
/// template's keys (`*` matches `:`); every key is parsed before it is touched.
fn scan_pattern(template: &KeyTemplate) -> String {
    let mut pattern = String::new();
    for segment in template.segments {
        match segment {
            Segment::Lit(text) => {
                for c in text.chars() {
                    if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                        pattern.push('\\');
                    }
                    pattern.push(c);
                }
            }
            Segment::Field { .. } => pattern.push('*'),
        }
    }
    pattern
}

async fn sweep_index<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &'static IndexMeta,
    repair: bool,
    walk: &Walk<'_>,
) -> Result<IndexReport> {
    let mut report = IndexReport {
        kind: match index.kind {
            IndexKind::Sorted { .. } => "sorted",
            IndexKind::Set => "set",
            IndexKind::Unique => "unique",
        },
        index: index.name,
        template: index.key.source,
        repaired: repair,
        ..IndexReport::default()
    };
    let pattern = scan_pattern(&index.key);
    let mut pace = walk.begin_scan(conn, &format!("index {}", index.key.source)).await?;
    let mut cursor = 0u64;
    loop {
        let (next, keys) = scan(conn, cursor, &pattern, walk, &mut pace).await?;
        let (typed, skipped) = keys_of(conn, &index.key, index.kind.redis_type(), keys).await?;
        report.skipped += skipped;
        for key in &typed {
            report.keys += 1;
            // Window by window: memory stays that of one window, whatever
            // the size of the index.
            let mut at = 0u64;
            loop {
                let (more, members) = scan_members(conn, index.kind, key, at, BULK_CHUNK).await?;
                report.members += members.len() as u64;
                let found = verify::<E, C>(conn, index, key, members, repair, false).await?;
                report.gone += found.gone;
                report.mismatched += found.mismatched;
                report.rescored += found.rescored;
                report.bad += found.errors.len() as u64;
                let room = PROBLEMS_KEPT.saturating_sub(report.problems.len());
                report
                    .problems
                    .extend(found.errors.iter().take(room).map(ToString::to_string));
                if more == 0 {
                    break;
                }
                at = more;
            }
        }
        if next == 0 {
            return Ok(report);
        }
        cursor = next;
    }
}

/// Checks every index of `E`, key by key and member by member, and reports
/// per index what needs a repair; changes nothing. See [`repair_indexes`].
pub async fn check_indexes<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C) -> Result<Vec<IndexReport>> {
    check_indexes_with::<E, C>(conn, &Walk::new()).await
}

/// [`check_indexes`], telling `walk`'s progress how far it has come and
/// going no faster than its rate.
pub async fn check_indexes_with<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    walk: &Walk<'_>,
) -> Result<Vec<IndexReport>> {
    sweep::<E, C>(conn, false, walk).await
}

/// Walks every index of `E` as [`check_indexes`] does and repairs it: removes
/// members whose entity is gone or no longer belongs, corrects scores. Each
/// change is made only if the entity is still as it was seen, so it is safe
/// while the application writes. Keys that are not index keys, and members
/// that are not ids or whose entity does not decode, are counted and left alone.
///
/// ```no_run
/// # use repobox_orm::prelude::*;
/// # #[derive(RedisEntity)] #[key("job:<id>")] #[index(set = "jobs:user:<user_id>")]
/// # struct Job { id: String, user_id: String }
/// # async fn f(conn: &mut Store) -> repobox_orm::Result<()> {
/// for report in repobox_orm::repair_indexes::<Job, _>(conn).await? {
///     println!("{}: {} gone, {} mismatched", report.index, report.gone, report.mismatched);
/// }
/// # Ok(()) }
/// ```
pub async fn repair_indexes<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C) -> Result<Vec<IndexReport>> {
    repair_indexes_with::<E, C>(conn, &Walk::new()).await
}

/// [`repair_indexes`], telling `walk`'s progress how far it has come and
/// going no faster than its rate.
pub async fn repair_indexes_with<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    walk: &Walk<'_>,
) -> Result<Vec<IndexReport>> {
    sweep::<E, C>(conn, true, walk).await
}

async fn sweep<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    repair: bool,
    walk: &Walk<'_>,
) -> Result<Vec<IndexReport>> {
    crate::store::scan::ensure_whole_keyspace(conn).await?;
    let mut reports = Vec::with_capacity(E::META.indexes.len());
    for index in E::META.indexes {
        reports.push(sweep_index::<E, C>(conn, index, repair, walk).await?);
    }
    if !reports.is_empty() {
        sweep_entities::<E, C>(conn, repair, &mut reports, walk).await?;
    }
    Ok(reports)
}

/// The keys of one `SCAN` batch that are exactly `template`'s keys and hold `redis_type`.
async fn keys_of<C: ConnectionLike + Send>(
    conn: &mut C,
    template: &KeyTemplate,
    redis_type: &str,
    keys: Vec<Value>,
) -> Result<(Vec<String>, u64)> {
    let mut skipped = 0;
    let mut shaped = Vec::with_capacity(keys.len());
    for key in keys {
        match key {
            Value::BulkString(b) => match String::from_utf8(b) {
                Ok(key) if template.parse_key(&key).is_some() => shaped.push(key),
                _ => skipped += 1,
            },
            _ => skipped += 1,
        }
    }
    if shaped.is_empty() {
        return Ok((shaped, skipped));
    }
    let cmds: Vec<redis::Cmd> = shaped
        .iter()
        .map(|key| {
            let mut cmd = redis::cmd("TYPE");
            cmd.arg(key);
            cmd
        })
        .collect();
    let types: Vec<String> = pipeline::query(conn, &cmds)
        .await?
        .into_iter()
        .map(|v| redis::from_redis_value::<String>(v).unwrap_or_default())
        .collect();
    let mut typed = Vec::with_capacity(shaped.len());
    for (key, kind) in shaped.into_iter().zip(types) {
        if kind == redis_type {
            typed.push(key);
        } else if kind != "none" {
            // Someone else's key (a key gone since the scan is no one's).
            skipped += 1;
        }
    }
    Ok((typed, skipped))
}

/// How long an index key that a repair adds `repairs` to must live, in ms
/// (0: no TTL): as long as the longest-lived of those entities, as the
/// writes keep it (a session set follows its sessions, however far they were
/// extended); the entity's declared TTL where a hash has none left to read.
async fn index_key_life<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, repairs: &[Repair]) -> Result<u64> {
    let Some(declared) = E::META.ttl else {
        return Ok(0);
    };
    let cmds: Vec<redis::Cmd> = repairs
        .iter()
        .map(|r| {
            let mut cmd = redis::cmd("PTTL");
            cmd.arg(&r.hash_key);
            cmd
        })
        .collect();
    let left = pipeline::query(conn, &cmds)
        .await?
        .into_iter()
        .filter_map(|v| redis::from_redis_value::<i64>(v).ok())
        .filter_map(|ms| u64::try_from(ms).ok())
        .max();
    Ok(left
        .filter(|ms| *ms > 0)
        .unwrap_or_else(|| u64::try_from(declared.as_millis()).unwrap_or(u64::MAX)))
}

/// Walks every hash of `E` and finds the entities missing from the index key
/// their fields give; a repair adds them (each only if the entity still holds
/// those fields), giving an index key it creates the entity's TTL. A unique
/// value held by, or also claimed by, another entity is left to its holder
/// and counted as a conflict.
async fn sweep_entities<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    repair: bool,
    reports: &mut [IndexReport],
    walk: &Walk<'_>,
) -> Result<()> {
    let pattern = scan_pattern(&E::META.key);
    let mut pace = walk.begin_scan(conn, &format!("hashes {}", E::META.key.source)).await?;
    let mut cursor = 0u64;
    // Per unique index and value: the first entity seen claiming it.
    let mut claims: HashMap<(usize, String), String> = HashMap::new();
    loop {
        let (next, keys) = scan(conn, cursor, &pattern, walk, &mut pace).await?;
        let (hashes, _) = keys_of(conn, &E::META.key, "hash", keys).await?;
        for chunk in hashes.chunks(BULK_CHUNK) {
            find_missing::<E, C>(conn, repair, reports, chunk, &mut claims).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

async fn find_missing<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    repair: bool,
    reports: &mut [IndexReport],
    hash_keys: &[String],
    claims: &mut HashMap<(usize, String), String>,
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
            reports[i].missing += 1;
            missing.entry((i, index_key)).or_default().push(r);
        }
    }
    if repair {
        for ((i, index_key), repairs) in missing {
            let index = &E::META.indexes[i];
            let life = index_key_life::<E, C>(conn, &repairs).await?;
            run_repair(conn, index, &index_key, &check_fields(index), &repairs, life).await?;
        }
    }
    Ok(())
}
