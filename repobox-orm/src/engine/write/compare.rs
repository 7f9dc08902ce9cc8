//! Compare-and-set writes: an update or a delete made only while the
//! fields a caller expects hold the bytes it names (the script compares
//! bytes; an update whose conditions hold in value but not in bytes is
//! written again with the stored bytes).

use redis::aio::ConnectionLike;

use super::plan::{Outcome, WritePlan};
use super::{Ack, PatchWrite, patch, route};
use crate::engine::encoding::{Encoded, decode};
use crate::engine::target::Target;
use crate::entity::{EntityPatch, FieldWriter, RawHash, RedisEntity};
use crate::error::{Error, Result};
use crate::scripts::write_entity::Mode;

/// Fields of a compare-and-set with the bytes each must hold (`None`: absent).
pub(crate) type Conditions = Vec<(&'static str, Option<Vec<u8>>)>;

/// The conditions `expected` sets: each field it names with the bytes it
/// must hold (`None`: absent). An encrypted field cannot be one.
pub(crate) fn conditions_of<E: RedisEntity>(expected: &E::Patch) -> Result<Conditions> {
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
    Ok(wanted
        .set_fields()
        .iter()
        .map(|(name, value)| (*name, Some(value.to_vec())))
        .chain(wanted.deleted_fields().iter().map(|name| (*name, None)))
        .collect())
}

/// How often a compare-and-set retries after finding the stored values equal
/// to the expected ones in value but not in bytes (`007` for `7`).
const CAS_ATTEMPTS: u32 = 4;

/// Applies `patch` only if every field that `expected` sets holds that value,
/// appending `stream`'s entry with it when there is one (its id is returned)
/// and acknowledging `ack`'s delivery with it when there is one.
/// Values are compared, not bytes: the script compares bytes, so when it
/// refuses, the entity is read, and if its fields decode to the expected
/// values the write is sent again with the stored bytes as the condition.
pub(crate) async fn patch_if<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    target: &Target,
    patch: &E::Patch,
    expected: &E::Patch,
    stream: Option<(&str, &[(&str, &str)])>,
    ack: Option<Ack<'_>>,
) -> Result<Option<String>> {
    let wanted = conditions_of::<E>(expected)?;
    let mut conditions = wanted.clone();
    for _ in 0..CAS_ATTEMPTS {
        let refs: Vec<(&'static str, Option<&[u8]>)> = conditions.iter().map(|(f, v)| (*f, v.as_deref())).collect();
        let how = PatchWrite {
            conditions: &refs,
            stream,
            ack,
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
        let Ok(entity) = decode::<E>(&target.key, &target.shown(), &hash) else {
            return Err(conflict);
        };
        let stored = Encoded::plain(&entity)?;
        if !wanted.iter().all(|(f, want)| stored.fields.get(f) == want.as_deref()) {
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

/// [`delete`](super::delete), only while every field `expected` sets holds those bytes:
/// `Err(Conflict)` otherwise, and nothing deleted.
pub(crate) async fn delete_if<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    target: &Target,
    also: &[String],
    expected: &E::Patch,
) -> Result<bool> {
    let conditions = conditions_of::<E>(expected)?;
    let refs: Vec<(&'static str, Option<&[u8]>)> = conditions.iter().map(|(f, v)| (*f, v.as_deref())).collect();
    let fields = FieldWriter::default();
    let mut plan = WritePlan::new::<E>(Mode::Delete, target, &fields, None);
    plan.options.delete_keys = also;
    plan.options.conditions = &refs;
    plan.assume_conditions();
    Ok(matches!(route::run_one(conn, plan).await?, Outcome::Done(_)))
}

/// One compare-and-set rewrite of an existing entity: `fields` (sealed)
/// written as an update that keeps the remaining TTL and moves the index
/// entries whose fields change, only while every field of `conditions`
/// holds those bytes (`None`: absent). A migration's transform.
pub(crate) struct Rewrite<'w, 'a> {
    pub target: &'w Target,
    pub fields: &'w FieldWriter<'a>,
    pub conditions: &'w [(&'static str, Option<&'w [u8]>)],
}

/// Sends `rewrites`, many per round trip; per rewrite `Ok(true)` when
/// written, `Ok(false)` when the entity is gone, `Err(Conflict)` when a
/// condition no longer held (nothing written).
pub(crate) async fn rewrite_many<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    rewrites: &[Rewrite<'_, '_>],
) -> Result<Vec<Result<bool>>> {
    let plans = rewrites
        .iter()
        .map(|r| {
            let mut plan = WritePlan::new::<E>(Mode::Update, r.target, r.fields, E::META.ttl);
            plan.options.conditions = r.conditions;
            plan.assume_conditions();
            plan
        })
        .collect();
    Ok(route::run(conn, plans)
        .await?
        .into_iter()
        .map(|r| r.map(|o| matches!(o, Outcome::Done(_))))
        .collect())
}
