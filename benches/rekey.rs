//! Re-keying at scale: 100,000 jobs moved from `rkb:<id>` to
//! `rkb:{<user_id>}:<id>` (with a sorted and a set index and a TTL) by
//! `Step::rekey`, on one server (each move one script) and on a
//! three-primary cluster (the old and new keys in different slots: ordered
//! steps), alone and with 8 tasks updating jobs through the library the
//! whole time. Prints the moves per second and the final index check; the
//! test suite runs the same at 100,000 (one server) and 20,000 (cluster)
//! jobs with kill -9 and checks every job (`repobox-orm/tests/rekey.rs`).

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use repobox_orm::migrate::{MigrateOptions, Migration, RunEnd, Step, migrate};
use repobox_orm::prelude::*;
use repobox_orm::testing::{RedisCluster, RedisServer};

const JOBS: u64 = 100_000;
const USERS: u64 = 1_000;

mod v1 {
    use super::*;

    #[derive(RedisEntity, Debug, Clone, PartialEq)]
    #[key("rkb:<id>")]
    #[ttl(days = 7)]
    #[index(sorted = "rkb:user:{<user_id>}", score = created_at)]
    #[index(set = "rkb:status:<status>")]
    pub struct Job {
        pub id: String,
        pub user_id: String,
        pub status: String,
        pub created_at: i64,
        pub repo_url: String,
    }
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("rkb:{<user_id>}:<id>", previous = "rkb:<id>")]
#[ttl(days = 7)]
#[index(sorted = "rkb:user:{<user_id>}", score = created_at)]
#[index(set = "rkb:status:<status>")]
struct Job {
    id: String,
    user_id: String,
    status: String,
    created_at: i64,
    repo_url: String,
}

struct Rekey(PhantomData<Job>);

impl Migration for Rekey {
    fn name(&self) -> &'static str {
        "bench-rekey"
    }
    fn description(&self) -> &'static str {
        "moves rkb:<id> to rkb:{<user_id>}:<id>"
    }
    fn steps(&self) -> repobox_orm::Result<Vec<Step>> {
        Ok(vec![Step::rekey::<Job>()?])
    }
}

fn old(i: u64) -> v1::Job {
    v1::Job {
        id: format!("j{i}"),
        user_id: format!("u{}", i % USERS),
        status: ["queued", "running", "done"][(i % 3) as usize].into(),
        created_at: 1_700_000_000_000 + i as i64,
        repo_url: format!("https://github.com/acme/repo-{i}.git"),
    }
}

async fn run(name: &str, mut conn: Store, writers: u64) {
    let jobs: Vec<v1::Job> = (0..JOBS).map(old).collect();
    for chunk in jobs.chunks(5_000) {
        for r in v1::Job::create_many(&mut conn, chunk).await.unwrap() {
            r.unwrap();
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (mut conn, stop, writes) = (conn.clone(), stop.clone(), writes.clone());
            tokio::spawn(async move {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let j = old(i % JOBS);
                    let patch = JobPatch {
                        status: Some("done".into()),
                        ..Default::default()
                    };
                    Job::update(&mut conn, &j.user_id, &j.id, &patch).await.unwrap();
                    writes.fetch_add(1, Ordering::Relaxed);
                    i += 7919;
                }
            })
        })
        .collect();
    let start = Instant::now();
    let report = migrate(
        &mut conn,
        &Rekey(PhantomData),
        &MigrateOptions::default().skip_verify(true),
    )
    .await
    .unwrap();
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(report.end, RunEnd::Finished);
    let moved = report.steps[0].changed;
    let findings: u64 = repobox_orm::check_indexes::<Job, _>(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.needs_repair() + r.conflicts + r.bad)
        .sum();
    println!(
        "| {name} | {writers} | {moved} | {:.1} s | {:.0} | {} | {findings} |",
        took.as_secs_f64(),
        moved as f64 / took.as_secs_f64(),
        writes.load(Ordering::Relaxed),
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("| where | writers | moved | took | moves/s | writes meanwhile | index findings after |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for writers in [0, 8] {
        let server = RedisServer::start();
        rt.block_on(run("one server", Store::open(server.url()).unwrap(), writers));
        let cluster = RedisCluster::start(3, 0);
        rt.block_on(run("3-primary cluster", cluster.store(), writers));
    }
}
