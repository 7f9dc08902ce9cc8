//! Server cost per operation: what Redis itself spends on each workload,
//! from `INFO commandstats` (`usec` summed over every command, after
//! `CONFIG RESETSTAT`), for repobox and for the hand-written redis-rs code of
//! `common`. Far steadier than throughput on a shared machine: it counts the
//! server's CPU time in commands, not the client's or the network's.
//!
//! `cargo bench --bench server_cost` prints µs per operation and commands per
//! operation, with the ratio repobox / hand-written, and the `MEMORY USAGE`
//! of one stored job.

mod common;

use std::collections::BTreeMap;

use redis::aio::MultiplexedConnection;
use repobox_models::{Job, JobPatch, JobStatus};
use repobox_orm::prelude::*;
use repobox_orm::testing::RedisServer;

use common::*;

/// A Job's fields with no index and no TTL: a bare hash, as redis-om's
/// `HashModel` stores one.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("bare_job:<id>")]
struct BareJob {
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

fn bare(i: u64) -> BareJob {
    let j = job(i, "bare");
    BareJob {
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

/// Hand-written bare save: `HSET` of the present fields, `HDEL` of the
/// absent optional ones, in `MULTI`/`EXEC` (what keeps a re-save exact).
async fn hand_bare_save(conn: &mut MultiplexedConnection, job: &BareJob) {
    let key = format!("bare_job:{}", job.id);
    let mut fields: Vec<(&str, String)> = vec![
        ("id", job.id.clone()),
        ("user_id", job.user_id.clone()),
        ("repo_url", job.repo_url.clone()),
        ("status", job.status.to_string()),
        ("created_at", job.created_at.to_string()),
        ("retries", job.retries.to_string()),
        ("env", serde_json::to_string(&job.env).unwrap()),
    ];
    let mut absent = Vec::new();
    for (name, value) in [
        ("started_at", job.started_at.map(|v| v.to_string())),
        ("finished_at", job.finished_at.map(|v| v.to_string())),
        ("exit_code", job.exit_code.map(|v| v.to_string())),
        ("error", job.error.clone()),
    ] {
        match value {
            Some(v) => fields.push((name, v)),
            None => absent.push(name),
        }
    }
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("HSET").arg(&key).arg(fields).ignore();
    if !absent.is_empty() {
        pipe.cmd("HDEL").arg(&key).arg(absent).ignore();
    }
    let () = pipe.query_async(conn).await.unwrap();
}

/// Server µs and commands since the last reset.
async fn server_cost(conn: &mut MultiplexedConnection) -> (f64, u64) {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.unwrap();
    let mut usec = 0.0;
    let mut calls = 0;
    for line in info.lines().filter(|l| l.starts_with("cmdstat_")) {
        let name = line.split(':').next().unwrap_or("");
        if name == "cmdstat_config" || name == "cmdstat_info" {
            continue;
        }
        let stats: BTreeMap<&str, &str> = line
            .split_once(':')
            .map(|(_, rest)| rest.split(',').filter_map(|kv| kv.split_once('=')).collect())
            .unwrap_or_default();
        usec += stats.get("usec").and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        calls += stats.get("calls").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    (usec, calls)
}

async fn reset(conn: &mut MultiplexedConnection) {
    let () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(conn).await.unwrap();
}

const N: u64 = 5_000;

async fn measure<F>(conn: &mut MultiplexedConnection, n: u64, mut op: F) -> (f64, f64)
where
    F: AsyncFnMut(&mut MultiplexedConnection, u64),
{
    reset(conn).await;
    for i in 0..n {
        op(conn, i).await;
    }
    let (usec, calls) = server_cost(conn).await;
    (usec / n as f64, calls as f64 / n as f64)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let rt = runtime();
    let server = RedisServer::start();
    rt.block_on(async {
        let mut conn = server.connection().await;
        let c = &mut conn;
        // Warm: every script loaded, 1,000 jobs to read, update and page.
        let seed: Vec<Job> = (0..1000).map(|i| job(i, "lister")).collect();
        Job::create_many(c, &seed).await.unwrap();
        BareJob::save(c, &bare(0)).await.unwrap();
        hand_create(c, &job(9_999_999, "warm")).await;
        hand_update_status(c, "job-9999999", JobStatus::Running).await;
        Job::update(c, "job-0", JobPatch::default()).await.unwrap();

        let mut rows = Vec::new();
        // Fresh keys on both sides: a first write costs more than an overwrite.
        let r = measure(c, N, async |c, i| BareJob::save(c, &bare(1 + i)).await.unwrap()).await;
        let h = measure(c, N, async |c, i| hand_bare_save(c, &bare(10_000_000 + i)).await).await;
        rows.push(("bare save (no index, no TTL)", r, h));
        let r = measure(c, N, async |c, i| {
            drop(Job::get(c, format!("job-{}", i % 1000)).await.unwrap().unwrap())
        })
        .await;
        let h = measure(c, N, async |c, i| {
            drop(hand_get(c, &format!("job-{}", i % 1000)).await.unwrap())
        })
        .await;
        rows.push(("get", r, h));
        let r = measure(c, N, async |c, i| {
            Job::create(c, &job(1_000_000 + i, "creator")).await.unwrap()
        })
        .await;
        let h = measure(c, N, async |c, i| {
            assert!(hand_create(c, &job(2_000_000 + i, "creator")).await)
        })
        .await;
        rows.push(("create (sorted index entry)", r, h));
        let r = measure(c, N, async |c, i| {
            let patch = JobPatch {
                status: Some(JobStatus::Running),
                ..Default::default()
            };
            Job::update(c, format!("job-{}", i % 1000), patch).await.unwrap()
        })
        .await;
        let h = measure(c, N, async |c, i| {
            assert!(hand_update_status(c, &format!("job-{}", i % 1000), JobStatus::Running).await)
        })
        .await;
        rows.push(("update (unindexed field)", r, h));
        let r = measure(c, N, async |c, i| {
            assert!(Job::delete(c, format!("job-{}", 1_000_000 + i)).await.unwrap())
        })
        .await;
        let h = measure(c, N, async |c, i| {
            assert!(hand_delete(c, &format!("job-{}", 2_000_000 + i)).await)
        })
        .await;
        rows.push(("delete (and its index entry)", r, h));
        let r = measure(c, N / 10, async |c, _| {
            assert_eq!(
                Job::by_user_id(c, "lister", Page::newest(50))
                    .await
                    .unwrap()
                    .items
                    .len(),
                50
            )
        })
        .await;
        let h = measure(c, N / 10, async |c, _| {
            assert_eq!(hand_page(c, "lister", 50).await.len(), 50)
        })
        .await;
        rows.push(("page of 50", r, h));

        println!("| workload | repobox server µs/op | hand server µs/op | ratio | repobox cmds/op | hand cmds/op |");
        println!("|---|---|---|---|---|---|");
        for (name, (ru, rc), (hu, hc)) in rows {
            println!("| {name} | {ru:.2} | {hu:.2} | {:.2} | {rc:.1} | {hc:.1} |", ru / hu);
        }
        let job_bytes: i64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg("job:job-5")
            .query_async(c)
            .await
            .unwrap();
        let bare_bytes: i64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg("bare_job:job-5")
            .query_async(c)
            .await
            .unwrap();
        println!("\nMEMORY USAGE of one job: {job_bytes} B (repobox Job), {bare_bytes} B (BareJob, the same shape)");
    });
}
