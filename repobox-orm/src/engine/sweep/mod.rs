//! The offline counterpart of the checks that index reads do: walk every key
//! of every index of an entity (`SCAN` for the template's pattern), and check
//! or repair every member. A scanned key is touched only if it parses exactly
//! as the template and holds the index's Redis type; any other key is counted
//! as skipped and left alone.
//! Each index key is read in windows of `BULK_CHUNK` members (`ZSCAN`,
//! `SSCAN`), so a walk's memory is that of a window; the hash pass, which
//! finds entities missing from their indexes, is `missing`.

use std::collections::HashMap;

use redis::Value;
use redis::aio::ConnectionLike;

use crate::engine::index::{Repair, scan_members, verify};
use crate::engine::pipeline;
use crate::engine::write::BULK_CHUNK;
use crate::entity::RedisEntity;
use crate::error::Result;
use crate::meta::{IndexKind, IndexMeta, KeyTemplate, Segment};

mod count;
mod missing;
mod report;
mod walk;

pub use self::count::count_entities_with;
pub(crate) use self::missing::find_missing;
pub use self::report::IndexReport;
pub(crate) use self::walk::scan;
pub use self::walk::{Pace, Walk, WalkProgress};

/// How many problem messages a report keeps.
const PROBLEMS_KEPT: usize = 100;

/// The `SCAN MATCH` pattern of a template: placeholders become `*`, glob
/// characters in the literal text are escaped. It matches more than the
/// template's keys (`*` matches `:`); every key is parsed before it is touched.
pub(crate) fn scan_pattern(template: &KeyTemplate) -> String {
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
    sweep_keys::<E, C>(conn, index, None, repair, walk, &mut report).await?;
    // The keys of the index's previous template, until a migration has
    // moved their entries: checked against it (a key that is also one of
    // the index's own template is checked as that, above).
    if let Some(view) = crate::engine::index::previous_view(index) {
        sweep_keys::<E, C>(conn, &view, Some(&index.key), repair, walk, &mut report).await?;
    }
    Ok(report)
}

/// The walk of [`sweep_index`] over the keys of `index`'s template, but
/// those that are keys of `not` too.
async fn sweep_keys<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    not: Option<&KeyTemplate>,
    repair: bool,
    walk: &Walk<'_>,
    report: &mut IndexReport,
) -> Result<()> {
    let pattern = scan_pattern(&index.key);
    let mut pace = walk.begin_scan(conn, &format!("index {}", index.key.source)).await?;
    let mut cursor = 0u64;
    loop {
        let (next, keys) = scan(conn, cursor, &pattern, walk, &mut pace).await?;
        let (mut typed, skipped) = keys_of(conn, &index.key, index.kind.redis_type(), keys).await?;
        if let Some(not) = not {
            typed.retain(|key| not.parse_key(key).is_none());
        }
        report.skipped += skipped;
        for key in &typed {
            report.keys += 1;
            // Window by window: memory stays that of one window, whatever
            // the size of the index.
            let mut at = 0u64;
            loop {
                let (more, members) = scan_members(conn, index.kind, key, at, BULK_CHUNK).await?;
                report.members += u64::try_from(members.len()).unwrap_or(u64::MAX);
                let found = verify::<E, C>(conn, index, key, members, repair, false, None).await?;
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
            return Ok(());
        }
        cursor = next;
    }
}

/// Checks every index of `E`, key by key and member by member, and reports
/// per index what needs a repair; changes nothing. See [`repair_indexes`].
///
/// # Errors
///
/// Fails as every call to Redis can: see [`Error`](crate::Error#errors-of-every-call).
/// Entities that do not decode
/// are counted in the report, not errors.
pub async fn check_indexes<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C) -> Result<Vec<IndexReport>> {
    check_indexes_with::<E, C>(conn, &Walk::new()).await
}

/// [`check_indexes`], telling `walk`'s progress how far it has come and
/// going no faster than its rate.
///
/// # Errors
///
/// Fails as every call to Redis can: see [`Error`](crate::Error#errors-of-every-call).
/// Entities that do not decode
/// are counted in the report, not errors.
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
///
/// # Errors
///
/// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
/// [`Error::WrongType`](crate::Error::WrongType) for an index key of another type (left
/// as it is).
pub async fn repair_indexes<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C) -> Result<Vec<IndexReport>> {
    repair_indexes_with::<E, C>(conn, &Walk::new()).await
}

/// [`repair_indexes`], telling `walk`'s progress how far it has come and
/// going no faster than its rate.
///
/// # Errors
///
/// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
/// [`Error::WrongType`](crate::Error::WrongType) for an index key of another type (left
/// as it is).
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
pub(crate) async fn keys_of<C: ConnectionLike + Send>(
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
pub(crate) async fn index_key_life<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    repairs: &[Repair],
) -> Result<u64> {
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
            find_missing::<E, C>(conn, repair, reports, chunk, &mut claims, None).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
