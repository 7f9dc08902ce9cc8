//! The hash codec: every supported type round-trips, edge values included,
//! and no hash, however corrupt, makes decoding panic.

use std::collections::HashMap;

use proptest::prelude::*;
use repobox_orm::prelude::*;
use repobox_orm::{FieldWriter, RawHash};

#[path = "codec/compat.rs"]
mod compat;

#[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Queued,
    InProgress,
    #[redis(rename = "done")]
    Succeeded,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct Meta {
    tags: Vec<String>,
    weight: Option<u8>,
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("all:<id>")]
struct Everything {
    id: String,
    text: String,
    i8_: i8,
    i16_: i16,
    i32_: i32,
    i64_: i64,
    i128_: i128,
    isize_: isize,
    u8_: u8,
    u16_: u16,
    u32_: u32,
    u64_: u64,
    u128_: u128,
    usize_: usize,
    f32_: f32,
    f64_: f64,
    flag: bool,
    bytes: Vec<u8>,
    status: Status,
    maybe_text: Option<String>,
    maybe_num: Option<i64>,
    maybe_status: Option<Status>,
    #[redis(rename = "when")]
    at: chrono::DateTime<chrono::Utc>,
    #[redis(json)]
    meta: Meta,
    #[redis(json)]
    maybe_meta: Option<Meta>,
    #[redis(default)]
    defaulted: u32,
    #[redis(skip)]
    scratch: Vec<String>,
}

fn encode(e: &Everything) -> Vec<(String, Vec<u8>)> {
    let mut w = FieldWriter::default();
    e.write_fields(&mut w).unwrap();
    w.set_fields()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_vec()))
        .collect()
}

fn decode(pairs: &[(String, Vec<u8>)]) -> Result<Everything> {
    let hash = RawHash::from_pairs(pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_slice())).collect());
    Everything::read_fields("all:x", &hash)
}

fn sample() -> Everything {
    Everything {
        id: "x".into(),
        text: String::new(),
        i8_: i8::MIN,
        i16_: i16::MIN,
        i32_: i32::MIN,
        i64_: i64::MIN,
        i128_: i128::MIN,
        isize_: isize::MAX,
        u8_: u8::MAX,
        u16_: u16::MAX,
        u32_: u32::MAX,
        u64_: u64::MAX,
        u128_: u128::MAX,
        usize_: usize::MAX,
        f32_: f32::MIN_POSITIVE / 2.0,
        f64_: -0.0,
        flag: true,
        bytes: vec![0, 159, 255, b'\n'],
        status: Status::InProgress,
        maybe_text: Some("ünïcødé 🚀 \u{0} line\nbreak".into()),
        maybe_num: None,
        maybe_status: Some(Status::Succeeded),
        at: chrono::DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
        meta: Meta {
            tags: vec!["a".into(), "".into()],
            weight: None,
        },
        maybe_meta: None,
        defaulted: 7,
        scratch: Vec::new(),
    }
}

#[test]
fn edge_values_round_trip() {
    let e = sample();
    let back = decode(&encode(&e)).unwrap();
    assert_eq!(back, e);
    assert!(back.f64_.is_sign_negative(), "-0.0 keeps its sign");
    assert_eq!(back.f32_.to_bits(), e.f32_.to_bits(), "subnormal f32 is exact");
}

