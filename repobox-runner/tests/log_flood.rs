//! A flood of garbage entries on `jobs:stream`: every one is dead-lettered,
//! and the runner's and the queue's logs stay a few lines long, yet count
//! every event. A test binary of its own: the log limits and the log
//! subscriber are the process's.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use repobox_models::{JOBS_GROUP, JOBS_STREAM, Job};
use repobox_orm::testing::RedisServer;
use repobox_orm::{Queue, Store};
use repobox_runner::{HandlerResult, JobHandler, Output, Runner, RunnerConfig};

/// Garbage never reaches a handler.
struct Unreachable;

impl JobHandler for Unreachable {
    async fn run(&self, job: Job, _: Output) -> HandlerResult {
        panic!("a handler ran {}", job.id)
    }
}

/// A writer for the test's log lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const ENTRIES: usize = 2_000;

/// How many events of kind `what` the log lines account for: each line
/// written for one, the ones it says were held back before it, and the
/// held-back counts reported on their own.
fn events(logs: &str, what: &str) -> u64 {
    let number = |s: &str| -> u64 {
        let digits: String = s.chars().take_while(|c| c.is_ascii_digit() || *c == ',').collect();
        digits.replace(',', "").parse().unwrap()
    };
    let report = format!("more like \"{what}\"");
    logs.lines()
        .filter(|line| line.contains(what))
        .map(|line| {
            if line.contains(&report) {
                let at = line.find("held_back=").expect("a count") + "held_back=".len();
                number(&line[at..])
            } else {
                1 + line.find("(and ").map_or(0, |at| number(&line[at + 5..]))
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_garbage_entries_are_dead_lettered_with_a_few_log_lines() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let server = RedisServer::start();
    let store = Store::open(server.url()).unwrap();
    let mut conn = store.clone();
    let queue = Queue::new(JOBS_STREAM, JOBS_GROUP);
    queue.ensure_group(&mut conn).await.unwrap();
    // Values that are not UTF-8, no job id, an id no job can have, jobs that do not exist.
    let mut pipe = redis::pipe();
    for i in 0..ENTRIES {
        let xadd = pipe.cmd("XADD").arg(JOBS_STREAM).arg("*");
        match i % 4 {
            0 => xadd.arg("job_id").arg(&b"\xff\xfe"[..]),
            1 => xadd.arg("user_id").arg("u1"),
            2 => xadd.arg("job_id").arg("a:b"),
            _ => xadd.arg("job_id").arg(format!("ghost-{i}")).arg("user_id").arg("u1"),
        };
    }
    let ids: Vec<String> = pipe.query_async(&mut conn).await.unwrap();

    let config = RunnerConfig::new("r")
        .concurrency(8)
        .block(Duration::from_millis(50))
        .claim_interval(Duration::from_millis(50))
        .min_idle(Duration::from_secs(1))
        .max_deliveries(2);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = Runner::new(store.clone(), Unreachable, config);
    let handle = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    tokio::time::timeout(Duration::from_secs(120), async {
        while queue.dead_len(&mut store.clone()).await.unwrap() < ENTRIES as u64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every entry dead-lettered within 120 s");
    stop.send(()).unwrap();
    let stats = handle.await.unwrap().unwrap();

    // Every entry was delivered twice and dead-lettered; none is left pending.
    let dead = queue.dead_letters(&mut conn, "-", 2 * ENTRIES).await.unwrap();
    let dead: BTreeSet<&str> = dead.iter().map(|d| d.fields["original_id"].as_str()).collect();
    assert_eq!(dead, ids.iter().map(String::as_str).collect::<BTreeSet<_>>());
    assert_eq!(queue.pending(&mut conn).await.unwrap().count, 0);
    assert!(stats.dead_lettered >= ENTRIES as u64, "{stats:?}");
    assert!(stats.retried >= ENTRIES as u64, "{stats:?}");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let warnings = logs.lines().filter(|l| l.contains(" WARN ")).count();
    assert!(warnings < 50, "{warnings} warning lines:\n{logs}");
    assert!(logs.len() < 64 * 1024, "{} bytes of logs", logs.len());
    // The first of each kind is written, and the counts add up to every event.
    assert!(logs.contains("malformed stream entry"), "{logs}");
    assert_eq!(
        events(&logs, "dead-lettering a delivery"),
        stats.dead_lettered,
        "{logs}"
    );
    assert_eq!(
        events(&logs, "a delivery failed; it will be delivered again"),
        stats.retried,
        "{logs}"
    );
}
