//! A write made from a template: the update the take script
//! (`scripts/take.lua`) makes on each entity it delivers, built once for
//! every entity it may deliver. Values it cannot know in advance (the
//! entity's id, the entry's, Redis's clock, the score a sorted index keeps)
//! are markers that the script computes for each entity (`take.lua` lists
//! them); the rest is the general write script's call, as a plan builds it.

use std::borrow::Cow;

use super::WritePlan;
use crate::error::{Error, Result};
use crate::meta::IndexKind;
use crate::scripts::write_entity::{IndexOp, Mode, WriteCall};

/// A marker of `take.lua`: NUL, then its code and argument.
pub(crate) fn marker(code: u8, arg: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(2 + arg.len());
    m.push(0);
    m.push(code);
    m.extend_from_slice(arg);
    m
}

/// A literal value as the template carries it: one that starts with NUL
/// gets another in front, so that it is not read as a marker.
pub(crate) fn literal(value: &[u8]) -> Cow<'_, [u8]> {
    match value.first() {
        Some(0) => Cow::Owned([&[0u8][..], value].concat()),
        _ => Cow::Borrowed(value),
    }
}

fn refused(reason: String) -> Error {
    Error::InvalidArgument {
        name: "template",
        reason,
    }
}

impl WritePlan<'_, '_> {
    /// The template's guards, their values and its index ops: a guard must be
    /// fixed by the conditions, except a sorted index's score, which the
    /// script reads from the hash (`\0v<field>`). Call after the plan's
    /// conditions are set; `guards` and `values` receive the guards kept.
    pub(crate) fn template_ops(
        &mut self,
        guards: &mut Vec<&'static str>,
        values: &mut Vec<Option<Vec<u8>>>,
    ) -> Result<Vec<IndexOp>> {
        if self.mode != Mode::Update || !self.takeovers.is_empty() {
            return Err(refused("a template is an update".into()));
        }
        let conditions = self.options.conditions;
        let mut read_here = Vec::new();
        let mut current = Vec::with_capacity(self.guards.len());
        for g in &self.guards {
            if let Some((_, v)) = conditions.iter().find(|(f, _)| f == g) {
                guards.push(g);
                values.push(v.map(<[u8]>::to_vec));
                current.push(v.map(<[u8]>::to_vec));
                continue;
            }
            let placeholder = self
                .indexes
                .iter()
                .any(|ix| ix.key.placeholders().any(|(_, f)| f == *g));
            if placeholder {
                return Err(refused(format!(
                    "it moves an index entry whose key depends on `{g}`, which its conditions do not fix"
                )));
            }
            // A score: the write's own, or the hash's, which the script reads
            // (any number stands in for it here).
            if !self.fields.touches(g) {
                read_here.push(*g);
            }
            current.push(Some(b"0".to_vec()));
        }
        self.current = Some(current);
        let mut ops = self.index_ops()?;
        for (op, ix) in ops.iter_mut().zip(&self.indexes) {
            if let IndexKind::Sorted { score } = ix.kind
                && read_here.contains(&score)
                && op.new.is_some()
            {
                op.score = String::from_utf8(marker(b'v', score.as_bytes())).unwrap_or_default();
            }
        }
        Ok(ops)
    }

    /// The template's call of the write script: `id` and every value as
    /// given (markers included), with `ops` and the guards of
    /// [`template_ops`](Self::template_ops).
    pub(crate) fn template_call<'c>(
        &'c self,
        set: &'c [(&'static str, Cow<'c, [u8]>)],
        guards: &'c [&'static str],
        values: &'c [Option<Vec<u8>>],
        ops: Vec<IndexOp>,
        id: &'c str,
    ) -> WriteCall<'c, 'c> {
        WriteCall {
            mode: Some(Mode::Update),
            ttl_ms: 0,
            hash_key: &self.target.key,
            id,
            guards,
            guard_values: Some(values),
            set,
            del: &self.fields.del,
            ops,
            conditions: self.options.conditions,
            stream: self.options.stream,
            ack: None,
            extra_keys: &[],
            takeovers: &[],
        }
    }
}
