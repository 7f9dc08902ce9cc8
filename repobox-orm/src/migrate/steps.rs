//! The built-in steps of a migration, each a walk of one key template's
//! keys, batch by batch: backfill an index, drop an index's keys, transform
//! a field.

use std::collections::HashMap;
use std::marker::PhantomData;

use futures_util::future::BoxFuture;

use super::rekey::{Rekey, RekeyIndex};
use super::transform::{Transform, TransformFn};
use super::{Changes, Fields, Tally, VerifyFn};
use crate::engine::sweep::{IndexReport, find_missing};
use crate::entity::RedisEntity;
use crate::error::{Error, Result};
use crate::meta::{IndexKind, KeyTemplate, Segment};
use crate::store::Store;

/// One step of a [`Migration`](super::Migration).
pub struct Step {
    /// What it does, as reports and the checkpoint name it.
    pub(super) what: String,
    /// The keys it walks.
    pub(super) keys: &'static KeyTemplate,
    /// Their Redis type (`TYPE`): other keys of the same shape are left alone.
    pub(super) redis_type: &'static str,
    pub(super) work: Box<dyn Work>,
    /// The entity whose indexes are checked at the end, when the step changes entities.
    pub(super) verify: Option<(&'static str, VerifyFn)>,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step").field("what", &self.what).finish_non_exhaustive()
    }
}

/// What a step does with one batch of its keys.
pub(super) trait Work: Send + Sync {
    /// Looks at `keys` (each of the step's template and Redis type) and
    /// changes what needs it, or with `dry_run` counts it.
    fn batch<'a>(&'a self, store: &'a mut Store, keys: &'a [String], dry_run: bool) -> BoxFuture<'a, Result<Tally>>;
}

/// Where `E` declares the index named `index`.
fn index_position<E: RedisEntity>(index: &str) -> Result<usize> {
    E::META
        .indexes
        .iter()
        .position(|ix| ix.name == index)
        .ok_or_else(|| Error::InvalidArgument {
            name: "index",
            reason: format!(
                "`{}` declares no index `{index}` (it has: {})",
                E::META.name,
                E::META.indexes.iter().map(|ix| ix.name).collect::<Vec<_>>().join(", ")
            ),
        })
}

fn verify_of<E: RedisEntity>() -> (&'static str, VerifyFn) {
    fn check<'a, E: RedisEntity>(
        store: &'a mut Store,
        walk: &'a crate::Walk<'a>,
    ) -> BoxFuture<'a, Result<Vec<IndexReport>>> {
        Box::pin(crate::engine::sweep::check_indexes_with::<E, Store>(store, walk))
    }
    (E::META.name, check::<E>)
}

impl Step {
    /// What the step does (`backfill Job::by_status`).
    pub fn describe(&self) -> &str {
        &self.what
    }

    /// Adds every entity of `E` to the index `index` (its generated query's
    /// name, `by_status`) where it is missing: for an index added to an
    /// entity that already has data. Each entry is added only while the
    /// entity still holds the fields it was computed from; a unique value
    /// another entity holds is left to its holder and reported.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `E` declares no index of that name.
    pub fn backfill_index<E: RedisEntity>(index: &str) -> Result<Step> {
        let at = index_position::<E>(index)?;
        Ok(Step {
            what: format!("backfill {}::{}", E::META.name, E::META.indexes[at].name),
            keys: &E::META.key,
            redis_type: "hash",
            work: Box::new(Backfill::<E> {
                index: at,
                entity: PhantomData,
            }),
            verify: Some(verify_of::<E>()),
        })
    }

    /// Removes every key of an index that `E` no longer declares: each key
    /// that parses exactly as `template` and holds `kind`'s Redis type
    /// (lookalike keys of another shape or type are left alone).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a template that is not one (an
    /// unclosed `<`, an empty placeholder, a glob character), or that is
    /// `E`'s key or one of the indexes it still declares.
    pub fn drop_index<E: RedisEntity>(template: &'static str, kind: IndexKind) -> Result<Step> {
        let refuse = |reason: String| Error::InvalidArgument {
            name: "template",
            reason,
        };
        if E::META.key.source == template || E::META.indexes.iter().any(|ix| ix.key.source == template) {
            return Err(refuse(format!(
                "`{template}` is still declared by `{}`: remove the declaration first",
                E::META.name
            )));
        }
        let keys = parse_template(template).map_err(refuse)?;
        Ok(Step {
            what: format!("drop {} index {template}", E::META.name),
            keys,
            redis_type: kind.redis_type(),
            work: Box::new(Drop),
            verify: None,
        })
    }

