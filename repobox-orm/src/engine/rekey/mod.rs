//! Re-keying: an entity whose `#[key("...", previous = "...")]` names the
//! template its keys had before. Until a migration (`Step::rekey`) has
//! moved every entity, an entity lives under either key:
//!
//! - reads look at the key, then at the previous key (an entity found there
//!   only if its key fields give the key asked for), then at the key again
//!   (a move that ran between the two looks has put it there);
//! - index members are ids of either form (`member_key`), and a page never
//!   holds one entity twice (a move across slots adds the new member before
//!   it removes the old one);
//! - every write of such an entity first moves it (`moves`), so a write
//!   always lands under the key and the previous hash is gone after it.

mod entries;
mod moves;
mod ordered;

use redis::Value;
use redis::aio::ConnectionLike;

pub(crate) use self::entries::move_entries;
pub(crate) use self::moves::{Moved, Wanted, relocate, tombstone_command};
use crate::engine::encoding;
use crate::engine::read::hgetall;
use crate::engine::target::fill;
use crate::entity::{RawHash, RedisEntity};
use crate::error::{Error, Result, Shown};
use crate::meta::{EntityMeta, KeyTemplate};

/// The previous key of the entity whose key is `key`: the previous template
/// filled with the key parts of the same fields. `None` when the entity has
/// no previous template.
pub(crate) fn previous_key(meta: &EntityMeta, key: &str) -> Option<Result<String>> {
    let previous = meta.previous.as_ref()?;
    let Some(parts) = meta.key.parse_key(key) else {
        return Some(Err(Error::InvalidKeyPart {
            template: meta.key.source,
            placeholder: "",
            value: Shown::new(&meta.key.shown(key)),
            reason: "is not a key of the template",
        }));
    };
    let by_field: Vec<(&str, &str)> = meta.key.placeholders().map(|(_, f)| f).zip(parts).collect();
    Some(previous.fill(|placeholder, field| {
        by_field
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, part)| *part)
            .ok_or(Error::InvalidKeyPart {
                template: previous.source,
                placeholder,
                value: Shown::new(""),
                reason: "is not a key part of the key",
            })
    }))
}

/// The key an index member (an id) names, and whether it is a previous
/// key: an id of the key's template, else one of the previous template.
pub(crate) fn member_key(meta: &EntityMeta, id: &str) -> Result<(String, bool)> {
    match meta.key.key_from_id(id) {
        Ok(key) => Ok((key, false)),
        Err(e) => match meta.previous.as_ref().map(|p| p.key_from_id(id)) {
            Some(Ok(key)) => Ok((key, true)),
            _ => Err(e),
        },
    }
}

/// The id the fields of `hash` give under `template` (key parts joined by `:`).
pub(crate) fn id_of(template: &KeyTemplate, hash: &RawHash<'_>) -> Option<String> {
    let mut id = String::new();
    for (i, (_, field)) in template.placeholders().enumerate() {
        if i > 0 {
            id.push(':');
        }
        id.push_str(std::str::from_utf8(hash.get(field)?).ok()?);
    }
    Some(id)
}

/// The key the fields of `hash` give (`None` when one is absent or not UTF-8).
pub(crate) fn key_of(template: &KeyTemplate, hash: &RawHash<'_>) -> Option<String> {
    fill(template, |f| hash.get(f)).ok()
}

/// The entity in what `HGETALL` answered for the previous key `old`, if it
/// is the entity whose key is `key` (another entity may hold the previous
/// key: `job:42` of another user).
pub(crate) fn decode_previous<E: RedisEntity>(old: &str, key: &str, reply: &Value) -> Result<Option<E>> {
    // A key of another type at the previous key is no entity of ours.
    if matches!(reply, Value::ServerError(e) if e.code() == "WRONGTYPE") {
        return Ok(None);
    }
    let shown = E::META.previous.as_ref().unwrap_or(&E::META.key).shown(old);
    let hash = RawHash::from_reply(&shown, reply)?;
    if hash.is_empty() || key_of(&E::META.key, &hash).as_deref() != Some(key) {
        return Ok(None);
    }
    encoding::decode_previous::<E>(old, &shown, &hash).map(Some)
}

/// A read that found nothing at `key`: the previous key, then `key` again.
/// `Some(true)` in the answer: found at the previous key.
pub(crate) async fn get_moving<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
) -> Result<Option<(E, bool)>> {
    let Some(old) = previous_key(E::META, key) else {
        return Ok(None);
    };
    let old = old?;
    let reply: Value = hgetall(&old).query_async(conn).await?;
    if let Some(entity) = decode_previous::<E>(&old, key, &reply)? {
        return Ok(Some((entity, true)));
    }
    let reply: Value = hgetall(key).query_async(conn).await?;
    Ok(crate::engine::read::decode_answer::<E>(key, &reply)?.map(|e| (e, false)))
}

