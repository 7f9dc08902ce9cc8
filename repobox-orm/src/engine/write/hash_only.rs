//! Writes of the hash alone: the cheapest write that keeps the contract, for the writes that maintain
//! no index entry and check no condition: an upsert of an entity without a
//! TTL is a bare `HSET` (with its `HDEL`s in `MULTI`/`EXEC`); anything that
//! must check the hash first (a create, an update that must not re-create,
//! a TTL that must not land on another client's key) is `put.lua`, a few
//! commands where the general script decodes a header; an update that only
//! sets fields is `update.lua`, which takes nothing but the pairs.
//!
//! What they keep: the write is atomic; a key of another type refuses it
//! with nothing written (`HSET` and `HDEL` fail on it, and nothing else is in
//! the transaction; `put.lua` checks the type first); fields other clients
//! added are kept.

use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionLike;

use super::plan::{Outcome, ttl_millis};
use crate::engine::pipeline;
use crate::engine::target::Target;
use crate::entity::{FieldWriter, RedisEntity};
use crate::error::{Error, Result};
use crate::scripts::put::{PutCall, PutMode, PutReply, UpdateCall};
use crate::scripts::write_entity::Mode;
use crate::scripts::{PUT, UPDATE};

/// Whether a write of `E` in `mode` with no conditions, stream entry or
/// extra keys can take the fast path: it maintains no index entry.
pub(super) fn applies<E: RedisEntity>(mode: Mode, fields: &FieldWriter<'_>) -> bool {
    let meta = E::META;
    // An entity with a previous key is moved first, by `route`.
    if meta.previous.is_some() {
        return false;
    }
    match mode {
        Mode::Create | Mode::Save => meta.indexes.is_empty(),
        // A patch touches the indexes whose key or score it changes.
        Mode::Update | Mode::UpdateSettingTtl => meta.indexes.iter().all(|ix| {
            !ix.key.placeholders().any(|(_, f)| fields.touches(f))
                && !matches!(ix.kind, crate::meta::IndexKind::Sorted { score } if fields.touches(score))
        }),
        Mode::Delete | Mode::SetTtl => false,
    }
}

/// Writes the hash (and its TTL) of a write that [`applies`].
pub(super) async fn put<C: ConnectionLike + Send>(
    conn: &mut C,
    mode: Mode,
    target: &Target,
    fields: &FieldWriter<'_>,
    ttl: Option<Duration>,
) -> Result<Outcome> {
    let ttl_ms = match (mode, ttl) {
        (Mode::Update, _) | (_, None) => 0,
        (_, Some(ttl)) => ttl_millis(ttl)?,
    };
    if mode == Mode::Save && ttl_ms == 0 && !fields.set.is_empty() {
        return bare(conn, target, fields).await;
    }
    let (script, name, cmd) = if mode == Mode::Update && fields.del.is_empty() && !fields.set.is_empty() {
        let call = UpdateCall {
            key: &target.key,
            set: &fields.set,
        };
        (&*UPDATE, "update.lua", call.command())
    } else {
        let call = PutCall {
            key: &target.key,
            mode: match mode {
                Mode::Create => PutMode::Create,
                Mode::Save => PutMode::Save,
                _ => PutMode::Update,
            },
            ttl_ms,
            set: &fields.set,
            del: &fields.del,
        };
        (&*PUT, "put.lua", call.command())
    };
    let reply = pipeline::send_loading(conn, script, &cmd, &mut pipeline::Reloads::default()).await?;
    match PutReply::parse(&target.shown(), &target.key, name, reply)? {
        PutReply::Done => Ok(Outcome::Done(None)),
        PutReply::Missing => Ok(Outcome::Missing),
        PutReply::Exists => Err(Error::AlreadyExists {
            key: target.shown().into_owned(),
        }),
    }
}

/// An upsert without a TTL: `HSET`, and `HDEL` of the absent optional fields
/// in the same `MULTI`/`EXEC`.
async fn bare<C: ConnectionLike + Send>(conn: &mut C, target: &Target, fields: &FieldWriter<'_>) -> Result<Outcome> {
    let mut hset = redis::cmd("HSET");
    hset.arg(&target.key);
    for (name, value) in &fields.set {
        hset.arg(*name).arg(value.as_ref());
    }
    let reply: redis::RedisResult<Value> = match fields.del.is_empty() {
        true => hset.query_async(conn).await,
        false => {
            let mut pipe = redis::pipe();
            pipe.atomic()
                .add_command(hset)
                .cmd("HDEL")
                .arg(&target.key)
                .arg(&fields.del);
            pipe.query_async(conn).await
        }
    };
    match reply {
        Ok(_) => Ok(Outcome::Done(None)),
        Err(e) if e.code() == Some("WRONGTYPE") || e.to_string().contains("WRONGTYPE") => Err(Error::WrongType {
            key: target.shown().into_owned(),
        }),
        Err(e) => Err(e.into()),
    }
}
