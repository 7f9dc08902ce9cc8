//! The protocol between the engine and `scripts/write.lua`: how one write is
//! laid out in `KEYS` and `ARGV`, and what the script's answers mean.
//!
//! `KEYS`: the hash, then each index op's new and old key (in op order, absent
//! ones skipped), then the stream to `XADD` to, then the keys deleted with the
//! entity. The script never builds a key name (Redis Cluster needs that).
//!
//! `ARGV[1]` is a binary header read with one `struct.unpack(HEADER_FORMAT)`,
//! followed by one `OP_FORMAT` record per index op; `ARGV[2]` is the id; then
//! the variable parts in this order: guard names and their expected values,
//! field/value pairs to set, names to delete, one score per index op,
//! condition names and expected values, the stream entry's pairs, and the
//! `KEYS` positions of the keys deleted with the entity.
//!
//! Every constant here is repeated, by name, at the top of `write.lua`; the
//! tests at the bottom of this file hold the two sides together.

use std::borrow::Cow;

use redis::{Cmd, Value};

use crate::error::{Error, Result};
use crate::meta::IndexKind;

/// The header's `struct.unpack` format: mode, TTL in ms, then eight counts.
/// Only `write.lua` reads it; the tests hold the two copies together.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const HEADER_FORMAT: &str = ">c1I8I2I2I2I2I2I2I2I2";
/// Bytes of the header before the index op records.
pub(crate) const HEADER_LEN: usize = 1 + 8 + 2 * 8;
/// One index op record's `struct.unpack` format: kind, new key, old key.
#[cfg_attr(not(test), allow(dead_code))]
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
    Expire,
    /// An update that also sets a new TTL.
    Refresh,
}

impl Mode {
    /// The mode's byte in the header.
    pub(crate) const fn byte(self) -> u8 {
        match self {
            Mode::Create => b'c',
            Mode::Save => b's',
            Mode::Update => b'u',
            Mode::Delete => b'd',
            Mode::Expire => b'e',
            Mode::Refresh => b'r',
        }
    }
}

/// An index kind's byte in an op record.
pub(crate) const fn kind_byte(kind: IndexKind) -> u8 {
    match kind {
        IndexKind::Sorted { .. } => b'z',
        IndexKind::Set => b's',
        IndexKind::Unique => b'u',
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
    /// Keys deleted with the entity.
    pub extra_keys: &'w [String],
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
            records.push((kind_byte(op.kind), new, old));
        }
        let stream_pos = match self.stream {
            Some((stream, _)) => {
                keys.push(stream);
                count("stream key", keys.len())?
            }
            None => 0,
        };
        let first_extra = keys.len() + 1;
        keys.extend(self.extra_keys.iter().map(String::as_str));
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
            ("extra keys", self.extra_keys.len()),
        ] {
            header.extend_from_slice(&count(what, n)?.to_be_bytes());
        }
        for (kind, new, old) in records {
            header.push(kind);
            header.extend_from_slice(&new.to_be_bytes());
            header.extend_from_slice(&old.to_be_bytes());
        }

        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(sha).arg(keys.len()).arg(&keys);
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
        for pos in first_extra..first_extra + self.extra_keys.len() {
            cmd.arg(pos);
        }
        Ok(cmd)
    }
}

/// The first item of each tagged answer of the script (`{ 'stale', ... }`).
pub(crate) mod tag {
    pub const OK: &str = "ok";
    pub const STALE: &str = "stale";
    pub const CONFLICT: &str = "conflict";
    pub const EXISTS: &str = "exists";
    pub const UNIQUE: &str = "unique";
    pub const WRONGTYPE: &str = "wrongtype";
    /// Every tag, for the test that holds them against `write.lua`.
    #[cfg(test)]
    pub const ALL: &[&str] = &[OK, STALE, CONFLICT, EXISTS, UNIQUE, WRONGTYPE];
}

/// What the write script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteReply {
    /// Written (`1`).
    Done,
    /// Written, and the stream entry got this id (`{ 'ok', id }`).
    Appended(String),
    /// The hash is absent and the mode needs it (`0`).
    Missing,
    /// The guard fields hold these values, not the expected ones; nothing written.
    Stale(Vec<Option<Vec<u8>>>),
    /// A condition did not hold; nothing written.
    Conflict { field: String },
    /// A create found the hash present; nothing written.
    Exists,
    /// The unique index of op `op` (0-based) is held by `owner`; nothing written.
    Unique { op: usize, owner: String },
    /// `key` holds a value of the wrong type; nothing written.
    WrongType { key: String },
}

