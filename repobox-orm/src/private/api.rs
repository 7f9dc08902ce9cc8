//! The generic functions behind the generated inherent functions: each takes
//! the entity's key parts as the generated signature received them, builds
//! the target and hands over to the engine.

use std::borrow::Cow;
use std::time::Duration;

use redis::aio::ConnectionLike;

use crate::engine::encoding::Encoded;
use crate::engine::target::Target;
use crate::engine::write::{Ack, PatchWrite};
use crate::engine::{index, read, write};
use crate::entity::RedisEntity;
use crate::error::{Error, Result};
use crate::listing::Listing;
use crate::meta::IndexMeta;
use crate::observe::observe;
use crate::page::Page;
use crate::queue::Queue;

/// The key for these key parts.
pub fn key_for<E: RedisEntity>(parts: &[Cow<'_, str>]) -> Result<String> {
    E::META.key.build(parts)
}

/// The key of a whole entity.
pub fn entity_key<E: RedisEntity>(entity: &E) -> Result<String> {
    Ok(Encoded::plain(entity)?.target.key)
}

/// The id of a whole entity (what its index entries hold).
pub fn entity_id<E: RedisEntity>(entity: &E) -> Result<String> {
    Ok(Encoded::plain(entity)?.target.id)
}

/// `E::create`.
pub async fn create<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, entity: &E) -> Result<()> {
    observe::<E, _>("create", async move { write::create(conn, entity).await }).await
}

/// `E::save`.
pub async fn save<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, entity: &E) -> Result<()> {
    observe::<E, _>("save", async move { write::save(conn, entity).await }).await
}

/// `E::create_and_append`.
pub async fn create_and_append<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    entity: &E,
    stream: &str,
    entry: &[(&str, &str)],
) -> Result<String> {
    observe::<E, _>("create_and_append", async move {
        write::create_and_append(conn, entity, stream, entry).await
    })
    .await
}

/// `E::get`.
pub async fn get<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, parts: &[Cow<'_, str>]) -> Result<Option<E>> {
    observe::<E, _>("get", async move { read::get(conn, &key_for::<E>(parts)?).await }).await
}

/// `E::get_with_clock`.
pub async fn get_with_clock<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    parts: &[Cow<'_, str>],
) -> Result<(i64, Option<E>)> {
    observe::<E, _>("get_with_clock", async move {
        read::get_with_clock(conn, &key_for::<E>(parts)?).await
    })
    .await
}

/// `E::get_many`: the key parts of every id (`parts` turns one into them)
/// are checked before any I/O.
pub async fn get_many<'k, E, C, K, const N: usize>(
    conn: &mut C,
    ids: &'k [K],
    parts: impl Fn(&'k K) -> [Cow<'k, str>; N],
) -> Result<Listing<Option<E>>>
where
    E: RedisEntity,
    C: ConnectionLike + Send,
{
    let keys = ids
        .iter()
        .map(|id| key_for::<E>(&parts(id)))
        .collect::<Result<Vec<_>>>();
    observe::<E, _>("get_many", async move { read::get_keys(conn, &keys?).await }).await
}

/// `E::exists`.
pub async fn exists<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, parts: &[Cow<'_, str>]) -> Result<bool> {
    observe::<E, _>("exists", async move {
        read::exists::<E, C>(conn, &key_for::<E>(parts)?).await
    })
    .await
}

/// `E::ttl`.
pub async fn ttl<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    parts: &[Cow<'_, str>],
) -> Result<Option<Duration>> {
    observe::<E, _>(
        "ttl",
        async move { read::ttl::<E, C>(conn, &key_for::<E>(parts)?).await },
    )
    .await
}

/// `E::update`.
pub async fn update<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    parts: &[Cow<'_, str>],
    patch: &E::Patch,
) -> Result<()> {
    observe::<E, _>("update", async move {
        let target = Target::from_parts::<E>(parts)?;
        write::patch::<E, C>(conn, &target, patch, PatchWrite::update::<E>())
            .await
            .map(drop)
    })
    .await
}

/// `E::update_if`: every field that `expected` sets must hold that value
/// (`Some(None)`: be absent) when the patch is written; values are compared,
/// not their bytes.
pub async fn update_if<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    parts: &[Cow<'_, str>],
    patch: &E::Patch,
    expected: &E::Patch,
) -> Result<()> {
    observe::<E, _>("update_if", async move {
        let target = Target::from_parts::<E>(parts)?;
        write::patch_if::<E, C>(conn, &target, patch, expected, None, None)
            .await
            .map(drop)
    })
    .await
}

/// `E::update_if_and_append`: [`update_if`], appending `entry` to `stream`
/// in the same write; returns the entry's id.
pub async fn update_if_and_append<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    parts: &[Cow<'_, str>],
    patch: &E::Patch,
    expected: &E::Patch,
    stream: &str,
    entry: &[(&str, &str)],
) -> Result<String> {
    observe::<E, _>("update_if_and_append", async move {
        let target = Target::from_parts::<E>(parts)?;
        match write::patch_if::<E, C>(conn, &target, patch, expected, Some((stream, entry)), None).await? {
            Some(id) => Ok(id),
            None => Err(Error::UnexpectedReply {
                key: target.shown().into_owned(),
                detail: "XADD gave no entry id".into(),
            }),
        }
    })
    .await
}

