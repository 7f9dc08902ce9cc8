//! The protocol of the write script (`write_entity.lua`): how one write is
//! laid out in `KEYS` and `ARGV`, and what the script's answers mean. (A
//! delete goes to `delete_entity.lua`, laid out in `delete_entity.rs`, and
//! answers the same way.)
//!
//! `KEYS`: the hash, then each index op's new and old key (in op order, absent
//! ones skipped), then the stream to `XADD` to, then the stream of the
//! delivery to `XACK`, then the keys deleted with the entity. The script never builds a key name (Redis Cluster needs that).
//!
//! `ARGV[1]` is a binary header read with one `struct.unpack(HEADER_FORMAT)`,
//! followed by one `OP_FORMAT` record per index op; `ARGV[2]` is the id; then
//! the variable parts in this order: guard names and their expected values,
//! field/value pairs to set, names to delete, one score per index op,
//! condition names and expected values, the stream entry's pairs, the
//! acknowledged delivery's group and entry id, the `KEYS` positions of the keys deleted with the entity, and the unique
//! claims to take over (see [`Takeover`]).
//!
//! Every constant here is repeated, by name, at the top of `write_entity.lua`; the
//! tests at the bottom of this file hold the two sides together.

mod reply;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use redis::Cmd;

use crate::scripts::Call;

pub(crate) use self::reply::WriteReply;
#[cfg(test)]
use self::reply::tag;
use crate::error::{Error, Result};
use crate::meta::IndexKind;
pub(crate) use crate::scripts::kind_letter;

/// The header's `struct.unpack` format: mode, TTL in ms, then ten counts.
/// Only the write script reads it; the tests hold the two copies together.
#[cfg(test)]
pub(crate) const HEADER_FORMAT: &str = ">c1I8I2I2I2I2I2I2I2I2I2I2";
/// Bytes of the header before the index op records.
pub(crate) const HEADER_LEN: usize = 1 + 8 + 2 * 10;
/// One index op record's `struct.unpack` format: kind, new key, old key.
#[cfg(test)]
pub(crate) const OP_FORMAT: &str = ">c1I2I2";
/// Bytes of one index op record.
pub(crate) const OP_LEN: usize = 1 + 2 + 2;
/// The `KEYS` position (1-based) of the first index key; `KEYS[1]` is the hash.
pub(crate) const FIRST_INDEX_KEY: usize = 2;

/// Expected value of a guard or condition: the field holds these bytes.
const PRESENT: u8 = b'=';
/// Expected value of a guard or condition: the field is absent.
const ABSENT: &[u8] = b"-";
/// Expected value of a guard: the engine does not know it.
const UNKNOWN: &[u8] = b"?";

/// What a write does to the entity.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// Fails with `exists` if the hash is present.
    Create,
    /// Writes whether or not the hash is present.
    Save,
    /// Needs the hash; keeps its TTL.
    Update,
    /// Removes the hash, its index entries and the extra keys.
    Delete,
    /// Needs the hash; sets its TTL and lengthens its index keys'.
    SetTtl,
    /// An update that also sets a new TTL.
    UpdateSettingTtl,
}

impl Mode {
    /// The mode's byte in the header.
    pub(crate) const fn byte(self) -> u8 {
        match self {
            Mode::Create => b'c',
            Mode::Save => b's',
            Mode::Update => b'u',
            Mode::Delete => b'd',
            Mode::SetTtl => b'e',
            Mode::UpdateSettingTtl => b'r',
        }
    }
}

/// One index entry to maintain: the key it must be under after the write, the
/// key it is under before it (each `None` when there is none), and its score.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IndexOp {
    pub kind: IndexKind,
    pub new: Option<String>,
    pub old: Option<String>,
    /// The score, for a sorted index that the write (re)adds; else empty.
    pub score: String,
}

/// Fields as the engine saw them in a hash: name and raw value (`None`: absent).
pub(crate) type SeenFields = Vec<(&'static str, Option<Vec<u8>>)>;

/// A unique value whose recorded owner the engine found gone or no longer
/// holding it: the write may take the claim over if, inside the script, the
/// owner is still exactly as the engine saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Takeover {
    /// The index op (0-based) whose unique key is claimed.
    pub op: usize,
    /// The id the unique key holds.
    pub owner: String,
    /// The owner's hash key; `None` when the id is not a valid id of the entity.
    pub owner_key: Option<String>,
    /// What the engine saw of the owner's hash: `None` absent, else the
    /// indexed fields' raw values (`None` for an absent field).
    pub seen: Option<SeenFields>,
}

/// A stream delivery that a write acknowledges (`XACK`) when it is done.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ack<'w> {
    /// The stream the delivery came from.
    pub stream: &'w str,
    /// Its consumer group.
    pub group: &'w str,
    /// The entry's id.
    pub id: &'w str,
}