    /// Moves every entity of `E` from its previous key
    /// (`#[key("...", previous = "...")]`) to its key, each with its index
    /// entries (their members become ids of the key, and an index with a
    /// previous template loses the entity's entry there) and its TTL: in one
    /// script where the keys share a slot, in ordered steps where a cluster
    /// splits them (see [changing your data](crate::guide::migrations)). The application
    /// keeps reading and writing meanwhile: reads find an entity under
    /// either key, and a write moves it first.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `E` has no previous key.
    pub fn rekey<E: RedisEntity>() -> Result<Step> {
        let Some(previous) = &E::META.previous else {
            return Err(Error::InvalidArgument {
                name: "entity",
                reason: format!(
                    "`{}` has no previous key: write `#[key(\"{}\", previous = \"...\")]`",
                    E::META.name,
                    E::META.key.source
                ),
            });
        };
        Ok(Step {
            what: format!(
                "rekey {} from {} to {}",
                E::META.name,
                previous.source,
                E::META.key.source
            ),
            keys: previous,
            redis_type: "hash",
            work: Box::new(Rekey::<E> { entity: PhantomData }),
            verify: Some(verify_of::<E>()),
        })
    }

    /// Moves every entry of `E`'s index `index` (its generated query's
    /// name) from the keys of its previous template
    /// (`#[index(..., previous = "...")]`) to the keys of its template: each
    /// member added where its entity's fields put it, then removed from the
    /// previous key, each only while the entity holds the fields it was read
    /// with; members whose entity is gone or no longer belongs are removed;
    /// an entity still under its previous key is moved first (as
    /// [`Step::rekey`] moves it). Reads merge both keys meanwhile (each
    /// entity listed once), so the application sees every entry throughout.
    /// Run it after [`Step::rekey`] when both change, so that most entries
    /// have moved with their entities. A key of the previous template that
    /// is also a key of the index's template is left alone.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `E` declares no index of that name,
    /// or one without a previous template.
    pub fn rekey_index<E: RedisEntity>(index: &str) -> Result<Step> {
        let at = index_position::<E>(index)?;
        let declared = &E::META.indexes[at];
        let Some(previous) = &declared.previous else {
            return Err(Error::InvalidArgument {
                name: "index",
                reason: format!(
                    "`{}::{index}` has no previous template: write `#[index(..., previous = \"...\")]`",
                    E::META.name
                ),
            });
        };
        Ok(Step {
            what: format!(
                "rekey {}::{} from {} to {}",
                E::META.name,
                declared.name,
                previous.source,
                declared.key.source
            ),
            keys: previous,
            redis_type: declared.kind.redis_type(),
            work: Box::new(RekeyIndex::<E> {
                index: declared,
                entity: PhantomData,
            }),
            verify: Some(verify_of::<E>()),
        })
    }

    /// Rewrites entities of `E` with `f`, which reads the stored fields
    /// ([`Fields`], the bytes as stored) and says what to set or delete
    /// ([`Changes`]). Each entity is written only while every field `f`
    /// read or changed still holds what it read (a write of the application
    /// in between makes the step read the entity again), atomically with
    /// the index entries whose fields change, keeping its TTL; setting a
    /// field removes its aliases (its old names) in the same write.
    ///
    /// `f` must leave its own result unchanged (fill a field only where it
    /// is absent, re-encode only what is in the old encoding): a resumed
    /// run looks at the last batch again, and the step checks this on every
    /// entity before writing it (an error stops the run, nothing of that
    /// entity written). `f` may not change an encrypted field or a field of
    /// the key.
    pub fn transform<E: RedisEntity>(
        what: &str,
        f: impl Fn(&Fields<'_>, &mut Changes) -> Result<()> + Send + Sync + 'static,
    ) -> Step {
        let f: Box<TransformFn> = Box::new(f);
        let what = format!("transform {}: {what}", E::META.name);
        Step {
            what: what.clone(),
            keys: &E::META.key,
            redis_type: "hash",
            work: Box::new(Transform::<E>::new(what, f)),
            verify: Some(verify_of::<E>()),
        }
    }
}

struct Backfill<E> {
    index: usize,
    entity: PhantomData<fn() -> E>,
}

impl<E: RedisEntity> Work for Backfill<E> {
    fn batch<'a>(&'a self, store: &'a mut Store, keys: &'a [String], dry_run: bool) -> BoxFuture<'a, Result<Tally>> {
        Box::pin(async move {
            let mut reports = vec![IndexReport::default(); E::META.indexes.len()];
            let mut claims = HashMap::new();
            find_missing::<E, Store>(store, !dry_run, &mut reports, keys, &mut claims, Some(self.index)).await?;
            let report = std::mem::take(&mut reports[self.index]);
            Ok(Tally {
                changed: report.missing,
                problems: report.conflicts.saturating_add(report.bad),
                messages: report.problems,
            })
        })
    }
}

