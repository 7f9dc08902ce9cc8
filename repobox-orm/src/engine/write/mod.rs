//! Writes. Each write is planned, then routed once (`route`): atomic, one
//! script call that changes the hash, its index entries and its TTL together
//! (`atomic`; `create` and `hash_only` for the writes a smaller script
//! does), or ordered, single-slot steps for an entity whose keys a cluster
//! keeps in several slots (`ordered`). Every script call is built and read
//! by its script's protocol module (`scripts::*`).
//!
//! - `plan`: what a write changes and what it knows of the indexed fields;
//! - `route`: atomic or ordered, decided before anything is sent;
//! - `atomic`: plans as script calls, one or many per round trip;
//! - `ordered`: the one state machine of the ordered steps;
//! - `compare`: compare-and-set updates and deletes;
//! - `create`: creates of entities without a unique index (`create_entity.lua`);
//! - `hash_only`: writes that maintain no index entry (`HSET`, `put.lua`,
//!   `update.lua`);
//! - `outbox`: the stream entries of ordered writes, until appended.
//!
//! A write that moves no index entry costs one round trip; one that moves an
//! entry (or must first learn where the entry is) costs two.

mod atomic;
mod compare;
mod create;
pub(crate) mod deliver;
#[cfg(feature = "testing")]
pub(crate) mod faults;
mod hash_only;
mod ordered;
pub(crate) mod outbox;
mod plan;
pub(crate) mod route;

use std::time::Duration;

use redis::aio::ConnectionLike;

use self::plan::{Outcome, WritePlan};
use crate::engine::encoding::{Encoded, seal};
use crate::engine::target::Target;
use crate::entity::{EntityPatch, FieldWriter, RedisEntity};
use crate::error::{Error, Result};
pub(crate) use crate::scripts::write_entity::Ack;
use crate::scripts::write_entity::Mode;

pub(crate) use self::atomic::BULK_CHUNK;
pub(crate) use self::compare::{Conditions, Rewrite, conditions_of, delete_if, patch_if, rewrite_many};
pub(crate) use self::ordered::send_steps;

fn must_exist(outcome: Outcome, target: &Target) -> Result<Option<String>> {
    match outcome {
        Outcome::Done(entry) => Ok(entry),
        Outcome::Missing => Err(Error::NotFound {
            key: target.shown().into_owned(),
        }),
    }
}

/// Creates the entity; `Err(AlreadyExists)` if its key is taken,
/// `Err(UniqueViolation)` if a unique value is. Writes nothing on error.
pub(crate) async fn create<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, entity: &E) -> Result<()> {
    // Sorted and set indexes only: the create script, which checks and writes
    // what a hand-written create does (EXISTS, the entry, HSET) without the
    // general script's header.
    if create::applies::<E>() {
        return create::create_one(conn, entity).await;
    }
    let encoded = Encoded::sealed(entity)?;
    let (target, fields) = (&encoded.target, &encoded.fields);
    if hash_only::applies::<E>(Mode::Create, fields) {
        return hash_only::put(conn, Mode::Create, target, fields, E::META.ttl)
            .await
            .map(drop);
    }
    let plan = WritePlan::new::<E>(Mode::Create, target, fields, E::META.ttl);
    route::run_one(conn, plan).await.map(drop)
}

/// Creates or replaces the entity's fields, moving index entries whose fields
/// changed and setting the full TTL. Fields other clients added are kept.
pub(crate) async fn save<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, entity: &E) -> Result<()> {
    let encoded = Encoded::sealed(entity)?;
    let (target, fields) = (&encoded.target, &encoded.fields);
    if hash_only::applies::<E>(Mode::Save, fields) {
        return hash_only::put(conn, Mode::Save, target, fields, E::META.ttl)
            .await
            .map(drop);
    }
    let plan = WritePlan::new::<E>(Mode::Save, target, fields, E::META.ttl);
    route::run_one(conn, plan).await.map(drop)
}

