//! Codec only, no server: repobox's generated encode/decode against the
//! hand-written `Vec<(&str, String)>` / `HashMap` conversion.

mod common;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use repobox_orm::{FieldWriter, RawHash, RedisEntity};

use common::*;

fn encode_reply<E: RedisEntity>(e: &E) -> redis::Value {
    let mut w = FieldWriter::default();
    e.write_fields(&mut w).unwrap();
    redis::Value::Array(
        w.set_fields()
            .iter()
            .flat_map(|(k, v)| {
                [
                    redis::Value::BulkString(k.as_bytes().to_vec()),
                    redis::Value::BulkString(v.to_vec()),
                ]
            })
            .collect(),
    )
}

fn codec(c: &mut Criterion) {
    let mut job = job(7, "user-1");
    job.started_at = Some(1_700_000_001_000);
    job.exit_code = Some(0);
    let user = user(1);
    let job_reply = encode_reply(&job);
    let user_reply = encode_reply(&user);
    assert_eq!(hand_decode_job(&job_reply).as_ref(), Some(&job));

    let mut g = c.benchmark_group("codec");
    g.bench_function("job/encode+decode/repobox", |b| {
        b.iter(|| {
            let mut w = FieldWriter::with_capacity(12);
            black_box(&job).write_fields(&mut w).unwrap();
            black_box(&w);
            let hash = RawHash::from_reply("job:7", black_box(&job_reply)).unwrap();
            black_box(repobox_models::Job::read_fields("job:7", &hash).unwrap())
        })
    });
    g.bench_function("job/encode+decode/hand", |b| {
        b.iter(|| {
            black_box(hand_encode_job(black_box(&job)));
            black_box(hand_decode_job(black_box(&job_reply)).unwrap())
        })
    });
    g.bench_function("user/encode+decode/repobox", |b| {
        b.iter(|| {
            let mut w = FieldWriter::with_capacity(6);
            black_box(&user).write_fields(&mut w).unwrap();
            black_box(&w);
            let hash = RawHash::from_reply("user:1", black_box(&user_reply)).unwrap();
            black_box(repobox_models::User::read_fields("user:1", &hash).unwrap())
        })
    });
    g.bench_function("user/encode+decode/hand", |b| {
        b.iter(|| {
            black_box(hand_encode_user(black_box(&user)));
            black_box(hand_decode_user(black_box(&user_reply)).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
