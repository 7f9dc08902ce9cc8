//! Writes: each one atomic command (a Lua script call, or `HSET` in
//! `MULTI`/`EXEC`) that changes the hash, its index entries and its TTL
//! together; each write takes the cheapest one that keeps the contract.
//!
//! - `fast`: writes that maintain no index entry (`HSET`, `put.lua`,
//!   `update.lua`);
//! - `bulk`: creates of entities without a unique index (`create_entity.lua`),
//!   one or 100 per call;
//! - `plan`: what any other write changes and what it knows of the indexed
//!   fields;
//! - `protocol`: how a plan is encoded for the write script (a delete for
//!   the delete script), and the answers decoded;
//! - `run`: sending plans, retrying when the hash moved, bulk chunks;
//! - `ordered`: the same write as single-slot steps, for an entity whose
//!   keys a cluster keeps in several slots.
//!
//! A write that moves no index entry costs one round trip; one that moves an
//! entry (or must first learn where the entry is) costs two.

mod bulk;
mod fast;
mod ordered;
mod plan;
pub(crate) mod protocol;
mod run;

use std::time::Duration;

use redis::aio::ConnectionLike;

use self::ordered::run_ordered;
use self::plan::{Outcome, WritePlan};
use self::protocol::Mode;
use self::run::{run_write, run_writes};
use crate::crypto::{read_entity, seal_fields};
use crate::engine::target::{Target, fields_of};
use crate::entity::{EntityPatch, FieldWriter, RawHash, RedisEntity};
use crate::error::{Error, Result};

pub(crate) use self::ordered::send_steps;
pub(crate) use self::run::BULK_CHUNK;

fn must_exist(outcome: Outcome, target: &Target) -> Result<()> {
    match outcome {
        Outcome::Done(_) => Ok(()),
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
    // general script's header. Keys in several cluster slots go the ordered
    // way at once.
    if !E::META.indexes.is_empty() && bulk::applies::<E>() {
        return bulk::create_one(conn, entity, ordered_create::<E, C>).await;
    }
    let mut fields = fields_of(entity)?;
    let target = Target::of::<E>(&fields)?;
    seal_fields::<E>(&target.key, &mut fields)?;
    if fast::applies::<E>(Mode::Create, &fields) {
        return fast::put(conn, Mode::Create, &target, &fields, E::META.ttl)
            .await
            .map(drop);
    }
    let plan = WritePlan::new::<E>(Mode::Create, &target, &fields, E::META.ttl);
    run_write(conn, plan).await.map(drop)
}

/// Creates `entity` as ordered steps (its keys are in several cluster slots).
async fn ordered_create<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, entity: &E) -> Result<()> {
    let mut fields = fields_of(entity)?;
    let target = Target::of::<E>(&fields)?;
    seal_fields::<E>(&target.key, &mut fields)?;
    let mut plan = WritePlan::new::<E>(Mode::Create, &target, &fields, E::META.ttl);
    run_ordered(conn, &mut plan).await.map(drop)
}

/// Creates or replaces the entity's fields, moving index entries whose fields
/// changed and setting the full TTL. Fields other clients added are kept.
pub(crate) async fn save<E: RedisEntity, C: ConnectionLike + Send>(conn: &mut C, entity: &E) -> Result<()> {
    let mut fields = fields_of(entity)?;
    let target = Target::of::<E>(&fields)?;
    seal_fields::<E>(&target.key, &mut fields)?;
    if fast::applies::<E>(Mode::Save, &fields) {
        return fast::put(conn, Mode::Save, &target, &fields, E::META.ttl)
            .await
            .map(drop);
    }
    let plan = WritePlan::new::<E>(Mode::Save, &target, &fields, E::META.ttl);
    run_write(conn, plan).await.map(drop)
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
    let mut fields = fields_of(entity)?;
    let target = Target::of::<E>(&fields)?;
    seal_fields::<E>(&target.key, &mut fields)?;
    let mut plan = WritePlan::new::<E>(Mode::Create, &target, &fields, E::META.ttl);
    plan.extras.stream = Some((stream, entry));
    match run_write(conn, plan).await? {
        Outcome::Done(Some(id)) => Ok(id),
        _ => Err(Error::UnexpectedReply {
            key: target.shown().into_owned(),
            detail: "XADD gave no entry id".into(),
        }),
    }
}

/// How a patch is written.
pub(crate) struct PatchWrite<'w> {
    /// `Update` keeps the remaining TTL, `Refresh` sets `ttl`.
    pub mode: Mode,
    pub ttl: Option<Duration>,
    /// Fields that must hold these values (`None` = absent) for the write to happen.
    pub conditions: &'w [(&'static str, Option<&'w [u8]>)],
}

impl PatchWrite<'_> {
    /// A plain update: keeps the remaining TTL, no conditions.
    pub fn update<E: RedisEntity>() -> Self {
        PatchWrite {
            mode: Mode::Update,
            ttl: E::META.ttl,
            conditions: &[],
        }
    }

    /// An update that sets the TTL to `ttl`.
    pub fn refresh(ttl: Duration) -> Self {
        PatchWrite {
            mode: Mode::Refresh,
            ttl: Some(ttl),
            conditions: &[],
        }
    }
}