/// Creates the entity and appends `entry` to `stream` in the same atomic
/// write; returns the stream entry id. A second create of the same entity
/// fails with `AlreadyExists` and appends nothing.
pub(crate) async fn create_and_append<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    entity: &E,
    stream: &str,
    entry: &[(&str, &str)],
) -> Result<String> {
    let encoded = Encoded::sealed(entity)?;
    let target = &encoded.target;
    let mut plan = WritePlan::new::<E>(Mode::Create, target, &encoded.fields, E::META.ttl);
    plan.options.stream = Some((stream, entry));
    match route::run_one(conn, plan).await? {
        Outcome::Done(Some(id)) => Ok(id),
        _ => Err(Error::UnexpectedReply {
            key: target.shown().into_owned(),
            detail: "XADD gave no entry id".into(),
        }),
    }
}

/// Creates many entities, each with its stream entry (`entries[i]` for
/// `entities[i]`) in the same atomic write, in pipelined chunks (through the
/// stream's outbox where a cluster splits the keys); per entity the entry's
/// id or why it was not created (then nothing of it was appended).
pub(crate) async fn create_and_append_many<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    entities: &[E],
    stream: &str,
    entries: &[Vec<(&str, &str)>],
) -> Result<Vec<Result<String>>> {
    if entries.len() != entities.len() {
        return Err(Error::InvalidArgument {
            name: "entries",
            reason: format!("{} entries for {} entities", entries.len(), entities.len()),
        });
    }
    let prepared: Vec<Result<Encoded<'_>>> = entities.iter().map(Encoded::sealed).collect();
    let plans = prepared
        .iter()
        .zip(entries)
        .filter_map(|(p, entry)| Some((p.as_ref().ok()?, entry)))
        .map(|(e, entry)| {
            let mut plan = WritePlan::new::<E>(Mode::Create, &e.target, &e.fields, E::META.ttl);
            plan.options.stream = Some((stream, entry.as_slice()));
            plan
        })
        .collect();
    let mut outcomes = route::run(conn, plans).await?.into_iter();
    Ok(prepared
        .into_iter()
        .map(|p| {
            let Encoded { target, .. } = p?;
            let no_entry = || Error::UnexpectedReply {
                key: target.shown().into_owned(),
                detail: "XADD gave no entry id".into(),
            };
            match outcomes.next() {
                Some(Ok(Outcome::Done(Some(id)))) => Ok(id),
                Some(Ok(_)) | None => Err(no_entry()),
                Some(Err(e)) => Err(e),
            }
        })
        .collect())
}

/// How a patch is written.
pub(crate) struct PatchWrite<'w> {
    /// `Update` keeps the remaining TTL, `UpdateSettingTtl` sets `ttl`.
    pub mode: Mode,
    pub ttl: Option<Duration>,
    /// Fields that must hold these values (`None` = absent) for the write to happen.
    pub conditions: &'w [(&'static str, Option<&'w [u8]>)],
    /// A stream entry appended with the write (atomically, or through the
    /// stream's outbox where a cluster splits the keys).
    pub stream: Option<(&'w str, &'w [(&'w str, &'w str)])>,
    /// A delivery acknowledged with the write (after it, where a cluster
    /// splits the keys).
    pub ack: Option<Ack<'w>>,
}

impl PatchWrite<'_> {
    /// A plain update: keeps the remaining TTL, no conditions.
    pub fn update<E: RedisEntity>() -> Self {
        PatchWrite {
            mode: Mode::Update,
            ttl: E::META.ttl,
            conditions: &[],
            stream: None,
            ack: None,
        }
    }

    /// An update that sets the TTL to `ttl`.
    pub fn refresh(ttl: Duration) -> Self {
        PatchWrite {
            mode: Mode::UpdateSettingTtl,
            ttl: Some(ttl),
            conditions: &[],
            stream: None,
            ack: None,
        }
    }
}

