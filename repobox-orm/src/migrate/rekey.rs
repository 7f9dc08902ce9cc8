//! The work of the re-key steps: entities moved to their key
//! ([`Step::rekey`](super::Step::rekey)), entries moved to their index's
//! keys ([`Step::rekey_index`](super::Step::rekey_index)).

use std::marker::PhantomData;

use futures_util::future::BoxFuture;

use super::Tally;
use super::steps::Work;
use crate::engine::rekey::{Moved, Wanted, move_entries, relocate};
use crate::engine::write::route::Router;
use crate::entity::RedisEntity;
use crate::error::Result;
use crate::meta::IndexMeta;
use crate::store::Store;

pub(super) struct Rekey<E> {
    pub(super) entity: PhantomData<fn() -> E>,
}

impl<E: RedisEntity> Work for Rekey<E> {
    fn batch<'a>(&'a self, store: &'a mut Store, keys: &'a [String], dry_run: bool) -> BoxFuture<'a, Result<Tally>> {
        Box::pin(async move {
            if dry_run {
                return Ok(Tally {
                    changed: keys.len() as u64,
                    ..Tally::default()
                });
            }
            let wanted: Vec<Wanted> = keys
                .iter()
                .map(|old| Wanted {
                    old: old.clone(),
                    new: None,
                })
                .collect();
            let mut router = Router::new(store);
            let mut tally = Tally::default();
            let previous = E::META.previous.as_ref().unwrap_or(&E::META.key);
            for (old, moved) in keys.iter().zip(relocate(store, &mut router, E::META, &wanted).await?) {
                let problem = match moved {
                    Ok(Moved::Done | Moved::Taken) => {
                        tally.changed += 1;
                        continue;
                    }
                    Ok(Moved::Absent | Moved::Deleted) => continue,
                    Ok(Moved::Other) => format!(
                        "`{}` holds fields that do not give its own key: left where it is",
                        previous.shown(old)
                    ),
                    Err(e) => e.to_string(),
                };
                tally.problems += 1;
                tally.messages.push(problem);
            }
            Ok(tally)
        })
    }
}

pub(super) struct RekeyIndex<E> {
    pub(super) index: &'static IndexMeta,
    pub(super) entity: PhantomData<fn() -> E>,
}

impl<E: RedisEntity> Work for RekeyIndex<E> {
    fn batch<'a>(&'a self, store: &'a mut Store, keys: &'a [String], dry_run: bool) -> BoxFuture<'a, Result<Tally>> {
        Box::pin(async move {
            let mut tally = Tally::default();
            // A key of the index's own template is the index's, whatever
            // else it parses as.
            for old in keys.iter().filter(|k| self.index.key.parse_key(k).is_none()) {
                let moved = move_entries::<E>(store, self.index, old, dry_run).await?;
                tally.changed = tally.changed.saturating_add(moved.moved).saturating_add(moved.removed);
                tally.problems = tally.problems.saturating_add(moved.problems.len() as u64);
                tally.messages.extend(moved.problems);
            }
            Ok(tally)
        })
    }
}