/// Applies a patch to an existing entity; `Err(NotFound)` if it is absent
/// (never re-creates it), `Err(Conflict)` if a condition does not hold.
pub(crate) async fn patch<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    target: &Target,
    patch: &E::Patch,
    how: PatchWrite<'_>,
) -> Result<()> {
    let mut fields = FieldWriter::default();
    patch.write_fields(&mut fields)?;
    seal_fields::<E>(&target.key, &mut fields)?;
    if how.conditions.is_empty() && fast::applies::<E>(how.mode, &fields) {
        return must_exist(fast::put(conn, how.mode, target, &fields, how.ttl).await?, target);
    }
    let mut plan = WritePlan::new::<E>(how.mode, target, &fields, how.ttl);
    plan.extras.conditions = how.conditions;
    must_exist(run_write(conn, plan).await?, target)
}

/// How often a compare-and-set retries after finding the stored values equal
/// to the expected ones in value but not in bytes (`007` for `7`).
const CAS_ATTEMPTS: u32 = 4;

/// Applies `patch` only if every field that `expected` sets holds that value.
/// Values are compared, not bytes: the script compares bytes, so when it
/// refuses, the entity is read, and if its fields decode to the expected
/// values the write is sent again with the stored bytes as the condition.
pub(crate) async fn patch_if<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    target: &Target,
    patch: &E::Patch,
    expected: &E::Patch,
) -> Result<()> {
    let mut wanted = FieldWriter::default();
    expected.write_fields(&mut wanted)?;
    if let Some(field) = E::META.encrypted.iter().find(|f| wanted.touches(f)) {
        return Err(Error::InvalidArgument {
            name: "condition",
            reason: format!(
                "`{field}` is encrypted: its stored bytes differ on every write, so it cannot be a condition"
            ),
        });
    }
    let wanted: Vec<(&'static str, Option<Vec<u8>>)> = wanted
        .set_fields()
        .iter()
        .map(|(name, value)| (*name, Some(value.to_vec())))
        .chain(wanted.deleted_fields().iter().map(|name| (*name, None)))
        .collect();
    let mut conditions = wanted.clone();
    for _ in 0..CAS_ATTEMPTS {
        let refs: Vec<(&'static str, Option<&[u8]>)> = conditions.iter().map(|(f, v)| (*f, v.as_deref())).collect();
        let how = PatchWrite {
            conditions: &refs,
            ..PatchWrite::update::<E>()
        };
        let conflict = match self::patch::<E, C>(conn, target, patch, how).await {
            Err(conflict @ Error::Conflict { .. }) => conflict,
            other => return other,
        };
        let reply: redis::Value = redis::cmd("HGETALL").arg(&target.key).query_async(conn).await?;
        let hash = RawHash::from_reply(&target.shown(), &reply)?;
        if hash.is_empty() {
            return Err(Error::NotFound {
                key: target.shown().into_owned(),
            });
        }
        let Ok(entity) = read_entity::<E>(&target.key, &target.shown(), &hash) else {
            return Err(conflict);
        };
        let stored = fields_of(&entity)?;
        if !wanted.iter().all(|(f, want)| stored.get(f) == want.as_deref()) {
            return Err(conflict);
        }
        conditions = wanted
            .iter()
            .map(|(f, _)| (*f, hash.get(f).map(<[u8]>::to_vec)))
            .collect();
    }
    Err(Error::Contention {
        key: target.shown().into_owned(),
        attempts: CAS_ATTEMPTS,
    })
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
    plan.extras.delete_keys = also;
    Ok(matches!(run_write(conn, plan).await?, Outcome::Done(_)))
}

/// Sets the entity's TTL (index keys are lengthened to outlive it);
/// `Err(NotFound)` if it is absent.
pub(crate) async fn expire_in<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    target: &Target,
    ttl: Duration,
) -> Result<()> {
    let fields = FieldWriter::default();
    let plan = WritePlan::new::<E>(Mode::Expire, target, &fields, Some(ttl));
    must_exist(run_write(conn, plan).await?, target)
}

/// Creates (`Mode::Create`) or saves (`Mode::Save`) many entities, each
/// atomically, in pipelined chunks; per entity `Ok` or why not.
async fn upsert_many<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    entities: &[&E],
    mode: Mode,
) -> Result<Vec<Result<()>>> {
    let prepared: Vec<Result<(Target, FieldWriter<'_>)>> = entities
        .iter()
        .map(|entity| {
            let mut fields = fields_of(*entity)?;
            let target = Target::of::<E>(&fields)?;
            seal_fields::<E>(&target.key, &mut fields)?;
            Ok((target, fields))
        })
        .collect();
    let plans = prepared
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .map(|(target, fields)| WritePlan::new::<E>(mode, target, fields, E::META.ttl))
        .collect();
    let mut outcomes = run_writes(conn, plans).await?.into_iter();
    Ok(prepared
        .into_iter()
        .map(|p| match p {
            Err(e) => Err(e),
            Ok((target, _)) => outcomes
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

/// Deletes many entities, each atomically with its index entries; `true`
/// where one existed. Every target is checked before any I/O.
pub(crate) async fn delete_many<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    targets: &[Target],
) -> Result<Vec<bool>> {
    let fields = FieldWriter::default();
    let plans = targets
        .iter()
        .map(|t| WritePlan::new::<E>(Mode::Delete, t, &fields, None))
        .collect();
    run_writes(conn, plans)
        .await?
        .into_iter()
        .map(|r| r.map(|o| matches!(o, Outcome::Done(_))))
        .collect()
}

/// Creates many entities, each atomically with its indexes and TTL.
pub(crate) async fn create_many<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    entities: &[E],
) -> Result<Vec<Result<()>>> {
    if bulk::applies::<E>() {
        return bulk::create_many(conn, entities, async |conn: &mut C, refused: &[&E]| {
            upsert_many(conn, refused, Mode::Create).await
        })
        .await;
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