/// `E::update_if_and_ack`: [`update_if`], appending `append`'s entry when
/// given, and acknowledging delivery `entry_id` of `queue` in the same write;
/// returns the appended entry's id.
pub async fn update_if_and_ack<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    parts: &[Cow<'_, str>],
    patch: &E::Patch,
    expected: &E::Patch,
    append: Option<(&str, &[(&str, &str)])>,
    queue: &Queue,
    entry_id: &str,
) -> Result<Option<String>> {
    observe::<E, _>("update_if_and_ack", async move {
        let target = Target::from_parts::<E>(parts)?;
        let ack = Ack {
            stream: queue.stream(),
            group: queue.group(),
            id: entry_id,
        };
        write::patch_if::<E, C>(conn, &target, patch, expected, append, Some(ack)).await
    })
    .await
}

/// `E::update_and_expire`.
pub async fn update_and_expire<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    parts: &[Cow<'_, str>],
    patch: &E::Patch,
    ttl: Duration,
) -> Result<()> {
    observe::<E, _>("update_and_expire", async move {
        let target = Target::from_parts::<E>(parts)?;
        write::patch::<E, C>(conn, &target, patch, PatchWrite::refresh(ttl))
            .await
            .map(drop)
    })
    .await
}

/// `E::delete`.
pub async fn delete<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, parts: &[Cow<'_, str>]) -> Result<bool> {
    delete_with::<E, C>(conn, parts, &[]).await
}

/// `E::delete_with`.
pub async fn delete_with<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    parts: &[Cow<'_, str>],
    also: &[String],
) -> Result<bool> {
    observe::<E, _>("delete_with", async move {
        let target = Target::from_parts::<E>(parts)?;
        write::delete::<E, C>(conn, &target, also).await
    })
    .await
}

/// `E::delete_if`.
pub async fn delete_if<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    parts: &[Cow<'_, str>],
    also: &[String],
    expected: &E::Patch,
) -> Result<bool> {
    observe::<E, _>("delete_if", async move {
        let target = Target::from_parts::<E>(parts)?;
        write::delete_if::<E, C>(conn, &target, also, expected).await
    })
    .await
}

/// `E::expire_in`.
pub async fn expire_in<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    parts: &[Cow<'_, str>],
    ttl: Duration,
) -> Result<()> {
    observe::<E, _>("expire_in", async move {
        let target = Target::from_parts::<E>(parts)?;
        write::expire_in::<E, C>(conn, &target, ttl).await
    })
    .await
}

/// `E::create_and_append_many`.
pub async fn create_and_append_many<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    entities: &[E],
    stream: &str,
    entries: &[Vec<(&str, &str)>],
) -> Result<Vec<Result<String>>> {
    observe::<E, _>("create_and_append_many", async move {
        write::create_and_append_many(conn, entities, stream, entries).await
    })
    .await
}

/// `E::create_many`.
pub async fn create_many<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    entities: &[E],
) -> Result<Vec<Result<()>>> {
    observe::<E, _>("create_many", async move { write::create_many(conn, entities).await }).await
}

/// `E::save_many`.
pub async fn save_many<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    entities: &[E],
) -> Result<Vec<Result<()>>> {
    observe::<E, _>("save_many", async move { write::save_many(conn, entities).await }).await
}

/// `E::delete_many`: the key parts of every id (`parts` turns one into
/// them) are checked before any I/O.
pub async fn delete_many<'k, E, C, K, const N: usize>(
    conn: &mut C,
    ids: &'k [K],
    parts: impl Fn(&'k K) -> [Cow<'k, str>; N],
) -> Result<Vec<Result<bool>>>
where
    E: RedisEntity,
    C: ConnectionLike + Send,
{
    let targets = ids
        .iter()
        .map(|id| Target::from_parts::<E>(&parts(id)))
        .collect::<Result<Vec<_>>>();
    observe::<E, _>("delete_many", async move {
        write::delete_many::<E, C>(conn, &targets?).await
    })
    .await
}

/// `E::index_key_by_x`: the index's key for these key parts, built and
/// checked as every index read and write builds it.
pub fn index_key(index: &'static IndexMeta, parts: &[Cow<'_, str>]) -> Result<String> {
    index.key.build(parts)
}

/// `E::by_x` of a sorted index.
pub async fn sorted_page<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &'static IndexMeta,
    parts: &[Cow<'_, str>],
    page: Page,
) -> Result<Listing<E>> {
    observe::<E, _>("page", async move {
        index::sorted_page(conn, index, &index.key.build(parts)?, page).await
    })
    .await
}

/// `E::by_x` of a set index.
pub async fn set_members<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &'static IndexMeta,
    parts: &[Cow<'_, str>],
) -> Result<Listing<E>> {
    observe::<E, _>("members", async move {
        index::set_members(conn, index, &index.key.build(parts)?).await
    })
    .await
}

/// `E::by_x` of a unique index.
pub async fn unique_get<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &'static IndexMeta,
    parts: &[Cow<'_, str>],
) -> Result<Option<E>> {
    observe::<E, _>("get_unique", async move {
        index::unique_get(conn, index, &index.key.build(parts)?).await
    })
    .await
}

/// `E::count_by_x`.
pub async fn count<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    index: &'static IndexMeta,
    parts: &[Cow<'_, str>],
) -> Result<u64> {
    observe::<E, _>("count", async move {
        index::count::<E, C>(conn, index, &index.key.build(parts)?).await
    })
    .await
}
