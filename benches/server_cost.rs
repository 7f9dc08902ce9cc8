//! Server cost per operation: what Redis itself spends on each workload, as
//! the growth of its main thread's CPU time (`INFO cpu`, user + system), for
//! repobox and for the hand-written redis-rs code of `common`. Far steadier
//! than throughput on a shared machine: it is the server's own time, not the
//! client's or the network's. (`INFO commandstats` would count a script's
//! inner commands twice: once in the script's time, once in their own.)
//!
//! `cargo bench --bench server_cost` prints µs per operation and commands per
//! operation, with the ratio repobox / hand-written, and the `MEMORY USAGE`
//! of one stored job.

mod common;

use redis::aio::MultiplexedConnection;
use repobox_models::{Job, JobPatch, JobStatus};
use repobox_orm::prelude::*;
use repobox_orm::testing::RedisServer;

use common::*;

/// Commands run since the last reset (a script's inner commands included).
async fn commands(conn: &mut MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_config") && !l.starts_with("cmdstat_info"))
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

async fn reset(conn: &mut MultiplexedConnection) {
    let () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(conn).await.unwrap();
}

const N: u64 = 5_000;

/// Runs `n` operations over 32 tasks sharing the connection (as the
/// throughput figures at c32 do, so that the server's per-request I/O is
/// spread over pipelined requests as it is under load); the server's CPU µs
/// and commands per operation.
async fn measure<F>(conn: &mut MultiplexedConnection, n: u64, op: F) -> (f64, f64)
where
    F: AsyncFn(MultiplexedConnection, u64),
{
    use futures_util::StreamExt;
    reset(conn).await;
    let start = server_cpu_usec(conn).await;
    let shared = conn.clone();
    futures_util::stream::iter(0..n)
        .for_each_concurrent(32, |i| op(shared.clone(), i))
        .await;
    let usec = server_cpu_usec(conn).await - start;
    let calls = commands(conn).await;
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
        Job::update(c, "job-0", &JobPatch::default()).await.unwrap();

        let mut rows = Vec::new();
        // Fresh keys on both sides: a first write costs more than an overwrite.
        let r = measure(c, N, async |mut c: MultiplexedConnection, i| {
            BareJob::save(&mut c, &bare(1 + i)).await.unwrap()
        })
        .await;
        let h = measure(c, N, async |mut c: MultiplexedConnection, i| {
            hand_bare_save(&mut c, "bare_job", &bare(10_000_000 + i)).await
        })
        .await;
        rows.push(("bare save (no index, no TTL)", r, h));
        let r = measure(c, N, async |mut c: MultiplexedConnection, i| {
            drop(Job::get(&mut c, format!("job-{}", i % 1000)).await.unwrap().unwrap())
        })
        .await;
        let h = measure(c, N, async |mut c: MultiplexedConnection, i| {
            drop(hand_get(&mut c, &format!("job-{}", i % 1000)).await.unwrap())
        })
        .await;
        rows.push(("get", r, h));
        let r = measure(c, N, async |mut c: MultiplexedConnection, i| {
            Job::create(&mut c, &job(1_000_000 + i, "creator")).await.unwrap()
        })
        .await;
        let h = measure(c, N, async |mut c: MultiplexedConnection, i| {
            assert!(hand_create(&mut c, &job(2_000_000 + i, "creator")).await)
        })
        .await;
        rows.push(("create (sorted index entry)", r, h));
        let r = measure(c, N, async |mut c: MultiplexedConnection, i| {
            let patch = JobPatch {
                status: Some(JobStatus::Running),
                ..Default::default()
            };
            Job::update(&mut c, format!("job-{}", i % 1000), &patch).await.unwrap()
        })
        .await;
        let h = measure(c, N, async |mut c: MultiplexedConnection, i| {
            assert!(hand_update_status(&mut c, &format!("job-{}", i % 1000), JobStatus::Running).await)
        })
        .await;
        rows.push(("update (unindexed field)", r, h));
        let r = measure(c, N, async |mut c: MultiplexedConnection, i| {
            assert!(Job::delete(&mut c, format!("job-{}", 1_000_000 + i)).await.unwrap())
        })
        .await;
        let h = measure(c, N, async |mut c: MultiplexedConnection, i| {
            assert!(hand_delete(&mut c, &format!("job-{}", 2_000_000 + i)).await)
        })
        .await;
        rows.push(("delete (and its index entry)", r, h));
        let more: Vec<Job> = (0..N).map(|i| job(3_000_000 + i, "creator")).collect();
        Job::create_many(c, &more).await.unwrap();
        let h = measure(c, N, async |mut c: MultiplexedConnection, i| {
            assert!(hand_checked_delete(&mut c, &format!("job-{}", 3_000_000 + i)).await)
        })
        .await;
        rows.push(("delete, hand with the same guarantee (HGET + checking script)", r, h));
        let r = measure(c, N / 10, async |mut c: MultiplexedConnection, _| {
            assert_eq!(
                Job::by_user_id(&mut c, "lister", Page::newest(50))
                    .await
                    .unwrap()
                    .items
                    .len(),
                50
            )
        })
        .await;
        let h = measure(c, N / 10, async |mut c: MultiplexedConnection, _| {
            assert_eq!(hand_page(&mut c, "lister", 50).await.len(), 50)
        })
        .await;
        rows.push(("page of 50", r, h));
        let h = measure(c, N / 10, async |mut c: MultiplexedConnection, _| {
            assert_eq!(hand_checked_page(&mut c, "lister", 50).await.len(), 50)
        })
        .await;
        rows.push(("page of 50, hand with the same check (WITHSCORES)", r, h));

        // Bulk: 10,000 jobs per side, per entity.
        let jobs: Vec<Job> = (0..10_000)
            .map(|i| job(5_000_000 + i, &format!("bulk-{}", i % 100)))
            .collect();
        let r = measure(c, 1, async |mut c: MultiplexedConnection, _| {
            assert!(Job::create_many(&mut c, &jobs).await.unwrap().iter().all(Result::is_ok))
        })
        .await;
        let hand_jobs: Vec<Job> = (0..10_000)
            .map(|i| job(6_000_000 + i, &format!("bulk-{}", i % 100)))
            .collect();
        let h = measure(c, 1, async |mut c: MultiplexedConnection, _| {
            hand_bulk_create(&mut c, &hand_jobs).await
        })
        .await;
        let per = |(u, n): (f64, f64)| (u / 1e4, n / 1e4);
        rows.push((
            "create_many, per job (hand: pipelined HSET + ZADD, no checks)",
            per(r),
            per(h),
        ));

        // save_many of the same jobs (no entry moves) and delete_many.
        let r = measure(c, 1, async |mut c: MultiplexedConnection, _| {
            assert!(Job::save_many(&mut c, &jobs).await.unwrap().iter().all(Result::is_ok))
        })
        .await;
        let h = measure(c, 1, async |mut c: MultiplexedConnection, _| {
            hand_bulk_create(&mut c, &hand_jobs).await
        })
        .await;
        rows.push((
            "save_many, per job (hand: pipelined HSET + ZADD, no checks)",
            per(r),
            per(h),
        ));
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        let hand_ids: Vec<String> = hand_jobs.iter().map(|j| j.id.clone()).collect();
        let r = measure(c, 1, async |mut c: MultiplexedConnection, _| {
            assert!(
                Job::delete_many(&mut c, &ids)
                    .await
                    .unwrap()
                    .iter()
                    .all(|d| matches!(d, Ok(true)))
            )
        })
        .await;
        let h = measure(c, 1, async |mut c: MultiplexedConnection, _| {
            hand_bulk_delete(&mut c, &hand_ids).await
        })
        .await;
        rows.push((
            "delete_many, per job (hand: pipelined HGET, then DEL + ZREM, no checks)",
            per(r),
            per(h),
        ));

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