/// One complete call of the write script.
#[derive(Debug, Default)]
pub(crate) struct WriteCall<'w, 'a> {
    pub mode: Option<Mode>,
    /// The TTL to set, in ms (0: none).
    pub ttl_ms: u64,
    pub hash_key: &'w str,
    pub id: &'w str,
    /// Fields whose values decide where the index entries are...
    pub guards: &'w [&'static str],
    /// ...and what the engine believes they hold (`None`: it does not know).
    pub guard_values: Option<&'w [Option<Vec<u8>>]>,
    pub set: &'w [(&'static str, Cow<'a, [u8]>)],
    pub del: &'w [&'static str],
    pub ops: Vec<IndexOp>,
    /// Fields that must hold these values (`None` = absent) for the write to happen.
    pub conditions: &'w [(&'static str, Option<&'w [u8]>)],
    /// A stream entry appended with the write.
    pub stream: Option<(&'w str, &'w [(&'w str, &'w str)])>,
    /// A delivery acknowledged with the write.
    pub ack: Option<Ack<'w>>,
    /// Keys deleted with the entity.
    pub extra_keys: &'w [String],
    /// Unique claims to take over.
    pub takeovers: &'w [Takeover],
}

fn count(what: &'static str, n: usize) -> Result<u16> {
    u16::try_from(n).map_err(|_| Error::Encode {
        field: what,
        message: format!("{n} is more than one write can carry ({})", u16::MAX),
    })
}

fn expected(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        Some(v) => [&[PRESENT][..], v].concat(),
        None => ABSENT.to_vec(),
    }
}

impl<'w> WriteCall<'w, '_> {
    /// The `EVALSHA` of the script whose SHA1 is `sha`.
    pub(crate) fn command(&'w self, sha: &str) -> Result<Cmd> {
        Ok(self.call()?.command_of(sha))
    }

    /// This write's `KEYS` and `ARGV`.
    pub(crate) fn call(&'w self) -> Result<Call> {
        let mode = self.mode.ok_or_else(|| Error::Encode {
            field: "mode",
            message: "a write without a mode".into(),
        })?;
        let mut keys: Vec<&str> = vec![self.hash_key];
        debug_assert_eq!(keys.len() + 1, FIRST_INDEX_KEY);
        let mut records = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            let mut position = |key: &'w Option<String>| -> Result<u16> {
                match key {
                    None => Ok(0),
                    Some(k) => {
                        keys.push(k);
                        count("index keys", keys.len())
                    }
                }
            };
            let new = position(&op.new)?;
            let old = position(&op.old)?;
            records.push((kind_letter(op.kind), new, old));
        }
        let stream_pos = match self.stream {
            Some((stream, _)) => {
                keys.push(stream);
                count("stream key", keys.len())?
            }
            None => 0,
        };
        let ack_pos = match &self.ack {
            Some(ack) => {
                keys.push(ack.stream);
                count("acknowledged stream key", keys.len())?
            }
            None => 0,
        };
        let first_extra = keys.len() + 1;
        keys.extend(self.extra_keys.iter().map(String::as_str));
        let mut owner_positions = Vec::with_capacity(self.takeovers.len());
        for t in self.takeovers {
            owner_positions.push(match &t.owner_key {
                Some(k) => {
                    keys.push(k);
                    count("keys", keys.len())?
                }
                None => 0,
            });
        }
        count("keys", keys.len())?;
        let entry = self.stream.map_or(&[][..], |(_, entry)| entry);

        let mut header = Vec::with_capacity(HEADER_LEN + OP_LEN * records.len());
        header.push(mode.byte());
        header.extend_from_slice(&self.ttl_ms.to_be_bytes());
        for (what, n) in [
            ("guards", self.guards.len()),
            ("fields", self.set.len()),
            ("deleted fields", self.del.len()),
            ("indexes", records.len()),
            ("conditions", self.conditions.len()),
            ("stream key", usize::from(stream_pos)),
            ("stream entry", entry.len()),
            ("acknowledged stream key", usize::from(ack_pos)),
            ("extra keys", self.extra_keys.len()),
            ("unique takeovers", self.takeovers.len()),
        ] {
            header.extend_from_slice(&count(what, n)?.to_be_bytes());
        }
        for (kind, new, old) in records {
            header.push(kind);
            header.extend_from_slice(&new.to_be_bytes());
            header.extend_from_slice(&old.to_be_bytes());
        }

        let mut cmd = Call::default();
        for key in keys {
            cmd.key(key);
        }
        cmd.arg(header).arg(self.id);
        cmd.arg(self.guards);
        for i in 0..self.guards.len() {
            match self.guard_values {
                None => cmd.arg(UNKNOWN),
                Some(values) => cmd.arg(expected(values.get(i).and_then(Option::as_deref))),
            };
        }
        for (name, value) in self.set {
            cmd.arg(*name).arg(&**value);
        }
        cmd.arg(self.del);
        for op in &self.ops {
            cmd.arg(&op.score);
        }
        for (name, _) in self.conditions {
            cmd.arg(*name);
        }
        for (_, value) in self.conditions {
            cmd.arg(expected(*value));
        }
        for (f, v) in entry {
            cmd.arg(*f).arg(*v);
        }
        if let Some(ack) = &self.ack {
            cmd.arg(ack.group).arg(ack.id);
        }
        for pos in first_extra..first_extra + self.extra_keys.len() {
            cmd.arg(pos);
        }
        for (t, pos) in self.takeovers.iter().zip(owner_positions) {
            cmd.arg(t.op + 1).arg(pos).arg(&t.owner);
            match &t.seen {
                None => {
                    cmd.arg("a").arg(0);
                }
                Some(fields) => {
                    cmd.arg("p").arg(fields.len());
                    for (name, _) in fields {
                        cmd.arg(*name);
                    }
                    for (_, value) in fields {
                        cmd.arg(expected(value.as_deref()));
                    }
                }
            }
        }
        Ok(cmd)
    }
}
