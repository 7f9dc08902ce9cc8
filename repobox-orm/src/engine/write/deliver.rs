//! The writes the take script (`scripts/take.lua`) makes with a read: the
//! start of each entity it delivers, from a template, and the end of the
//! last one, the first attempt of a compare-and-set (see `queue/take.rs`).

use std::borrow::Cow;

use redis::Value;

use super::plan::{WritePlan, literal, marker};
use super::{Ack, Conditions, conditions_of};
use crate::engine::encoding::{drop_aliases, seal};
use crate::engine::target::Target;
use crate::entity::{EntityPatch, FieldWriter, RedisEntity};
use crate::error::{Error, Result};
use crate::queue::{Computed, StartTemplate};
use crate::scripts::Call;
use crate::scripts::write_entity::{Mode, WriteReply};

/// The id the template's key is built with; the script puts each entity's
/// own key in its place.
const STAND_IN: &str = "x";

fn refused(reason: String) -> Error {
    Error::InvalidArgument {
        name: "template",
        reason,
    }
}

/// The marker of `value` in field `field` (`take.lua` lists them).
fn marker_of(field: &str, value: &Computed<'_>) -> Vec<u8> {
    match value {
        Computed::Text(text) => literal(text.as_bytes()).into_owned(),
        Computed::EntityId => marker(b'i', b""),
        Computed::EntryId => marker(b'e', b""),
        Computed::RandomId => marker(b'u', b""),
        Computed::Clock { plus_ms } => marker(b't', plus_ms.to_string().as_bytes()),
        Computed::AppendToArray { before, after } => marker(
            b'a',
            [field.as_bytes(), b"\0", before.as_bytes(), b"\0", after.as_bytes()]
                .concat()
                .as_slice(),
        ),
    }
}

/// Text of a marker (every marker is UTF-8 when its parts are).
fn text(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| refused("a value that is not UTF-8".into()))
}

/// The call of the write script that `template` stands for: its `KEYS`
/// (the first, the hash, a stand-in) and its `ARGV`, markers included.
pub(crate) fn template_call<E: RedisEntity>(template: &StartTemplate<'_, E>) -> Result<Call> {
    if E::META.key.placeholders().count() != 1 {
        return Err(refused(format!(
            "{}'s key has more than one part: the script cannot build it from a stream entry",
            E::META.key.source
        )));
    }
    let mut fields = FieldWriter::default();
    template.patch.write_fields(&mut fields)?;
    drop_aliases::<E>(&mut fields);
    if let Some(field) = E::META.encrypted.iter().find(|f| fields.touches(f)) {
        return Err(refused(format!(
            "`{field}` is encrypted with its key, which a template does not know"
        )));
    }
    for (field, _) in &template.computed {
        if fields.get(field).is_none() {
            return Err(refused(format!("the patch does not set `{field}`, which it computes")));
        }
    }
    for (name, value) in &mut fields.set {
        *value = match template.computed.iter().find(|(f, _)| f == name) {
            Some((field, computed)) => Cow::Owned(marker_of(field, computed)),
            None => Cow::Owned(literal(value).into_owned()),
        };
    }
    let mut conditions: Conditions = conditions_of::<E>(template.expected)?
        .into_iter()
        .map(|(f, v)| (f, v.map(|v| literal(&v).into_owned())))
        .collect();
    for (field, entry_field) in &template.entry_names {
        conditions.retain(|(f, _)| f != field);
        conditions.push((field, Some(marker(b'f', entry_field.as_bytes()))));
    }
    let condition_refs: Vec<(&'static str, Option<&[u8]>)> =
        conditions.iter().map(|(f, v)| (*f, v.as_deref())).collect();
    let entry: Vec<(String, String)> = match &template.append {
        Some((_, pairs)) => pairs
            .iter()
            .map(|(name, value)| Ok((name.to_string(), text(marker_of(name, value))?)))
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let entry_refs: Vec<(&str, &str)> = entry.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let target = Target::from_parts::<E>(&[Cow::Borrowed(STAND_IN)])?;
    let mut plan = WritePlan::new::<E>(Mode::Update, &target, &fields, None);
    plan.options.conditions = &condition_refs;
    plan.options.stream = template
        .append
        .as_ref()
        .map(|(stream, _)| (*stream, entry_refs.as_slice()));
    let (mut guards, mut values) = (Vec::new(), Vec::new());
    let ops = plan.template_ops(&mut guards, &mut values)?;
    if let Some(field) = guards
        .iter()
        .find(|g| template.entry_names.iter().any(|(f, _)| f == *g))
    {
        return Err(refused(format!(
            "`{field}` decides where an index entry it moves is, so it cannot be named by the entry"
        )));
    }
    let id = text(marker(b'i', b""))?;
    plan.template_call(&fields.set, &guards, &values, ops, &id).call()
}

/// The first attempt of a compare-and-set of the entity at `target` (see
/// `patch_if`), as one call of the write script; `None` when it cannot
/// be one (it must learn where index entries are first).
pub(crate) fn finish_call<E: RedisEntity>(
    target: &Target,
    patch: &E::Patch,
    expected: &E::Patch,
    stream: Option<(&str, &[(&str, &str)])>,
    ack: Option<Ack<'_>>,
) -> Result<Option<Call>> {
    let mut fields = FieldWriter::default();
    patch.write_fields(&mut fields)?;
    seal::<E>(&target.key, &mut fields)?;
    let conditions = conditions_of::<E>(expected)?;
    let refs: Vec<(&'static str, Option<&[u8]>)> = conditions.iter().map(|(f, v)| (*f, v.as_deref())).collect();
    let mut plan = WritePlan::new::<E>(Mode::Update, target, &fields, None);
    plan.options.conditions = &refs;
    plan.options.stream = stream;
    plan.options.ack = ack;
    plan.assume_conditions();
    if plan.lookup().is_some() {
        return Ok(None);
    }
    plan.call().map(Some)
}

/// What the first attempt of a compare-and-set answered: `Some` when that
/// is its outcome (written, with the stream entry's id; absent), `None`
/// when it must go the whole way (`patch_if`).
pub(crate) fn finish_outcome(target: &Target, reply: Value) -> Option<Result<Option<String>>> {
    match WriteReply::parse(&target.shown(), &target.key, "write_entity.lua", reply) {
        Ok(WriteReply::Done) => Some(Ok(None)),
        Ok(WriteReply::Appended(id)) => Some(Ok(Some(id))),
        Ok(WriteReply::Missing) => Some(Err(Error::NotFound {
            key: target.shown().into_owned(),
        })),
        Ok(_) => None,
        Err(e) => Some(Err(e)),
    }
}