/// Applies a patch to an existing entity; `Err(NotFound)` if it is absent
/// (never re-creates it), `Err(Conflict)` if a condition does not hold.
/// Returns the id of the stream entry it appended, if `how` has one.
pub(crate) async fn patch<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    target: &Target,
    patch: &E::Patch,
    how: PatchWrite<'_>,
) -> Result<Option<String>> {
    let mut fields = FieldWriter::default();
    patch.write_fields(&mut fields)?;
    seal::<E>(&target.key, &mut fields)?;
    if how.conditions.is_empty()
        && how.stream.is_none()
        && how.ack.is_none()
        && hash_only::applies::<E>(how.mode, &fields)
    {
        return must_exist(hash_only::put(conn, how.mode, target, &fields, how.ttl).await?, target);
    }
    let mut plan = WritePlan::new::<E>(how.mode, target, &fields, how.ttl);
    plan.options.conditions = how.conditions;
    plan.options.stream = how.stream;
    plan.options.ack = how.ack;
    plan.assume_conditions();
    must_exist(route::run_one(conn, plan).await?, target)
}

/// Deletes the entity, its index entries and the keys in `also` atomically;
/// `false` if it was absent.
pub(crate) async fn delete<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    target: &Target,
    also: &[String],
) -> Result<bool> {
    let fields = FieldWriter::default();
    let mut plan = WritePlan::new::<E>(Mode::Delete, target, &fields, None);
    plan.options.delete_keys = also;
    Ok(matches!(route::run_one(conn, plan).await?, Outcome::Done(_)))
}

/// Sets the entity's TTL (index keys are lengthened to outlive it);
/// `Err(NotFound)` if it is absent.
pub(crate) async fn expire_in<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    target: &Target,
    ttl: Duration,
) -> Result<()> {
    let fields = FieldWriter::default();
    let plan = WritePlan::new::<E>(Mode::SetTtl, target, &fields, Some(ttl));
    must_exist(route::run_one(conn, plan).await?, target).map(drop)
}

/// Creates (`Mode::Create`) or saves (`Mode::Save`) many entities, each
/// atomically, in pipelined chunks; per entity `Ok` or why not.
async fn upsert_many<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    entities: &[&E],
    mode: Mode,
) -> Result<Vec<Result<()>>> {
    let prepared: Vec<Result<Encoded<'_>>> = entities.iter().map(|entity| Encoded::sealed(*entity)).collect();
    let plans = prepared
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .map(|e| WritePlan::new::<E>(mode, &e.target, &e.fields, E::META.ttl))
        .collect();
    let mut outcomes = route::run(conn, plans).await?.into_iter();
    Ok(prepared
        .into_iter()
        .map(|p| match p {
            Err(e) => Err(e),
            Ok(Encoded { target, .. }) => outcomes
                .next()
                .unwrap_or_else(|| {
                    Err(Error::UnexpectedReply {
                        key: target.shown().into_owned(),
                        detail: "the write got no outcome".into(),
                    })
                })
                .map(drop),
        })
        .collect())
}

/// Deletes many entities, each atomically with its index entries; per
/// entity `true` where one existed, or why it was not deleted (then
/// nothing of it was). Every target is checked before any I/O.
pub(crate) async fn delete_many<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    targets: &[Target],
) -> Result<Vec<Result<bool>>> {
    let fields = FieldWriter::default();
    let plans = targets
        .iter()
        .map(|t| WritePlan::new::<E>(Mode::Delete, t, &fields, None))
        .collect();
    Ok(route::run(conn, plans)
        .await?
        .into_iter()
        .map(|r| r.map(|o| matches!(o, Outcome::Done(_))))
        .collect())
}

/// Creates many entities, each atomically with its indexes and TTL.
pub(crate) async fn create_many<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    entities: &[E],
) -> Result<Vec<Result<()>>> {
    if create::applies::<E>() {
        return create::create_many(conn, entities).await;
    }
    upsert_many(conn, &entities.iter().collect::<Vec<_>>(), Mode::Create).await
}

/// Saves many entities, each atomically with its indexes and TTL.
pub(crate) async fn save_many<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    entities: &[E],
) -> Result<Vec<Result<()>>> {
    upsert_many(conn, &entities.iter().collect::<Vec<_>>(), Mode::Save).await
}
