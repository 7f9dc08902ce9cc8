//! Per-operation cost on a Redis Cluster next to a single server, through
//! the same `Store` API: a `Job` (its hash, `jobs:user:<user_id>` and the
//! stream are in different slots, so its writes are ordered steps on the
//! cluster) and `TaggedJob`, the same fields with every key in the user's
//! slot (`#[cluster(co_located)]`: one script per write everywhere).
//!
//! `cargo bench --bench cluster` prints, per backend and operation, the mean
//! latency at concurrency 1 and the throughput at concurrency 32 (tasks over
//! one store). The single server and the 3-primary cluster run on the same
//! machine, so the cluster's figures include two more server processes
//! sharing its two cores; `REPOBOX_BENCH_REPLICAS=1` gives each primary a
//! replica (three more).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use repobox_models::{Job, JobPatch, JobStatus};
use repobox_orm::prelude::*;
use repobox_orm::testing::{RedisCluster, RedisServer};

use common::*;

/// A Job whose keys all carry the user's hash tag.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("tjob:{<user_id>}:<id>")]
#[index(sorted = "tjobs:{<user_id>}", score = created_at)]
#[cluster(co_located)]
struct TaggedJob {
    id: String,
    user_id: String,
    repo_url: String,
    status: JobStatus,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    exit_code: Option<i32>,
    error: Option<String>,
    #[redis(default)]
    retries: u32,
    #[redis(json, default)]
    env: Vec<(String, String)>,
}

fn tagged(i: u64, user: &str) -> TaggedJob {
    let j = job(i, user);
    TaggedJob {
        id: j.id,
        user_id: j.user_id,
        repo_url: j.repo_url,
        status: j.status,
        created_at: j.created_at,
        started_at: None,
        finished_at: None,
        exit_code: None,
        error: None,
        retries: 0,
        env: j.env,
    }
}

/// Ids of the jobs the operations make, above the seeded `job-0` .. `job-999`.
static SEQ: AtomicU64 = AtomicU64::new(1_000_000);

