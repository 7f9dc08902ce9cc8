//! Bulk writes: `create_many` of 100,000 jobs (pipelined in chunks, every job
//! atomic with its index entry) against the server's own ceiling,
//! `redis-benchmark -P 16 -t hset`, run in the same session on the same server.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use repobox_models::Job;
use repobox_orm::testing::RedisServer;

use common::*;

const JOBS: u64 = 100_000;

/// Requests per second of `redis-benchmark -P 16 -n 100000 <args>`.
fn redis_benchmark(server: &RedisServer, args: &[&str]) -> Option<f64> {
    let port = server.port().to_string();
    let mut all = vec!["-p", &port, "-P", "16", "-n", "100000", "-r", "100000", "-q"];
    all.extend_from_slice(args);
    let out = Command::new("redis-benchmark").args(&all).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "HSET: 1234567.00 requests per second, p50=..." (progress lines end in \r).
    text.rsplit(['\r', '\n'])
        .filter(|l| l.contains("requests per second"))
        .find_map(|l| l.rsplit_once(": ")?.1.split_whitespace().next()?.parse().ok())
}

fn bulk(c: &mut Criterion) {
    let rt = runtime();
    let server = RedisServer::start();
    let conn = rt.block_on(server.connection());
    let mut g = c.benchmark_group("bulk");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(1));
    let mut run = 0u64;
    g.bench_function("create_many_100k/repobox", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                let jobs: Vec<Job> = (0..JOBS)
                    .map(|i| job(run * 10_000_000 + i, &format!("bulk-{}", i % 1000)))
                    .collect();
                let mut c = conn.clone();
                total += rt.block_on(async {
                    let start = Instant::now();
                    let results = Job::create_many(&mut c, &jobs).await.unwrap();
                    let took = start.elapsed();
                    assert!(results.iter().all(Result::is_ok));
                    took
                });
                let _: () = rt
                    .block_on(redis::cmd("FLUSHALL").query_async(&mut conn.clone()))
                    .unwrap();
            }
            total
        })
    });
    g.finish();
    // One run of a variant on fresh ids from `base`, then FLUSHALL: its wall
    // time and the server's CPU (INFO cpu) meanwhile.
    let run_one = |which: u64, base: u64| -> (Duration, f64) {
        let cpu = |conn: &mut redis::aio::MultiplexedConnection| {
            let info: String = rt.block_on(redis::cmd("INFO").arg("cpu").query_async(conn)).unwrap();
            info.lines()
                .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
                .filter_map(|l| l.split_once(':')?.1.trim().parse::<f64>().ok())
                .sum::<f64>()
        };
        let jobs: Vec<Job> = (0..JOBS)
            .map(|i| job(base + i, &format!("bulk-{}", i % 1000)))
            .collect();
        let mut c = conn.clone();
        let before = cpu(&mut c);
        let start = Instant::now();
        rt.block_on(async {
            match which {
                0 => assert!(Job::create_many(&mut c, &jobs).await.unwrap().iter().all(Result::is_ok)),
                // The floor of any bulk create with an index entry:
                // pipelined HSET + ZADD in chunks of 500, checking nothing
                // (no existence, no types, no per-job answer).
                1 => hand_bulk_create(&mut c, &jobs).await,
                // What Lua itself costs: the same two commands per job run by
                // a script, 100 jobs per call, 5 calls per round trip.
                2 => hand_lua_bulk_create(&mut c, &jobs).await,
                _ => {
                    let check = "if redis.call('EXISTS', hkey) == 1 then return 1 end";
                    hand_lua_bulk_create_with(&mut c, &jobs, check).await
                }
            }
        });
        let wall = start.elapsed();
        let server = cpu(&mut c) - before;
        let _: () = rt.block_on(redis::cmd("FLUSHALL").query_async(&mut c)).unwrap();
        (wall, server)
    };
    let variants = [
        ("repobox create_many", 0),
        ("hand-written pipelined HSET + ZADD (no checks)", 1),
        ("hand-written Lua HSET + ZADD, 100 per call (no checks)", 2),
        ("hand-written Lua with one EXISTS per job", 3),
    ];
    for (name, which) in variants {
        let (wall, server) = run_one(which, 500_000_000 + which * 10_000_000);
        println!(
            "{name}: {:.0} ms, the server's CPU {:.0} ms",
            wall.as_secs_f64() * 1000.0,
            server * 1000.0
        );
    }
    // The floors, best of 3.
    for (name, which) in &variants[1..3] {
        let best = (0..3u64)
            .map(|round| run_one(*which, 700_000_000 + which * 30_000_000 + round * 10_000_000).0)
            .min()
            .unwrap_or_default();
        println!("{name} of 100k jobs, best of 3: {:.1} ms", best.as_secs_f64() * 1000.0);
    }
    // The ceiling the target names, and a like-for-like one: one HSET of a
    // job's fields (same names and sizes) per request.
    let sample = job(1, "bulk-1");
    let fields: Vec<(&str, String)> = hand_encode_job(&sample);
    let mut like = vec!["HSET", "job:__rand_int__"];
    for (k, v) in &fields {
        like.push(k);
        like.push(v);
    }
    for (name, args) in [("-t hset", vec!["-t", "hset"]), ("HSET of a job's fields", like)] {
        match redis_benchmark(&server, &args) {
            Some(rps) => println!(
                "ceiling ({name}): {rps:.0} requests/s ({:.1} ms per 100k)",
                100_000.0 / rps * 1000.0
            ),
            None => println!("ceiling: redis-benchmark is not installed (Debian: redis-tools)"),
        }
    }
}

criterion_group!(benches, bulk);
criterion_main!(benches);