/// [`get_moving`] for each of `keys` that `found` has no entity for (and
/// no error), in two pipelines for all of them.
pub(crate) async fn fill_moving<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &[String],
    found: &mut [Option<E>],
    failed: &[bool],
) -> Result<Vec<Error>> {
    let mut errors = Vec::new();
    let mut olds = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if found[i].is_none() && !failed[i] {
            match previous_key(E::META, key) {
                Some(Ok(old)) => olds.push((i, old)),
                Some(Err(e)) => errors.push(e),
                None => {}
            }
        }
    }
    let cmds: Vec<redis::Cmd> = olds.iter().map(|(_, old)| hgetall(old)).collect();
    let replies = crate::engine::pipeline::query(conn, &cmds).await?;
    let mut again = Vec::new();
    for ((i, old), reply) in olds.iter().zip(&replies) {
        match decode_previous::<E>(old, &keys[*i], reply) {
            Ok(Some(entity)) => found[*i] = Some(entity),
            Ok(None) => again.push(*i),
            Err(e) => errors.push(e),
        }
    }
    let cmds: Vec<redis::Cmd> = again.iter().map(|&i| hgetall(&keys[i])).collect();
    let replies = crate::engine::pipeline::query(conn, &cmds).await?;
    for (&i, reply) in again.iter().zip(&replies) {
        match crate::engine::read::decode_answer::<E>(&keys[i], reply) {
            Ok(entity) => found[i] = entity,
            Err(e) => errors.push(e),
        }
    }
    Ok(errors)
}

/// Whether an `HGETALL` answer is an empty hash (an absent key).
fn is_empty_hash(reply: &Value) -> bool {
    match reply {
        Value::Array(a) => a.is_empty(),
        Value::Map(m) => m.is_empty(),
        _ => false,
    }
}

/// For an entity with a previous key: a member whose hash is absent at the
/// key its id names, and whose id names a previous key too (the two
/// templates take the same parts), is read at the previous key.
pub(crate) async fn read_previous_members<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    keyed: &mut [(&str, String, Option<f64>, bool)],
    replies: &mut [Value],
) -> Result<()> {
    let Some(previous) = &E::META.previous else {
        return Ok(());
    };
    let mut again = Vec::new();
    for (i, (id, _, _, at_previous)) in keyed.iter().enumerate() {
        if !at_previous
            && matches!(&replies[i], Value::Array(a) if a.is_empty())
                | matches!(&replies[i], Value::Map(m) if m.is_empty())
            && let Ok(old) = previous.key_from_id(id)
        {
            again.push((i, old));
        }
    }
    let cmds: Vec<redis::Cmd> = again.iter().map(|(_, old)| hgetall(old)).collect();
    for ((i, old), reply) in again
        .into_iter()
        .zip(crate::engine::pipeline::query(conn, &cmds).await?)
    {
        if !is_empty_hash(&reply) {
            keyed[i].1 = old;
            keyed[i].3 = true;
            replies[i] = reply;
        }
    }
    Ok(())
}

/// For each `(id, key)` of `keyed` that `exists` says is absent at `key`
/// and whose id names a previous key too (the two templates take the same
/// parts): whether the previous key exists (one pipeline).
pub(crate) async fn exists_at_previous<C: ConnectionLike + Send>(
    conn: &mut C,
    meta: &EntityMeta,
    keyed: &[(String, String)],
    exists: &mut [i64],
) -> Result<()> {
    let Some(previous) = &meta.previous else {
        return Ok(());
    };
    let again: Vec<(usize, String)> = keyed
        .iter()
        .enumerate()
        .filter(|(i, (_, key))| exists[*i] == 0 && meta.key.parse_key(key).is_some())
        .filter_map(|(i, (id, _))| Some((i, previous.key_from_id(id).ok()?)))
        .collect();
    let cmds: Vec<redis::Cmd> = again
        .iter()
        .map(|(_, old)| {
            let mut cmd = redis::cmd("EXISTS");
            cmd.arg(old);
            cmd
        })
        .collect();
    for ((i, _), reply) in again.iter().zip(crate::engine::pipeline::query(conn, &cmds).await?) {
        if matches!(reply, Value::Int(1)) {
            exists[*i] = 1;
        }
    }
    Ok(())
}
