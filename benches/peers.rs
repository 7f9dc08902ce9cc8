//! repobox next to its Rust peer, the `redis-om` crate (0.1, `HashModel`),
//! and hand-written redis-rs, on the same job shape: bare save (a hash with
//! no index and no TTL) and get by id, at concurrency 1 and 32 (tasks over one
//! multiplexed connection per side), interleaved rounds that each start with
//! another side, best of each; the server's main-thread CPU µs per operation
//! (`INFO cpu`, as in `server_cost`); and `MEMORY USAGE` of
//! one stored job.
//!
//! redis-om stores what it is given with one `HSET` and never removes a
//! field: re-saving a job whose `error` became `None` leaves the old error in
//! the hash. repobox and the hand-written save also `HDEL` the absent
//! optional fields (in `MULTI`/`EXEC`), so that a re-save is exact.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis_om::HashModel;
use repobox_models::JobStatus;
use repobox_orm::testing::RedisServer;

use common::*;

/// The same shape for redis-om.
#[derive(redis_om::HashModel, Debug, Clone, PartialEq)]
struct RomJob {
    id: String,
    user_id: String,
    repo_url: String,
    status: String,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    exit_code: Option<i32>,
    error: Option<String>,
    retries: u32,
    env: String,
}

fn rom_of(b: BareJob) -> RomJob {
    RomJob {
        id: b.id,
        user_id: b.user_id,
        repo_url: b.repo_url,
        status: b.status.to_string(),
        created_at: b.created_at,
        started_at: b.started_at,
        finished_at: b.finished_at,
        exit_code: b.exit_code,
        error: b.error,
        retries: b.retries,
        env: b.env,
    }
}