struct Drop;

impl Work for Drop {
    fn batch<'a>(&'a self, store: &'a mut Store, keys: &'a [String], dry_run: bool) -> BoxFuture<'a, Result<Tally>> {
        Box::pin(async move {
            if dry_run || keys.is_empty() {
                return Ok(Tally {
                    changed: keys.len() as u64,
                    ..Tally::default()
                });
            }
            let cmds: Vec<redis::Cmd> = keys
                .iter()
                .map(|key| {
                    let mut cmd = redis::cmd("UNLINK");
                    cmd.arg(key);
                    cmd
                })
                .collect();
            let removed = crate::engine::pipeline::query(store, &cmds)
                .await?
                .into_iter()
                .filter(|v| matches!(v, redis::Value::Int(1)))
                .count();
            Ok(Tally {
                changed: removed as u64,
                ..Tally::default()
            })
        })
    }
}

/// A key template given at run time (an index the code no longer
/// declares), parsed as the derive parses `#[index(...)]`: literal text and
/// `<placeholder>`s. The parsed template lives as long as the process (a
/// migration's steps are built once per run).
fn parse_template(source: &'static str) -> std::result::Result<&'static KeyTemplate, String> {
    let mut segments = Vec::new();
    let mut rest = source;
    while !rest.is_empty() {
        match rest.find('<') {
            Some(0) => {
                let end = rest
                    .find('>')
                    .ok_or_else(|| format!("`{source}` has a `<` without its `>`"))?;
                let name = &rest[1..end];
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!(
                        "`{source}` has a placeholder `<{name}>` that is not a field name"
                    ));
                }
                segments.push(Segment::Field {
                    placeholder: name,
                    field: name,
                });
                rest = &rest[end + 1..];
            }
            at => {
                let end = at.unwrap_or(rest.len());
                let text = &rest[..end];
                if text.contains(['>', '*', '?', '[', ']', '\\']) {
                    return Err(format!(
                        "`{source}` has a `>` or a glob character outside a placeholder"
                    ));
                }
                segments.push(Segment::Lit(text));
                rest = &rest[end..];
            }
        }
    }
    if segments
        .windows(2)
        .any(|w| matches!(w, [Segment::Field { .. }, Segment::Field { .. }]))
    {
        return Err(format!("`{source}` has two placeholders with nothing between them"));
    }
    Ok(Box::leak(Box::new(KeyTemplate {
        source,
        segments: Box::leak(segments.into_boxed_slice()),
        max_part_len: crate::meta::DEFAULT_MAX_KEY_PART_LEN,
        secret: false,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_given_at_run_time_parses_as_the_derive_parses_one() {
        let t = parse_template("jobs:{<user_id>}:day:<day>").unwrap();
        assert_eq!(t.parse_key("jobs:{u1}:day:2026-12-01"), Some(vec!["u1", "2026-12-01"]));
        assert_eq!(t.parse_key("jobs:{u1}:day:x:y"), None);
        assert!(parse_template("jobs:<user_id").is_err());
        assert!(parse_template("jobs:<>").is_err());
        assert!(parse_template("jobs:*").is_err());
        assert!(parse_template("jobs:<a><b>").is_err());
        assert_eq!(parse_template("jobs:all").unwrap().parse_key("jobs:all"), Some(vec![]));
    }
}
