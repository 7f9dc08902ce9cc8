//! How many entities of a model there are: one walk over the keyspace
//! (`SCAN` with the key template's pattern), counting the keys of exactly
//! the template's shape that hold a hash. For a dashboard, on request:
//! like every walk it reports progress and can be rate-limited.

use redis::aio::ConnectionLike;

use super::{Walk, keys_of, scan, scan_pattern};
use crate::entity::RedisEntity;
use crate::error::Result;

/// Counts `E`'s entities (hashes under its key template), walking the whole
/// keyspace as `walk` says.
///
/// # Errors
///
/// Fails as every call to Redis can: see [`Error`](crate::Error#errors-of-every-call).
pub async fn count_entities_with<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    walk: &Walk<'_>,
) -> Result<u64> {
    crate::store::scan::ensure_whole_keyspace(conn).await?;
    let pattern = scan_pattern(&E::META.key);
    let mut pace = walk.begin_scan(conn, &format!("hashes {}", E::META.key.source)).await?;
    let mut cursor = 0u64;
    let mut count = 0u64;
    loop {
        let (next, keys) = scan(conn, cursor, &pattern, walk, &mut pace).await?;
        let (hashes, _) = keys_of(conn, &E::META.key, "hash", keys).await?;
        count = count.saturating_add(u64::try_from(hashes.len()).unwrap_or(u64::MAX));
        if next == 0 {
            return Ok(count);
        }
        cursor = next;
    }
}
