//! The offline counterpart of the checks that index reads do: walk every key
//! of every index of an entity (`SCAN` for the template's pattern), and check
//! or repair every member. A scanned key is touched only if it parses exactly
//! as the template and holds the index's Redis type; any other key is counted
//! as skipped and left alone.

use redis::Value;
use redis::aio::ConnectionLike;

use crate::engine::index::{all_members, verify};
use crate::engine::write::BULK_CHUNK;
use crate::entity::RedisEntity;
use crate::error::Result;
use crate::meta::{IndexMeta, KeyTemplate, Segment};

/// How many keys one `SCAN` call asks for.
const SCAN_COUNT: u64 = 500;

/// How many problem messages a report keeps.
const PROBLEMS_KEPT: usize = 100;

/// What a check or repair of one index found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IndexReport {
    /// The index's name (`by_user_id`).
    pub index: &'static str,
    /// The index's key template.
    pub template: &'static str,
    /// Whether what needed a repair was repaired (`repair_indexes`) or only counted (`check_indexes`).
    pub repaired: bool,
    /// Index keys scanned: keys of the template's shape and Redis type.
    pub keys: u64,
    /// Members looked at.
    pub members: u64,
    /// Members whose entity is gone.
    pub gone: u64,
    /// Members whose entity no longer belongs under the key.
    pub mismatched: u64,
    /// Sorted members whose score was not their entity's.
    pub rescored: u64,
    /// Members that are not ids, or whose entity does not decode: left alone.
    pub bad: u64,
    /// Keys that matched the scan pattern but are not index keys (another
    /// shape, or another Redis type): left alone.
    pub skipped: u64,
    /// What was wrong with the bad members (at most 100 messages).
    pub problems: Vec<String>,
}

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
) -> Result<IndexReport> {
    let mut report = IndexReport {
        index: index.name,
        template: index.key.source,
        repaired: repair,
        ..IndexReport::default()
    };
    let pattern = scan_pattern(&index.key);
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<Value>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(conn)
            .await?;
        let mut shaped = Vec::with_capacity(keys.len());
        for key in keys {
            match key {
                Value::BulkString(b) => match String::from_utf8(b) {
                    Ok(key) if index.key.parse_key(&key).is_some() => shaped.push(key),
                    _ => report.skipped += 1,
                },
                _ => report.skipped += 1,
            }
        }
        let types: Vec<String> = if shaped.is_empty() {
            Vec::new()
        } else {
            let mut pipe = redis::pipe();
            for key in &shaped {
                pipe.cmd("TYPE").arg(key);
            }
            pipe.query_async(conn).await?
        };
        for (key, kind) in shaped.iter().zip(types) {
            if kind != index.kind.redis_type() {
                // Gone since the scan ("none"), or someone else's key.
                report.skipped += u64::from(kind != "none");
                continue;
            }
            report.keys += 1;
            let mut members = all_members(conn, index.kind, key).await?;
            report.members += members.len() as u64;
            while !members.is_empty() {
                let rest = members.split_off(members.len().min(BULK_CHUNK));
                let found = verify::<E, C>(conn, index, key, members, repair).await?;
                members = rest;
                report.gone += found.gone;
                report.mismatched += found.mismatched;
                report.rescored += found.rescored;
                report.bad += found.errors.len() as u64;
                let room = PROBLEMS_KEPT.saturating_sub(report.problems.len());
                report
                    .problems
                    .extend(found.errors.iter().take(room).map(ToString::to_string));
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
    sweep::<E, C>(conn, false).await
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
    sweep::<E, C>(conn, true).await
}

async fn sweep<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, repair: bool) -> Result<Vec<IndexReport>> {
    let mut reports = Vec::with_capacity(E::META.indexes.len());
    for index in E::META.indexes {
        reports.push(sweep_index::<E, C>(conn, index, repair).await?);
    }
    Ok(reports)
}