impl WriteReply {
    /// Reads the script's answer for the write of `key`.
    pub(crate) fn parse(key: &str, reply: Value) -> Result<WriteReply> {
        let unexpected = |what: &dyn std::fmt::Debug| Error::UnexpectedReply {
            key: key.to_owned(),
            detail: format!("the write script answered {what:?}"),
        };
        let items = match reply {
            Value::Int(1) => return Ok(WriteReply::Done),
            Value::Int(0) => return Ok(WriteReply::Missing),
            Value::Array(items) => items,
            Value::ServerError(e) => return Err(Error::from(redis::RedisError::from(e))),
            other => return Err(unexpected(&other)),
        };
        let text = |i: usize| match items.get(i) {
            Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        };
        let Some(found) = text(0) else {
            return Err(unexpected(&items));
        };
        Ok(match found.as_str() {
            tag::OK => match text(1) {
                Some(id) => WriteReply::Appended(id),
                None => WriteReply::Done,
            },
            tag::STALE => WriteReply::Stale(
                items[1..]
                    .iter()
                    .map(|v| match v {
                        Value::BulkString(b) => Some(b.clone()),
                        _ => None,
                    })
                    .collect(),
            ),
            tag::CONFLICT => WriteReply::Conflict {
                field: text(1).unwrap_or_default(),
            },
            tag::EXISTS => WriteReply::Exists,
            tag::UNIQUE => WriteReply::Unique {
                // The script counts ops from 1.
                op: text(1)
                    .and_then(|p| p.parse::<usize>().ok())
                    .unwrap_or(1)
                    .saturating_sub(1),
                owner: text(2).unwrap_or_default(),
            },
            tag::WRONGTYPE => WriteReply::WrongType {
                key: text(1).unwrap_or_else(|| key.to_owned()),
            },
            _ => return Err(unexpected(&items)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LUA: &str = include_str!("../../scripts/write.lua");

    fn args(cmd: &Cmd) -> Vec<Vec<u8>> {
        cmd.args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => b.to_vec(),
                _ => b"<not a plain argument>".to_vec(),
            })
            .collect()
    }

    fn header_of(cmd: &Cmd) -> Vec<u8> {
        // EVALSHA sha numkeys KEYS.. header
        let a = args(cmd);
        let numkeys: usize = std::str::from_utf8(&a[2]).unwrap().parse().unwrap();
        a[3 + numkeys].clone()
    }

    #[test]
    fn a_save_with_a_moving_sorted_entry_encodes_to_the_bytes_lua_unpacks() {
        let guards = ["user_id", "created_at"];
        let values = [Some(b"u1".to_vec()), None];
        let set = [
            ("user_id", Cow::Borrowed(&b"u2"[..])),
            ("created_at", Cow::Borrowed(&b"7"[..])),
        ];
        let del = ["note"];
        let call = WriteCall {
            mode: Some(Mode::Save),
            ttl_ms: 0x0102_0304_0506_0708,
            hash_key: "job:1",
            id: "1",
            guards: &guards,
            guard_values: Some(&values),
            set: &set,
            del: &del,
            ops: vec![IndexOp {
                kind: IndexKind::Sorted { score: "created_at" },
                new: Some("jobs:user:u2".into()),
                old: Some("jobs:user:u1".into()),
                score: "7".into(),
            }],
            ..WriteCall::default()
        };
        let cmd = call.command("sha").unwrap();
        #[rustfmt::skip]
        let golden: &[u8] = &[
            b's',                                   // mode
            1, 2, 3, 4, 5, 6, 7, 8,                 // ttl (u64)
            0, 2, 0, 2, 0, 1, 0, 1,                 // guards, set, del, index ops
            0, 0, 0, 0, 0, 0, 0, 0,                 // conditions, stream pos, entry pairs, extra keys
            b'z', 0, 2, 0, 3,                       // op 1: kind, KEYS[2] new, KEYS[3] old
        ];
        assert_eq!(header_of(&cmd), golden);
        assert_eq!(golden.len(), HEADER_LEN + OP_LEN);
        let expected: Vec<&[u8]> = vec![
            b"EVALSHA",
            b"sha",
            b"3",
            b"job:1",
            b"jobs:user:u2",
            b"jobs:user:u1",
            golden,
            b"1",
            b"user_id",
            b"created_at",
            b"=u1",
            b"-",
            b"user_id",
            b"u2",
            b"created_at",
            b"7",
            b"note",
            b"7",
        ];
        assert_eq!(args(&cmd), expected.iter().map(|a| a.to_vec()).collect::<Vec<_>>());
    }

    #[test]
    fn a_create_with_a_stream_entry_and_a_delete_with_extra_keys_lay_out_their_keys() {
        let entry = [("job_id", "1")];
        let create = WriteCall {
            mode: Some(Mode::Create),
            hash_key: "job:1",
            id: "1",
            ops: vec![IndexOp {
                kind: IndexKind::Unique,
                new: Some("job:slug:a".into()),
                old: None,
                score: String::new(),
            }],
            stream: Some(("jobs:stream", &entry)),
            ..WriteCall::default()
        };
        let cmd = create.command("sha").unwrap();
        #[rustfmt::skip]
        let golden: &[u8] = &[
            b'c', 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 1,
            0, 0, 0, 3, 0, 1, 0, 0,                 // stream at KEYS[3], one pair
            b'u', 0, 2, 0, 0,
        ];
        assert_eq!(header_of(&cmd), golden);
        assert_eq!(
            &args(&cmd)[..6],
            &[
                b"EVALSHA".to_vec(),
                b"sha".to_vec(),
                b"3".to_vec(),
                b"job:1".to_vec(),
                b"job:slug:a".to_vec(),
                b"jobs:stream".to_vec()
            ]
        );

        let extra = ["job:1:output".to_owned()];
        let conditions = [("status", Some(&b"queued"[..])), ("started_at", None)];
        let delete = WriteCall {
            mode: Some(Mode::Delete),
            hash_key: "job:1",
            id: "1",
            conditions: &conditions,
            extra_keys: &extra,
            ..WriteCall::default()
        };
        let a = args(&delete.command("sha").unwrap());
        #[rustfmt::skip]
        let golden: &[u8] = &[
            b'd', 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0,
            0, 2, 0, 0, 0, 0, 0, 1,
        ];
        assert_eq!(a[5], golden);
        let tail: Vec<&[u8]> = vec![b"1", b"status", b"started_at", b"=queued", b"-", b"2"];
        assert_eq!(&a[6..], tail.iter().map(|x| x.to_vec()).collect::<Vec<_>>());
    }

    #[test]
    fn too_many_fields_are_an_error_not_a_truncation() {
        let names: Vec<&'static str> = vec!["f"; 70_000];
        let call = WriteCall {
            mode: Some(Mode::Update),
            hash_key: "k:1",
            id: "1",
            del: &names,
            ..WriteCall::default()
        };
        assert!(matches!(call.command("sha"), Err(Error::Encode { .. })));
    }

    #[test]
    fn write_lua_names_the_same_layout() {
        let line = format!("local HEADER_FORMAT, HEADER_LEN = '{HEADER_FORMAT}', {HEADER_LEN}");
        assert!(LUA.contains(&line), "write.lua must declare `{line}`");
        let line = format!("local OP_FORMAT, OP_LEN = '{OP_FORMAT}', {OP_LEN}");
        assert!(LUA.contains(&line), "write.lua must declare `{line}`");
        for mode in [
            Mode::Create,
            Mode::Save,
            Mode::Update,
            Mode::Delete,
            Mode::Expire,
            Mode::Refresh,
        ] {
            let byte = char::from(mode.byte());
            assert!(LUA.contains(&format!("'{byte}'")), "write.lua must handle mode {byte}");
        }
        for kind in [IndexKind::Sorted { score: "" }, IndexKind::Set, IndexKind::Unique] {
            let byte = char::from(kind_byte(kind));
            assert!(
                LUA.contains(&format!("== '{byte}'")),
                "write.lua must handle index kind {byte}"
            );
        }
        for t in tag::ALL {
            assert!(LUA.contains(&format!("'{t}'")), "write.lua must answer with tag {t}");
        }
        // struct.unpack counts bytes from 1: op i (from 1) starts after the header and i-1 ops.
        assert!(LUA.contains("HEADER_LEN + OP_LEN * (i - 1) + 1"));
        assert_eq!(FIRST_INDEX_KEY, 2);
    }

    #[test]
    fn replies_decode_to_their_variants() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        assert_eq!(WriteReply::parse("k", Value::Int(1)).unwrap(), WriteReply::Done);
        assert_eq!(WriteReply::parse("k", Value::Int(0)).unwrap(), WriteReply::Missing);
        assert_eq!(
            WriteReply::parse("k", Value::Array(vec![bulk(tag::OK), bulk("1-0")])).unwrap(),
            WriteReply::Appended("1-0".into())
        );
        assert_eq!(
            WriteReply::parse("k", Value::Array(vec![bulk(tag::STALE), bulk("a"), Value::Nil])).unwrap(),
            WriteReply::Stale(vec![Some(b"a".to_vec()), None])
        );
        assert_eq!(
            WriteReply::parse("k", Value::Array(vec![bulk(tag::UNIQUE), bulk("2"), bulk("u9")])).unwrap(),
            WriteReply::Unique {
                op: 1,
                owner: "u9".into()
            }
        );
        assert!(matches!(
            WriteReply::parse("k", Value::Array(vec![bulk("nonsense")])),
            Err(Error::UnexpectedReply { .. })
        ));
        assert!(matches!(
            WriteReply::parse("k", Value::Int(7)),
            Err(Error::UnexpectedReply { .. })
        ));
    }
}