async fn hand_get(conn: &mut MultiplexedConnection, id: &str) -> BareJob {
    let reply: redis::Value = redis::cmd("HGETALL")
        .arg(format!("hand_job:{id}"))
        .query_async(conn)
        .await
        .unwrap();
    let map: std::collections::HashMap<String, String> = redis::from_redis_value(reply).unwrap();
    BareJob {
        id: map["id"].clone(),
        user_id: map["user_id"].clone(),
        repo_url: map["repo_url"].clone(),
        status: match map["status"].as_str() {
            "queued" => JobStatus::Queued,
            _ => JobStatus::Running,
        },
        created_at: map["created_at"].parse().unwrap(),
        started_at: map.get("started_at").map(|v| v.parse().unwrap()),
        finished_at: map.get("finished_at").map(|v| v.parse().unwrap()),
        exit_code: map.get("exit_code").map(|v| v.parse().unwrap()),
        error: map.get("error").cloned(),
        retries: map["retries"].parse().unwrap(),
        env: map["env"].clone(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Repobox,
    Hand,
    RedisOm,
}

#[derive(Clone)]
struct Conns {
    rs: MultiplexedConnection,
    om: redis_om::redis::aio::MultiplexedConnection,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Work {
    /// Save a queued job: four optional fields absent.
    Save,
    /// Save a finished job: every field present.
    SaveFull,
    Get,
}

async fn one(side: Side, work: Work, mut c: Conns, i: u64) {
    let job = match work {
        Work::SaveFull => finished(i),
        _ => bare(i),
    };
    match (side, work) {
        (Side::Repobox, Work::Save | Work::SaveFull) => BareJob::save(&mut c.rs, &job).await.unwrap(),
        (Side::Hand, Work::Save | Work::SaveFull) => hand_bare_save(&mut c.rs, "hand_job", &job).await,
        (Side::RedisOm, Work::Save | Work::SaveFull) => rom_of(job).save(&mut c.om).await.unwrap(),
        (Side::Repobox, Work::Get) => drop(
            BareJob::get(&mut c.rs, format!("job-{}", i % 1000))
                .await
                .unwrap()
                .unwrap(),
        ),
        (Side::Hand, Work::Get) => drop(hand_get(&mut c.rs, &format!("job-{}", i % 1000)).await),
        (Side::RedisOm, Work::Get) => drop(RomJob::get(format!("job-{}", i % 1000), &mut c.om).await.unwrap()),
    }
}

async fn spread(conns: &Conns, side: Side, work: Work, tasks: u64, n: u64) -> Duration {
    let base = SEQ.fetch_add(n, Ordering::Relaxed);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (next, conns) = (next.clone(), conns.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let i = if work == Work::Get { i } else { base + i };
                one(side, work, conns.clone(), i).await;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed()
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let rt = runtime();
    let server = RedisServer::start();
    rt.block_on(async {
        // redis-om's redis 0.22 arms no timer per request; redis 1.x does by
        // default (500 ms). Without it, the three transports do the same work.
        let rs = server
            .client()
            .get_multiplexed_async_connection_with_config(
                &redis::AsyncConnectionConfig::new().set_response_timeout(None),
            )
            .await
            .unwrap();
        let om = redis_om::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let conns = Conns { rs, om };
        // 1,000 jobs of each side to read.
        for i in 0..1000 {
            one(Side::Repobox, Work::Save, conns.clone(), i).await;
            one(Side::Hand, Work::Save, conns.clone(), i).await;
            one(Side::RedisOm, Work::Save, conns.clone(), i).await;
        }
        SEQ.store(1_000_000, Ordering::Relaxed);
        const ROUNDS: usize = 11;
        println!(
            "| workload | tasks | repobox op/s | hand op/s | redis-om op/s | repobox / redis-om | repobox / hand |"
        );
        println!("|---|---|---|---|---|---|---|");
        let mut cost = Vec::new();
        for work in [Work::Save, Work::SaveFull, Work::Get] {
            for tasks in [1u64, 32] {
                let n = if tasks == 1 { 5_000 } else { 20_000 };
                let mut best = [Duration::MAX; 3];
                let mut usec = [f64::MAX; 3];
                for round in 0..ROUNDS {
                    // Each round starts with another side, so that no side
                    // always runs first (or after the same neighbour).
                    for step in 0..3 {
                        let k = (round + step) % 3;
                        let side = [Side::Repobox, Side::Hand, Side::RedisOm][k];
                        let before = server_cpu_usec(&mut conns.rs.clone()).await;
                        best[k] = best[k].min(spread(&conns, side, work, tasks, n).await);
                        let spent = server_cpu_usec(&mut conns.rs.clone()).await - before;
                        usec[k] = usec[k].min(spent / n as f64);
                    }
                }
                let ops = best.map(|d| n as f64 / d.as_secs_f64());
                let name = match work {
                    Work::Save => "bare save, 4 optional fields absent",
                    Work::SaveFull => "bare save, every field present",
                    Work::Get => "get",
                };
                println!(
                    "| {name} | {tasks} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} |",
                    ops[0],
                    ops[1],
                    ops[2],
                    ops[0] / ops[2],
                    ops[0] / ops[1]
                );
                if tasks == 32 {
                    cost.push((name, usec));
                }
            }
        }
        println!("\n| workload | server µs/op repobox | hand | redis-om |");
        println!("|---|---|---|---|");
        for (name, u) in cost {
            println!("| {name} | {:.2} | {:.2} | {:.2} |", u[0], u[1], u[2]);
        }
        let mut c = conns.rs.clone();
        let mut usage = Vec::new();
        for key in ["bare_job:job-5", "hand_job:job-5"] {
            let bytes: i64 = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .query_async(&mut c)
                .await
                .unwrap();
            usage.push(format!("{key}: {bytes} B"));
        }
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*RomJob*job-5")
            .query_async(&mut c)
            .await
            .unwrap_or_default();
        for key in keys {
            let bytes: i64 = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            usage.push(format!("{key}: {bytes} B"));
        }
        println!("\nMEMORY USAGE of one job: {}", usage.join(", "));
    });
}
