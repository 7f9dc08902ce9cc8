//! The protocol of `create_entity.lua`: the create of one entity whose
//! indexes are sorted or set indexes (no unique one), with the checks a
//! create needs and nothing else (no header to decode).
//!
//! `KEYS`: the hash, then one key per index. `ARGV`: the index kinds (one
//! letter per index, [`kind_letter`]), the TTL in ms (0: none), the id, one
//! score per index (empty for a set), then the field/value pairs. The
//! answer is decoded into [`CreateReply`]; nothing is written unless it is
//! [`CreateReply::Created`].

use std::borrow::Cow;

use redis::{Cmd, Value};

use super::kind_letter;
use super::reply::{Answer, tag};
use super::{Args, CREATE, Call, evalsha};
use crate::error::Result;
use crate::meta::IndexKind;

/// The answer status of a create that wrote the entity.
pub(crate) const CREATED: i64 = 1;

/// One call of `create_entity.lua`.
pub(crate) struct CreateCall<'a> {
    pub hash_key: &'a str,
    pub id: &'a str,
    /// The TTL in ms (0: none).
    pub ttl_ms: u64,
    /// Per index: its kind, its key and the entity's score (empty for a set).
    pub entries: &'a [(IndexKind, String, String)],
    pub fields: &'a [(&'static str, Cow<'a, [u8]>)],
}

impl CreateCall<'_> {
    /// This create's `KEYS` and `ARGV`, to be joined with others.
    pub(crate) fn call(&self) -> Call {
        let mut call = Call::default();
        call.key(self.hash_key);
        for (_, key, _) in self.entries {
            call.key(key);
        }
        self.args(&mut call);
        call
    }

    /// The `EVALSHA` of this create sent alone, built in place.
    pub(crate) fn command(&self) -> Cmd {
        let keys = std::iter::once(self.hash_key).chain(self.entries.iter().map(|(_, key, _)| key.as_str()));
        let mut cmd = evalsha(&CREATE, &keys.collect::<Vec<_>>());
        self.args(&mut cmd);
        cmd
    }

    fn args(&self, out: &mut impl Args) {
        let kinds: Vec<u8> = self.entries.iter().map(|(kind, _, _)| kind_letter(*kind)).collect();
        out.push(kinds).push(self.ttl_ms).push(self.id);
        for (_, _, score) in self.entries {
            out.push(score);
        }
        for (name, value) in self.fields {
            out.push(*name).push(value.as_ref());
        }
    }
}

/// What the create script answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CreateReply {
    /// Written, with its index entries and TTL.
    Created,
    /// The hash exists (a create earlier in the same call included).
    Exists,
}

impl CreateReply {
    /// Reads the answer for the create of `key` (as messages show it; `raw`
    /// is the key itself).
    pub(crate) fn parse(key: &str, raw: &str, reply: Value) -> Result<CreateReply> {
        match Answer::parse(key, "create_entity.lua", reply)? {
            Answer::Status(CREATED) => Ok(CreateReply::Created),
            Answer::Tagged(t, _) if t == tag::EXISTS => Ok(CreateReply::Exists),
            other => Err(other.unexpected(key, raw, "create_entity.lua")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn the_script_declares_the_same_answers() {
        let lua = include_str!("create_entity.lua");
        assert!(lua.contains(&format!("local CREATED = {CREATED}")));
        assert!(lua.contains(&format!("'{}'", tag::EXISTS)));
        assert!(lua.contains("refused_as_other_type"));
    }

    #[test]
    fn a_create_is_encoded_byte_for_byte() {
        let entries = [
            (IndexKind::Sorted { score: "at" }, "runs:ann".to_owned(), "7".to_owned()),
            (IndexKind::Set, "tags:x".to_owned(), String::new()),
        ];
        let fields = [("id", Cow::Borrowed(&b"1"[..])), ("at", Cow::Borrowed(&b"7"[..]))];
        let call = CreateCall {
            hash_key: "run:1",
            id: "1",
            ttl_ms: 1000,
            entries: &entries,
            fields: &fields,
        };
        let packed = String::from_utf8(call.call().command_of("sha").get_packed_command()).unwrap();
        let alone = String::from_utf8(call.command().get_packed_command()).unwrap();
        assert_eq!(
            alone,
            packed.replace("$3\r\nsha\r\n", &format!("$40\r\n{}\r\n", CREATE.get_hash()))
        );
        let want = "*15\r\n$7\r\nEVALSHA\r\n$3\r\nsha\r\n$1\r\n3\r\n$5\r\nrun:1\r\n$8\r\nruns:ann\r\n$6\r\ntags:x\r\n\
                    $2\r\nzs\r\n$4\r\n1000\r\n$1\r\n1\r\n$1\r\n7\r\n$0\r\n\r\n$2\r\nid\r\n$1\r\n1\r\n$2\r\nat\r\n$1\r\n7\r\n";
        assert_eq!(packed, want);
        // Two creates in one call of the script of many.
        let mut calls = [call.call(), call.call()];
        let joined = Call::joined(&mut calls, &super::super::CREATE_MANY);
        let args: Vec<Vec<u8>> = joined
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => b.to_vec(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(args[2], b"6");
        assert_eq!(&args[9..12], &[b"2".to_vec(), b"3".to_vec(), b"9".to_vec()]);
    }

    #[test]
    fn answers_are_decoded() {
        let parse = |resp: &[u8]| CreateReply::parse("run:1", "run:1", redis::parse_redis_value(resp).unwrap());
        assert_eq!(parse(b":1\r\n").unwrap(), CreateReply::Created);
        assert_eq!(parse(b"*1\r\n$6\r\nexists\r\n").unwrap(), CreateReply::Exists);
        let wrong = parse(b"*2\r\n$9\r\nwrongtype\r\n$8\r\nruns:ann\r\n").unwrap_err();
        assert!(
            matches!(wrong, Error::WrongType { ref key } if key == "runs:ann"),
            "{wrong:?}"
        );
        assert!(matches!(parse(b":0\r\n"), Err(Error::UnexpectedReply { .. })));
    }
}
