//! Reads of an index whose template changed (`#[index(..., previous =
//! "...")]`): until a migration (`Step::rekey_index`) has moved every
//! entry, an entity's entry is under the index key or under its previous
//! key, so a read takes both and merges them.
//!
//! - The previous key is read only when it exists (one `EXISTS` in the
//!   round trip of the first read): once the migration is done, a read
//!   costs what it did before.
//! - Each key's members are checked against their entities under its own
//!   template (`verify` with the previous template for the previous key):
//!   an entry the entity has left is filtered out and repaired like any other.
//! - An entity named in both keys is listed once (a write, or the
//!   migration, may have added the new entry before removing the old).
//! - A key that is a key of the index's template is never read as a
//!   previous key, whatever it is built from: a value holding a hash tag
//!   cannot make a read repair another value's entries away.
//! - A page of a sorted index takes each key's members up to the page's
//!   end, merges them by score (then member, as `ZRANGE` orders them) and
//!   skips the offset after the merge.

use std::collections::HashSet;

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};

use super::verify::{Member, verify};
use super::{REPAIR_PASSES, repairs_on_read, scan_members, scored_members};
use crate::engine::pipeline;
use crate::engine::write::BULK_CHUNK;
use crate::entity::RedisEntity;
use crate::error::Result;
use crate::listing::Listing;
use crate::meta::{IndexKind, IndexMeta};
use crate::page::Page;

/// The index as its previous template declared it: what the members of a
/// previous key are checked against.
pub(crate) fn previous_view(index: &IndexMeta) -> Option<IndexMeta> {
    Some(IndexMeta {
        name: index.name,
        kind: index.kind,
        key: index.previous.clone()?,
        previous: None,
        co_located: false,
    })
}

/// The previous key of the index key `index_key` (its template filled with
/// the same values), unless the index has no previous template, or that
/// key is also a key of the index's template (then it is only ever read as one).
pub(crate) fn previous_index_key(index: &IndexMeta, index_key: &str) -> Option<String> {
    let previous = index.previous.as_ref()?;
    let parts = index.key.parse_key(index_key)?;
    let by_field: Vec<(&str, &str)> = index.key.placeholders().map(|(_, f)| f).zip(parts).collect();
    let old = previous
        .fill(|placeholder, field| {
            by_field
                .iter()
                .find(|(f, _)| *f == field)
                .map(|(_, part)| *part)
                .ok_or(crate::Error::InvalidKeyPart {
                    template: previous.source,
                    placeholder,
                    value: crate::error::Shown::new(""),
                    reason: "is not a part of the index key",
                })
        })
        .ok()?;
    index.key.parse_key(&old).is_none().then_some(old)
}

fn zrange(key: &str, args: &[String]) -> Cmd {
    redis::cmd("ZRANGE").arg(key).arg(args).arg("WITHSCORES").clone()
}

fn exists(key: &str) -> Cmd {
    redis::cmd("EXISTS").arg(key).clone()
}

/// A page of a sorted index and of its previous key `old`. The first round
/// trip reads the page as an index without a previous template would, and
/// whether `old` exists; only when it does is the merged page read.
pub(crate) async fn sorted_page<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
    old: &str,
    page: Page,
) -> Result<Listing<E>> {
    let first = pipeline::query(conn, &[zrange(index_key, &page.zrange_args()?), exists(old)]).await?;
    let [first, old_exists] = <[Value; 2]>::try_from(first).map_err(|_| short(index_key))?;
    if matches!(old_exists, Value::Int(0)) {
        return super::page_of(conn, index, index_key, page, Some(first)).await;
    }
    let view = previous_view(index).expect("a previous key comes from a previous template");
    let window = page.through_end()?.zrange_args()?;
    let repair = repairs_on_read(conn);
    let mut pass = 0;
    loop {
        pass += 1;
        let replies = pipeline::query(conn, &[zrange(index_key, &window), zrange(old, &window)]).await?;
        let mut listed = HashSet::new();
        let (mut rows, mut errors, mut repairs) = (Vec::new(), Vec::new(), 0);
        for ((meta, key), reply) in [(index, index_key), (&view, old)].into_iter().zip(&replies) {
            let members = scored_members(key, reply)?;
            let order: Vec<(f64, Vec<u8>)> = members
                .iter()
                .map(|m| (m.score.unwrap_or(0.0), m.raw.clone()))
                .collect();
            let found = verify::<E, C>(conn, meta, key, members, repair, true, Some(&mut listed)).await?;
            repairs += found.repairs();
            errors.extend(found.errors);
            rows.extend(found.at.into_iter().map(|at| order[at].clone()).zip(found.live));
        }
        rows.sort_by(|(a, _), (b, _)| {
            let order = a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1));
            if page.newest_first { order.reverse() } else { order }
        });
        // Without a repair, reading again would find the same.
        if !repair || repairs == 0 || pass > REPAIR_PASSES {
            let items = rows
                .into_iter()
                .skip(page.offset)
                .take(page.limit)
                .map(|(_, e)| e)
                .collect();
            return Ok(Listing { items, errors });
        }
    }
}

fn short(key: &str) -> crate::Error {
    crate::Error::UnexpectedReply {
        key: key.to_owned(),
        detail: "a pipeline of two answered otherwise".into(),
    }
}

/// Every member of a set index and of its previous key `old`.
pub(crate) async fn set_members<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
    old: &str,
) -> Result<Listing<E>> {
    let smembers = |key: &str| redis::cmd("SMEMBERS").arg(key).clone();
    let replies = pipeline::query(conn, &[smembers(index_key), smembers(old)]).await?;
    let view = previous_view(index).expect("a previous key comes from a previous template");
    let repair = repairs_on_read(conn);
    let mut listed = HashSet::new();
    let mut out = Listing::default();
    for ((meta, key), reply) in [(index, index_key), (&view, old)].into_iter().zip(&replies) {
        let members = super::plain_members(key, reply)?;
        if members.is_empty() {
            continue;
        }
        let found = verify::<E, C>(conn, meta, key, members, repair, true, Some(&mut listed)).await?;
        out.items.extend(found.live);
        out.errors.extend(found.errors);
    }
    Ok(out)
}

/// How many entities the index key and its previous key `old` hold
/// together. While `old` exists that is every member of both checked
/// (window by window, each entity counted once); after, what
/// [`super::count`] counts.
pub(crate) async fn count<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &IndexMeta,
    index_key: &str,
    old: &str,
) -> Result<Option<u64>> {
    if matches!(exists(old).query_async(conn).await?, Value::Int(0)) {
        return Ok(None);
    }
    let view = previous_view(index).expect("a previous key comes from a previous template");
    let repair = repairs_on_read(conn);
    let mut listed = HashSet::new();
    let mut live = 0u64;
    for (meta, key) in [(index, index_key), (&view, old)] {
        let mut cursor = 0;
        loop {
            let (next, members): (u64, Vec<Member>) = scan_members(conn, meta.kind, key, cursor, BULK_CHUNK).await?;
            let found = verify::<E, C>(conn, meta, key, members, repair, true, Some(&mut listed)).await?;
            live = live.saturating_add(found.live.len() as u64);
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    debug_assert!(!matches!(index.kind, IndexKind::Unique));
    Ok(Some(live))
}
