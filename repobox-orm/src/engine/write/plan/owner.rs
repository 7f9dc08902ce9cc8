//! A unique value held by another entity: the owner is read, and the plan
//! judges whether the claim can be taken over (the owner is gone, or no
//! longer holds the value) or is a `UniqueViolation`.

use redis::{Cmd, Value};

use super::WritePlan;
use crate::entity::{RawHash, RedisEntity};
use crate::error::{Error, Result};
use crate::meta::IndexMeta;
use crate::scripts::write_entity::Takeover;

/// The index key under which the entity stored in `hash` at `key` belongs;
/// `None` when the hash does not decode as an `E`.
pub(super) fn index_key_of<E: RedisEntity>(key: &str, hash: &RawHash<'_>, index: &IndexMeta) -> Option<String> {
    let entity = crate::engine::encoding::decode::<E>(key, &E::META.key.shown(key), hash).ok()?;
    crate::engine::encoding::Encoded::plain(&entity)
        .ok()?
        .index_key(&index.key)
        .ok()
}

impl WritePlan<'_, '_> {
    pub(crate) fn unique_violation(&self, op: usize, owner: String) -> Error {
        let index = self.indexes.get(op);
        Error::UniqueViolation {
            index: index.map_or("", |ix| ix.name),
            index_key: index
                .and_then(|ix| Self::index_key(&ix.key, |f| self.after(f)).ok())
                .unwrap_or_default(),
            owner,
        }
    }

    /// The `HGETALL` of a unique value's owner, when its id is an id of the
    /// entity (`None`: it is not, so no entity of ours can hold the value).
    pub fn owner_lookup(&self, owner: &str) -> Option<Cmd> {
        let (key, _) = crate::engine::rekey::member_key(self.entity, owner).ok()?;
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(key);
        Some(cmd)
    }

    /// Decides on a unique claim from the owner's hash (`reply` to
    /// [`owner_lookup`](Self::owner_lookup), `None` when there was none):
    /// an owner that is gone, or whose indexed fields no longer give this
    /// unique key, is taken over on the next attempt; a live one is a
    /// `UniqueViolation`. An owner that does not decode counts as live.
    pub fn decide_takeover(&mut self, op: usize, owner: String, reply: Option<Value>) -> Result<()> {
        let Some(index) = self.indexes.get(op).copied() else {
            return Err(self.unique_violation(op, owner));
        };
        let (owner_key, seen) = match reply {
            None => (None, None),
            Some(reply) => {
                let (key, _) = crate::engine::rekey::member_key(self.entity, &owner)?;
                let hash = RawHash::from_reply(&key, &reply)?;
                // An owner absent under its key whose id also names a
                // previous key may not have moved yet: not taken over.
                let unmoved = self
                    .entity
                    .previous
                    .as_ref()
                    .is_some_and(|p| p.key_from_id(&owner).is_ok());
                if hash.is_empty() && unmoved {
                    return Err(self.unique_violation(op, owner));
                } else if hash.is_empty() {
                    (Some(key), None)
                } else {
                    let wanted = Self::index_key(&index.key, |f| self.after(f)).ok();
                    match (self.index_key_of)(&key, &hash, index) {
                        Some(held) if Some(&held) != wanted.as_ref() => {
                            let seen = index
                                .key
                                .placeholders()
                                .map(|(_, f)| (f, hash.get(f).map(<[u8]>::to_vec)))
                                .collect();
                            (Some(key), Some(seen))
                        }
                        _ => return Err(self.unique_violation(op, owner)),
                    }
                }
            }
        };
        tracing::debug!(key = %self.target.shown(), index = index.name, "taking over a unique value whose owner is gone");
        self.takeovers.push(Takeover {
            op,
            owner,
            owner_key,
            seen,
        });
        Ok(())
    }
}