/// Runs `n` operations over `tasks` tasks; returns the wall time.
async fn spread<F, Fut>(store: &Store, tasks: u64, n: u64, op: F) -> Duration
where
    F: Fn(Store, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let base = SEQ.fetch_add(n, Ordering::Relaxed);
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (op, next, store) = (op.clone(), next.clone(), store.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                op(store.clone(), base + i).await;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed()
}

type Op = fn(Store, u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

fn ops() -> Vec<(&'static str, Op)> {
    vec![
        ("Job create (index entry)", |mut s, i| {
            Box::pin(async move { Job::create(&mut s, &job(i, "bench")).await.unwrap() })
        }),
        ("TaggedJob create (co-located)", |mut s, i| {
            Box::pin(async move { TaggedJob::create(&mut s, &tagged(i, "bench")).await.unwrap() })
        }),
        ("Job create_and_enqueue", |mut s, i| {
            Box::pin(async move {
                Job::create_and_enqueue(&mut s, &job(i, "bench"), 1).await.unwrap();
            })
        }),
        ("Job get", |mut s, i| {
            Box::pin(async move {
                Job::get(&mut s, format!("job-{}", i % 1000)).await.unwrap().unwrap();
            })
        }),
        ("Job update (unindexed field)", |mut s, i| {
            Box::pin(async move {
                let patch = JobPatch {
                    retries: Some(u32::try_from(i % 100).unwrap()),
                    ..Default::default()
                };
                Job::update(&mut s, format!("job-{}", i % 1000), &patch).await.unwrap();
            })
        }),
        ("Job page of 50", |mut s, _| {
            Box::pin(async move {
                let page = Job::by_user_id(&mut s, "seed", Page::newest(50)).await.unwrap();
                assert_eq!(page.items.len(), 50);
            })
        }),
        ("TaggedJob page of 50", |mut s, _| {
            Box::pin(async move {
                let page = TaggedJob::by_user_id(&mut s, "seed", Page::newest(50)).await.unwrap();
                assert_eq!(page.items.len(), 50);
            })
        }),
        ("Job get_many of 100", |mut s, i| {
            Box::pin(async move {
                let ids: Vec<String> = (0..100).map(|k| format!("job-{}", (i + k) % 1000)).collect();
                let got = Job::get_many(&mut s, &ids).await.unwrap();
                assert_eq!(got.items.len(), 100);
            })
        }),
        ("Job delete", |mut s, i| {
            Box::pin(async move {
                Job::delete(&mut s, format!("job-{i}")).await.unwrap();
            })
        }),
        ("TaggedJob delete", |mut s, i| {
            Box::pin(async move {
                TaggedJob::delete(&mut s, "bench", format!("job-{i}")).await.unwrap();
            })
        }),
    ]
}

async fn seed(store: &Store) {
    let mut s = store.clone();
    let jobs: Vec<Job> = (0..1000).map(|i| job(i, "seed")).collect();
    Job::create_many(&mut s, &jobs).await.unwrap();
    let tagged_jobs: Vec<TaggedJob> = (0..100).map(|i| tagged(i, "seed")).collect();
    TaggedJob::create_many(&mut s, &tagged_jobs).await.unwrap();
}

/// The CPU time (s) the servers at `urls` have used so far, summed (`INFO cpu`).
async fn server_cpu(urls: &[String]) -> f64 {
    let mut total = 0.0;
    for url in urls {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut conn).await.unwrap();
        for line in info.lines() {
            if let Some(v) = line
                .strip_prefix("used_cpu_sys:")
                .or_else(|| line.strip_prefix("used_cpu_user:"))
            {
                total += v.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    total
}

/// The CPU time (s) this process (the client) has used so far, from
/// `/proc/self/stat` (user and system, in clock ticks of 10 ms).
fn client_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}

/// Per operation: mean latency at c1 (µs), throughput at c32 (op/s), and
/// per operation at c32 the servers' CPU (µs, every server of `nodes`
/// summed) and the client's.
async fn measure(name: &str, store: &Store, nodes: &[String], c1: u64, c32: u64) -> Vec<(String, f64, f64, f64, f64)> {
    seed(store).await;
    let mut rows = Vec::new();
    let mut starts: Vec<(&str, u64)> = Vec::new();
    for (op, f) in ops() {
        // The deletes delete what the creates made: same ids, same order.
        let made_by = match op {
            "Job delete" => Some("Job create (index entry)"),
            "TaggedJob delete" => Some("TaggedJob create (co-located)"),
            _ => None,
        };
        let end = SEQ.load(Ordering::Relaxed);
        if let Some(start) = made_by.and_then(|m| starts.iter().find(|(n, _)| *n == m)) {
            SEQ.store(start.1, Ordering::Relaxed);
        }
        starts.push((op, SEQ.load(Ordering::Relaxed)));
        let t1 = spread(store, 1, c1, f).await;
        let cpu_before = server_cpu(nodes).await;
        let client_before = client_cpu();
        let t32 = spread(store, 32, c32, f).await;
        let client = client_cpu() - client_before;
        let cpu = server_cpu(nodes).await - cpu_before;
        SEQ.fetch_max(end, Ordering::Relaxed);
        rows.push((
            op.to_owned(),
            t1.as_secs_f64() * 1e6 / c1 as f64,
            c32 as f64 / t32.as_secs_f64(),
            cpu * 1e6 / c32 as f64,
            client * 1e6 / c32 as f64,
        ));
        eprintln!("{name}: {op} done");
    }
    rows
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let rt = runtime();
    let (c1, c32) = (2_000, 10_000);
    let server = RedisServer::start();
    let single = Store::open(server.url()).unwrap();
    let standalone = rt.block_on(measure("standalone", &single, &[server.url()], c1, c32));
    // `REPOBOX_BENCH_REPLICAS=1`: a replica per primary, as a user's
    // cluster has (six servers on this machine's cores).
    let replicas = std::env::var("REPOBOX_BENCH_REPLICAS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let cluster = RedisCluster::start(3, replicas);
    let store = cluster.store();
    let nodes: Vec<String> = cluster.nodes().iter().map(|n| n.url()).collect();
    let clustered = rt.block_on(measure("cluster", &store, &nodes, c1, c32));
    println!("cluster: 3 primaries, {replicas} replica(s) each");
    println!(
        "| operation | single server c1 µs/op | cluster c1 µs/op | single server c32 op/s | cluster c32 op/s | servers' CPU µs/op c32 (single, cluster) | client CPU µs/op c32 (single, cluster) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (a, b) in standalone.iter().zip(&clustered) {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1}, {:.1} | {:.1}, {:.1} |",
            a.0, a.1, b.1, a.2, b.2, a.3, b.3, a.4, b.4
        );
    }
}
