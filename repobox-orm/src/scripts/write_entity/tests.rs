//! Golden bytes: each mode encodes to exactly what the write script's
//! (`write_entity.lua`) `struct.unpack` formats read, and the script names
//! the same layout.

use std::borrow::Cow;

use redis::{Cmd, Value};

use super::*;
use crate::error::Error;
use crate::meta::IndexKind;

const LUA: &str = include_str!("../write_entity.lua");

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
        0, 0, 0, 0, 0, 0,                       // conditions, stream pos, entry pairs
        0, 0, 0, 0,                             // acknowledged stream pos, extra keys
        0, 0,                                   // unique takeovers
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
    let takeovers = [Takeover {
        op: 0,
        owner: "9".into(),
        owner_key: Some("job:9".into()),
        seen: Some(vec![("slug", Some(b"b".to_vec())), ("note", None)]),
    }];
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
        takeovers: &takeovers,
        ..WriteCall::default()
    };
    let cmd = create.command("sha").unwrap();
    #[rustfmt::skip]
    let golden: &[u8] = &[
        b'c', 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 1,
        0, 0, 0, 3, 0, 1,                       // stream at KEYS[3], one pair
        0, 0, 0, 0,                             // no acknowledgement, no extra keys
        0, 1,                                   // one unique takeover
        b'u', 0, 2, 0, 0,
    ];
    assert_eq!(header_of(&cmd), golden);
    let a = args(&cmd);
    let keys: Vec<&[u8]> = vec![
        b"EVALSHA",
        b"sha",
        b"4",
        b"job:1",
        b"job:slug:a",
        b"jobs:stream",
        b"job:9",
    ];
    assert_eq!(&a[..7], keys.iter().map(|k| k.to_vec()).collect::<Vec<_>>());
    // After the stream entry: op 1, the owner at KEYS[4], its id, present, two fields.
    let tail: Vec<&[u8]> = vec![
        b"job_id", b"1", b"1", b"4", b"9", b"p", b"2", b"slug", b"note", b"=b", b"-",
    ];
    assert_eq!(
        &a[a.len() - tail.len()..],
        tail.iter().map(|x| x.to_vec()).collect::<Vec<_>>()
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
        0, 2, 0, 0, 0, 0, 0, 0, 0, 1,
        0, 0,
    ];
    assert_eq!(a[5], golden);
    let tail: Vec<&[u8]> = vec![b"1", b"status", b"started_at", b"=queued", b"-", b"2"];
    assert_eq!(&a[6..], tail.iter().map(|x| x.to_vec()).collect::<Vec<_>>());
}

#[test]
fn an_update_that_appends_and_acknowledges_lays_out_both_streams() {
    let set = [("status", Cow::Borrowed(&b"succeeded"[..]))];
    let conditions = [("status", Some(&b"running"[..]))];
    let entry = [("job_id", "1"), ("kind", "status")];
    let call = WriteCall {
        mode: Some(Mode::Update),
        hash_key: "job:1",
        id: "1",
        set: &set,
        conditions: &conditions,
        stream: Some(("jobs:events", &entry)),
        ack: Some(Ack {
            stream: "jobs:stream",
            group: "runners",
            id: "1-0",
        }),
        ..WriteCall::default()
    };
    let cmd = call.command("sha").unwrap();
    #[rustfmt::skip]
    let golden: &[u8] = &[
        b'u', 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 1, 0, 0, 0, 0,                 // guards, one field set, del, index ops
        0, 1, 0, 2, 0, 2,                       // one condition, stream at KEYS[2], two pairs
        0, 3, 0, 0,                             // the acknowledged stream at KEYS[3], no extra keys
        0, 0,                                   // no takeover
    ];
    assert_eq!(header_of(&cmd), golden);
    let a = args(&cmd);
    let expected: Vec<&[u8]> = vec![
        b"EVALSHA",
        b"sha",
        b"3",
        b"job:1",
        b"jobs:events",
        b"jobs:stream",
        golden,
        b"1",
        b"status",
        b"succeeded",
        b"status",
        b"=running",
        b"job_id",
        b"1",
        b"kind",
        b"status",
        b"runners",
        b"1-0",
    ];
    assert_eq!(a, expected.iter().map(|x| x.to_vec()).collect::<Vec<_>>());
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
    assert!(LUA.contains(&line), "write_entity.lua must declare `{line}`");
    let line = format!("local OP_FORMAT, OP_LEN = '{OP_FORMAT}', {OP_LEN}");
    assert!(LUA.contains(&line), "write_entity.lua must declare `{line}`");
    for mode in [
        Mode::Create,
        Mode::Save,
        Mode::Update,
        Mode::Delete,
        Mode::SetTtl,
        Mode::UpdateSettingTtl,
    ] {
        let byte = char::from(mode.byte());
        assert!(
            LUA.contains(&format!("'{byte}'")),
            "write_entity.lua must handle mode {byte}"
        );
    }
    for kind in [IndexKind::Sorted { score: "" }, IndexKind::Set, IndexKind::Unique] {
        let byte = char::from(kind_letter(kind));
        assert!(
            LUA.contains(&format!("== '{byte}'")),
            "write_entity.lua must handle index kind {byte}"
        );
    }
    for t in [
        tag::OK,
        tag::STALE,
        tag::CONFLICT,
        tag::EXISTS,
        tag::UNIQUE,
        tag::WRONGTYPE,
    ] {
        assert!(
            LUA.contains(&format!("'{t}'")),
            "write_entity.lua must answer with tag {t}"
        );
    }
    // struct.unpack counts bytes from 1: op i (from 1) starts after the header and i-1 ops.
    assert!(LUA.contains("HEADER_LEN + OP_LEN * (i - 1) + 1"));
    assert_eq!(FIRST_INDEX_KEY, 2);
}

#[test]
fn replies_decode_to_their_variants() {
    let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
    assert_eq!(
        WriteReply::parse("k", "k", "write_entity.lua", Value::Int(1)).unwrap(),
        WriteReply::Done
    );
    assert_eq!(
        WriteReply::parse("k", "k", "write_entity.lua", Value::Int(0)).unwrap(),
        WriteReply::Missing
    );
    assert_eq!(
        WriteReply::parse(
            "k",
            "k",
            "write_entity.lua",
            Value::Array(vec![bulk(tag::OK), bulk("1-0")])
        )
        .unwrap(),
        WriteReply::Appended("1-0".into())
    );
    assert_eq!(
        WriteReply::parse(
            "k",
            "k",
            "write_entity.lua",
            Value::Array(vec![bulk(tag::STALE), bulk("a"), Value::Nil])
        )
        .unwrap(),
        WriteReply::Stale(vec![Some(b"a".to_vec()), None])
    );
    assert_eq!(
        WriteReply::parse(
            "k",
            "k",
            "write_entity.lua",
            Value::Array(vec![bulk(tag::UNIQUE), bulk("2"), bulk("u9")])
        )
        .unwrap(),
        WriteReply::Unique {
            op: 1,
            owner: "u9".into()
        }
    );
    assert!(matches!(
        WriteReply::parse("k", "k", "write_entity.lua", Value::Array(vec![bulk("nonsense")])),
        Err(Error::UnexpectedReply { .. })
    ));
    assert!(matches!(
        WriteReply::parse("k", "k", "write_entity.lua", Value::Int(7)),
        Err(Error::UnexpectedReply { .. })
    ));
}
