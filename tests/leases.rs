//! Leases across `repobox runner` processes: a job with two stream entries
//! runs once, and a runner killed with `kill -9` mid-run is taken over only
//! once its lease has passed. Real binaries against a test-kit server.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use repobox_models::{JOBS_GROUP, JOBS_STREAM, Job, JobStatus, now_millis};
use repobox_orm::testing::RedisServer;
use repobox_orm::{Queue, Store};

use common::{job, output, wait_for};

/// A `repobox runner` process; killed with SIGKILL when dropped.
struct RunnerProcess(Child);

impl RunnerProcess {
    fn spawn(server: &RedisServer, name: &str, extra: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_repobox"))
            .args(["runner", "--demo", "--consumer", name])
            .args(extra)
            .env("REDIS_URL", server.url())
            .env("REPOBOX_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a runner");
        RunnerProcess(child)
    }

    /// `kill -9`, and waits until the process is gone.
    fn kill_9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for RunnerProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}

async fn nothing_pending(store: &Store) -> bool {
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    q.pending(&mut store.clone())
        .await
        .map(|p| p.count == 0)
        .unwrap_or(false)
}

/// How many runs wrote output: the demo handler opens each run with
/// `$ git clone`.
fn runs_in(lines: &[String]) -> usize {
    lines.iter().filter(|l| l.starts_with("$ git clone")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runner_processes_run_a_job_with_two_entries_once() {
    let server = RedisServer::start();
    let store = Store::open(server.url().as_str()).unwrap();
    let mut conn = store.clone();
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    q.ensure_group(&mut conn).await.unwrap();
    let _a = RunnerProcess::spawn(&server, "a", &[]);
    let _b = RunnerProcess::spawn(&server, "b", &[]);
    // Slow jobs (a second per step), each with a second entry on the stream.
    for i in 0..3 {
        let id = format!("twice{i}");
        let job = Job::new(&id, "u1", "https://x/slow.git", now_millis());
        Job::create_and_enqueue(&mut conn, &job, now_millis()).await.unwrap();
        q.enqueue(
            &mut conn,
            &[("job_id", id.as_str()), ("user_id", "u1"), ("enqueued_at", "1")],
        )
        .await
        .unwrap();
    }
    wait_for("every job over and every entry settled", async || {
        let mut over = true;
        for i in 0..3 {
            over &= job(&store, &format!("twice{i}")).await.status.is_final();
        }
        over && nothing_pending(&store).await
    })
    .await;
    for i in 0..3 {
        let id = format!("twice{i}");
        let lines = output(&store, &id).await;
        assert_eq!(runs_in(&lines), 1, "{id} ran once: {lines:?}");
        let job = job(&store, &id).await;
        let statuses: Vec<JobStatus> = job.history.iter().map(|c| c.status).collect();
        assert_eq!(
            statuses,
            [JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded],
            "{id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runners_job_is_taken_over_only_after_its_lease_passed() {
    let server = RedisServer::start();
    let store = Store::open(server.url().as_str()).unwrap();
    let mut conn = store.clone();
    Queue::new(JOBS_STREAM, JOBS_GROUP)
        .ensure_group(&mut conn)
        .await
        .unwrap();
    // Deliveries go stale after 1 s; the lease lasts 4 s: the entry can be
    // claimed again well before the run may be taken over.
    let flags = ["--min-idle-secs", "1", "--lease-secs", "4"];
    let mut a = RunnerProcess::spawn(&server, "a", &flags);
    let slow = Job::new("killed", "u1", "https://x/slow.git", now_millis());
    Job::create_and_enqueue(&mut conn, &slow, now_millis()).await.unwrap();
    wait_for("the first run's first line", async || {
        runs_in(&output(&store, "killed").await) == 1
    })
    .await;
    a.kill_9();
    // What the dead run held: its run id and the lease it last renewed.
    let held = job(&store, "killed").await;
    assert_eq!(held.status, JobStatus::Running);
    let (dead_run, dead_lease) = (held.run_id.clone().unwrap(), held.lease_until.unwrap());

    let _b = RunnerProcess::spawn(&server, "b", &flags);
    wait_for("the job to succeed", async || {
        job(&store, "killed").await.status == JobStatus::Succeeded
    })
    .await;
    let done = job(&store, "killed").await;
    assert_ne!(done.run_id.as_deref(), Some(dead_run.as_str()));
    let statuses: Vec<JobStatus> = done.history.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Running,
            JobStatus::Succeeded
        ],
        "{:?}",
        done.history
    );
    let takeover = &done.history[2];
    assert!(
        takeover.reason.as_deref().is_some_and(|r| r.contains(&dead_run)),
        "{takeover:?}"
    );
    assert!(
        takeover.at >= dead_lease,
        "taken over at {} before the lease passed at {dead_lease}",
        takeover.at
    );
    // The dead run's partial output, then one whole run.
    let lines = output(&store, "killed").await;
    assert_eq!(runs_in(&lines), 2, "{lines:?}");
    assert!(lines.last().unwrap().starts_with("ok:"), "{lines:?}");
    wait_for("the entry to be acknowledged", async || nothing_pending(&store).await).await;
}

/// `repobox queue requeue-dead --all` while a runner is up: each job goes
/// back to `queued` before its entry goes back on the stream, so a runner
/// that reads the entry at once runs the job (it used to find it `failed`,
/// acknowledge the entry, and leave the job `queued` with nothing pending).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeued_dead_letters_are_run_by_a_runner_that_is_up() {
    let server = RedisServer::start();
    let store = Store::open(server.url().as_str()).unwrap();
    let mut conn = store.clone();
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    q.ensure_group(&mut conn).await.unwrap();
    let ids: Vec<String> = (0..12).map(|i| format!("dead{i}")).collect();
    for id in &ids {
        let job = Job::new(id, "u1", "https://x/ok.git", now_millis());
        Job::create(&mut conn, &job).await.unwrap();
        let outcome = repobox_models::JobOutcome {
            exit_code: None,
            error: Some("gave up".into()),
        };
        Job::update_status(&mut conn, id, JobStatus::Failed, now_millis(), outcome)
            .await
            .unwrap();
        let fields = [
            ("job_id", id.as_str()),
            ("user_id", "u1"),
            ("enqueued_at", "1"),
            ("original_id", "1-1"),
            ("reason", "gave up"),
            ("deliveries", "5"),
            ("consumer", "gone"),
            ("dead_at", "1"),
        ];
        let _: String = redis::cmd("XADD")
            .arg(q.dead_stream())
            .arg("*")
            .arg(&fields)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let _runner = RunnerProcess::spawn(&server, "up", &[]);
    // Let the runner be reading when the entries come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(["queue", "requeue-dead", "--all"])
        .env("REDIS_URL", server.url())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_for("every requeued job to succeed", async || {
        let mut done = true;
        for id in &ids {
            done &= job(&store, id).await.status == JobStatus::Succeeded;
        }
        done && nothing_pending(&store).await
    })
    .await;
    for id in &ids {
        assert_eq!(runs_in(&output(&store, id).await), 1, "{id}");
    }
}

/// The runner holding a job is stopped (`SIGSTOP`) past its lease, another
/// takes the job over, then the first is continued (`SIGCONT`): its run
/// finds its lease passed and writes nothing more, neither output nor a
/// status; the job's output after the takeover is the second run's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_runner_continued_after_a_takeover_writes_nothing() {
    let server = RedisServer::start();
    let store = Store::open(server.url().as_str()).unwrap();
    let mut conn = store.clone();
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    q.ensure_group(&mut conn).await.unwrap();
    let flags = ["--min-idle-secs", "1", "--lease-secs", "2"];
    let mut a = RunnerProcess::spawn(&server, "a", &flags);
    let slow = Job::new("paused", "u1", "https://x/slow.git", now_millis());
    Job::create_and_enqueue(&mut conn, &slow, now_millis()).await.unwrap();
    wait_for("the first run's first line", async || {
        runs_in(&output(&store, "paused").await) == 1
    })
    .await;
    let stop = |signal: &str, pid: u32| {
        let status = Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
        assert!(status.success());
    };
    stop("-STOP", a.0.id());
    let _b = RunnerProcess::spawn(&server, "b", &flags);
    wait_for("the takeover", async || runs_in(&output(&store, "paused").await) == 2).await;
    stop("-CONT", a.0.id());
    wait_for("the job to succeed", async || {
        job(&store, "paused").await.status == JobStatus::Succeeded
    })
    .await;
    wait_for("the entry to be acknowledged", async || nothing_pending(&store).await).await;
    // Let the first runner go on as far as it would.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lines = output(&store, "paused").await;
    let second = lines.iter().rposition(|l| l.starts_with("$ git clone")).unwrap();
    assert_eq!(
        lines[second + 1..],
        [
            "resolving dependencies",
            "building (1/2)",
            "building (2/2)",
            "running tests",
            "ok: 12 tests passed"
        ],
        "{lines:?}"
    );
    let done = job(&store, "paused").await;
    let statuses: Vec<JobStatus> = done.history.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Running,
            JobStatus::Succeeded
        ]
    );
    a.kill_9();
}
