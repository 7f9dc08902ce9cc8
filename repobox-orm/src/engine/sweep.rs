//! The offline counterpart of read repair: walk every key of every index of
//! an entity (`SCAN`) and remove the members whose entity is gone.

use redis::aio::ConnectionLike;

use crate::engine::index::{drop_ghosts, member_ids};
use crate::entity::RedisEntity;
use crate::error::Result;
use crate::meta::{IndexMeta, KeyTemplate, Segment};

/// How many keys one `SCAN` call asks for.
const SCAN_COUNT: u64 = 500;

/// What a sweep of one index found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// The index's name (`by_user_id`).
    pub index: &'static str,
    /// Index keys looked at.
    pub keys: u64,
    /// Entries looked at.
    pub entries: u64,
    /// Entries removed because their entity's hash is gone.
    pub removed: u64,
}

/// The `SCAN MATCH` pattern of a template: placeholders become `*`, glob
/// characters in the literal text are escaped.
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

/// Sweeps one index. Safe while the application writes: a member is only
/// removed if its hash is still absent when the repair runs.
async fn sweep_index<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &'static IndexMeta,
) -> Result<SweepReport> {
    let mut report = SweepReport {
        index: index.name,
        ..SweepReport::default()
    };
    let pattern = scan_pattern(&index.key);
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .arg("TYPE")
            .arg(index.kind.redis_type())
            .query_async(conn)
            .await?;
        for key in keys {
            report.keys += 1;
            let ids = member_ids(conn, index.kind, &key).await?;
            report.entries += ids.len() as u64;
            report.removed += drop_ghosts::<E, C>(conn, index, &key, ids).await?.1;
        }
        if next == 0 {
            return Ok(report);
        }
        cursor = next;
    }
}

/// Walks every key of every index of `E` (`SCAN`) and removes the members
/// whose entity hash is gone: the offline counterpart of the read repair that
/// index reads do. One report per index, in declaration order. Safe to run
/// while the application writes.
///
/// ```no_run
/// # use repobox_orm::prelude::*;
/// # #[derive(RedisEntity)] #[key("job:<id>")] #[index(set = "jobs:user:<user_id>")]
/// # struct Job { id: String, user_id: String }
/// # async fn f(conn: &mut Store) -> repobox_orm::Result<()> {
/// for report in repobox_orm::sweep_indexes::<Job, _>(conn).await? {
///     println!("{}: {} removed", report.index, report.removed);
/// }
/// # Ok(()) }
/// ```
pub async fn sweep_indexes<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C) -> Result<Vec<SweepReport>> {
    let mut reports = Vec::with_capacity(E::META.indexes.len());
    for index in E::META.indexes {
        reports.push(sweep_index::<E, C>(conn, index).await?);
    }
    Ok(reports)
}