#[test]
fn wire_strings_are_the_contract() {
    let fields: HashMap<String, Vec<u8>> = encode(&sample()).into_iter().collect();
    let s = |k: &str| String::from_utf8(fields[k].clone()).unwrap();
    assert_eq!(s("i64_"), "-9223372036854775808");
    assert_eq!(s("u64_"), "18446744073709551615");
    assert_eq!(s("f64_"), "-0");
    assert_eq!(s("flag"), "true");
    assert_eq!(s("status"), "in_progress");
    assert_eq!(s("maybe_status"), "done");
    assert_eq!(s("when"), "1700000000123");
    assert_eq!(s("meta"), r#"{"tags":["a",""],"weight":null}"#);
    assert_eq!(s("text"), "");
    // None is an absent field, never "" or "null"; skipped fields are not stored.
    for absent in ["maybe_num", "maybe_meta", "scratch", "at"] {
        assert!(!fields.contains_key(absent), "{absent} must be absent");
    }
}

#[test]
fn floats_round_trip_exactly() {
    for x in [
        f64::MIN_POSITIVE,
        5e-324,
        0.1 + 0.2,
        f64::MAX,
        f64::MIN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e21,
        123_456_789.123_456_79,
    ] {
        let mut e = sample();
        e.f64_ = x;
        assert_eq!(decode(&encode(&e)).unwrap().f64_.to_bits(), x.to_bits(), "{x}");
    }
    let mut e = sample();
    e.f64_ = f64::NAN;
    assert!(decode(&encode(&e)).unwrap().f64_.is_nan());
}

#[test]
fn bool_reads_one_and_zero() {
    let mut pairs = encode(&sample());
    for (raw, want) in [("1", true), ("0", false), ("false", false)] {
        pairs.iter_mut().find(|(n, _)| n == "flag").unwrap().1 = raw.into();
        assert_eq!(decode(&pairs).unwrap().flag, want);
    }
}

#[test]
fn unknown_fields_are_ignored_and_defaults_apply() {
    let mut pairs = encode(&sample());
    pairs.retain(|(n, _)| n != "defaulted");
    pairs.push(("added_by_typescript".into(), b"whatever".to_vec()));
    let e = decode(&pairs).unwrap();
    assert_eq!(e.defaulted, 0);
}

fn decode_error(field: &str, raw: Option<&[u8]>) -> Error {
    let mut pairs = encode(&sample());
    pairs.retain(|(n, _)| n != field);
    if let Some(raw) = raw {
        pairs.push((field.into(), raw.to_vec()));
    }
    decode(&pairs).unwrap_err()
}

#[test]
fn bad_fields_name_key_field_value_and_expectation() {
    let cases: &[(&str, Option<&[u8]>, &str, &str)] = &[
        ("i64_", None, "missing", "an integer (i64)"),
        ("i64_", Some(b"12abc"), "\"12abc\"", "an integer (i64)"),
        ("u8_", Some(b"256"), "\"256\"", "an integer (u8)"),
        ("u32_", Some(b"-1"), "\"-1\"", "an integer (u32)"),
        ("f64_", Some(b"one"), "\"one\"", "a decimal number"),
        ("flag", Some(b"yes"), "\"yes\"", "`true` or `false`"),
        ("text", Some(b"\xff\xfe"), "\"\u{fffd}\u{fffd}\"", "a UTF-8 string"),
        (
            "status",
            Some(b"exploded"),
            "\"exploded\"",
            "one of \"queued\", \"in_progress\", \"done\"",
        ),
        (
            "maybe_status",
            Some(b""),
            "\"\"",
            "one of \"queued\", \"in_progress\", \"done\"",
        ),
        // A JSON field's value is never quoted: it may hold secrets.
        (
            "meta",
            Some(b"{\"password\":\"hunter2\""),
            "a value of 21 bytes (not shown)",
            "JSON of the field's type",
        ),
        ("meta", None, "missing", "JSON of the field's type"),
        ("when", Some(b"yesterday"), "\"yesterday\"", "unix milliseconds"),
    ];
    for &(field, raw, value, expected) in cases {
        match decode_error(field, raw) {
            Error::Decode {
                key,
                field: f,
                value: v,
                expected: e,
            } => {
                assert_eq!((key.as_str(), f), ("all:x", field));
                assert_eq!(v.to_string(), value, "{field}");
                assert_eq!(e, expected, "{field}");
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    let msg = decode_error("u8_", Some(b"256")).to_string();
    assert_eq!(
        msg,
        "cannot decode field `u8_` of `all:x`: \"256\" is not an integer (u8)"
    );
}

#[test]
fn long_bad_values_are_shortened_in_messages() {
    let long = vec![b'z'; 10_000];
    let msg = decode_error("i64_", Some(&long)).to_string();
    assert!(msg.len() < 200, "{msg}");
    assert!(msg.contains('…'));
}

fn arb_status() -> impl Strategy<Value = Status> {
    prop_oneof![Just(Status::Queued), Just(Status::InProgress), Just(Status::Succeeded)]
}

prop_compose! {
    fn arb_everything()(
        id in "[a-z0-9]{1,12}", text in any::<String>(), ints in any::<(i8, i16, i32, i64, i128, isize)>(),
        uints in any::<(u8, u16, u32, u64, u128, usize)>(), f32_ in any::<f32>(), f64_ in any::<f64>(),
        flag in any::<bool>(), bytes in any::<Vec<u8>>(), status in arb_status(),
        maybe_text in any::<Option<String>>(), maybe_num in any::<Option<i64>>(),
        maybe_status in proptest::option::of(arb_status()),
        millis in -8_000_000_000_000_000i64..8_000_000_000_000_000i64,
        tags in any::<Vec<String>>(), weight in any::<Option<u8>>(), has_meta in any::<bool>(),
        defaulted in any::<u32>(),
    ) -> Everything {
        let meta = Meta { tags, weight };
        Everything {
            id, text, i8_: ints.0, i16_: ints.1, i32_: ints.2, i64_: ints.3, i128_: ints.4, isize_: ints.5,
            u8_: uints.0, u16_: uints.1, u32_: uints.2, u64_: uints.3, u128_: uints.4, usize_: uints.5,
            f32_, f64_, flag, bytes, status, maybe_text, maybe_num, maybe_status,
            at: chrono::DateTime::from_timestamp_millis(millis).unwrap(),
            maybe_meta: has_meta.then(|| meta.clone()), meta, defaulted, scratch: Vec::new(),
        }
    }
}

fn same(a: &Everything, b: &Everything) -> bool {
    // NaN != NaN: compare floats by bits, the rest by value.
    let mut a2 = a.clone();
    let mut b2 = b.clone();
    let floats_equal = a.f32_.to_bits() == b.f32_.to_bits() || (a.f32_.is_nan() && b.f32_.is_nan());
    let doubles_equal = a.f64_.to_bits() == b.f64_.to_bits() || (a.f64_.is_nan() && b.f64_.is_nan());
    a2.f32_ = 0.0;
    b2.f32_ = 0.0;
    a2.f64_ = 0.0;
    b2.f64_ = 0.0;
    floats_equal && doubles_equal && a2 == b2
}

proptest! {
    #[test]
    fn any_value_round_trips(e in arb_everything()) {
        let back = decode(&encode(&e)).unwrap();
        prop_assert!(same(&e, &back), "{e:?} != {back:?}");
    }

    #[test]
    fn any_hash_decodes_without_panicking(
        pairs in proptest::collection::vec(
            (prop_oneof![
                Just("id".to_owned()), Just("i64_".to_owned()), Just("u8_".to_owned()), Just("flag".to_owned()),
                Just("status".to_owned()), Just("meta".to_owned()), Just("when".to_owned()), Just("f32_".to_owned()),
                Just("maybe_status".to_owned()), Just("text".to_owned()), any::<String>(),
            ], any::<Vec<u8>>()),
            0..40,
        )
    ) {
        let _ = decode(&pairs);
    }

    #[test]
    fn one_corrupt_field_is_reported_not_panicked(field_pos in 0usize..27, raw in any::<Vec<u8>>()) {
        let mut pairs = encode(&sample());
        let pos = field_pos % pairs.len();
        pairs[pos].1 = raw;
        let _ = decode(&pairs);
    }
}
