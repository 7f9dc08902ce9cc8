//! `repobox runner` processes with `--exec`: draining on SIGTERM with a
//! second runner taking over, a second signal, health checks across a Redis
//! restart and a drain, the log lines, `jobs cancel`, and the usage error.
//! Real binaries, real scripts, a test-kit server.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use repobox_models::{JOBS_GROUP, JOBS_STREAM, Job, JobStatus, now_millis};
use repobox_orm::testing::RedisServer;
use repobox_orm::{Queue, Store};

use common::{job, output, wait_for};

fn script(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("job.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A runner process, killed with SIGKILL if a test leaves it running (an
/// assertion that failed): no runner outlives its test.
struct RunnerProcess(Option<Child>);

impl From<Child> for RunnerProcess {
    fn from(child: Child) -> Self {
        RunnerProcess(Some(child))
    }
}

impl RunnerProcess {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// The process, which the caller now waits for.
    fn take(mut self) -> Child {
        self.0.take().expect("a runner process")
    }
}

impl Drop for RunnerProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `repobox runner` with its stderr (the log) piped.
fn runner(server: &RedisServer, args: &[&str]) -> RunnerProcess {
    RunnerProcess::from(
        Command::new(env!("CARGO_BIN_EXE_repobox"))
            .arg("runner")
            .args(args)
            .env("REDIS_URL", server.url())
            .env_remove("REPOBOX_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a runner"),
    )
}

fn signal(child: &RunnerProcess, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the runner to exit. One that is still up after 60 s is
/// killed and the test fails with what it printed, instead of hanging the
/// whole run on a wait that never ends.
async fn finish(child: RunnerProcess) -> Output {
    let pid = child.id().to_string();
    let child = child.take();
    let mut wait = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    match tokio::time::timeout(Duration::from_secs(60), &mut wait).await {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            let out = wait.await.unwrap();
            panic!(
                "the runner did not exit within 60 s; its stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

async fn enqueue(store: &Store, id: &str, mode: &str) {
    let mut job = Job::new(id, "u1", format!("https://example.com/{id}.git"), now_millis());
    job.env = vec![("MODE".to_owned(), mode.to_owned())];
    Job::create_and_enqueue(&mut store.clone(), &job, now_millis())
        .await
        .unwrap();
}

/// The log lines of `--log-format json`: every one a JSON object.
fn json_log(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect()
}

fn said<'a>(log: &'a [serde_json::Value], message: &str) -> Vec<&'a serde_json::Value> {
    log.iter().filter(|l| l["message"] == message).collect()
}

#[test]
fn runner_arguments_are_checked_before_it_takes_jobs() {
    let out = Command::new(env!("CARGO_BIN_EXE_repobox"))
        .arg("runner")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for mode in ["--exec", "--shell", "--demo"] {
        assert!(err.contains(mode), "{err}");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(["runner", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("only pretends") && help.contains("without a shell"),
        "{help}"
    );

    // A zero timeout is a usage error; a program that cannot run is one
    // error at start (as JSON with --json), not a failure per job.
    let server = RedisServer::start();
    let zero = runner(&server, &["--exec", "/bin/true", "--timeout", "0"]);
    assert_eq!(zero.take().wait_with_output().unwrap().status.code(), Some(2));
    let no_workdir = runner(
        &server,
        &["--exec", "/bin/true", "--workdir", "/nonexistent/jobs", "--json"],
    );
    let out = no_workdir.take().wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot make working directories under /nonexistent/jobs"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (program, why) in [
        ("/nonexistent/build", "No such file"),
        ("/etc", "is not an executable file"),
        ("no-such-program-anywhere", "is not on the PATH jobs get"),
    ] {
        let out = runner(&server, &["--exec", program, "--json"])
            .take()
            .wait_with_output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{program}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
        assert_eq!(last["kind"], "error", "{stderr}");
        assert!(last["error"].as_str().unwrap().contains(why), "{stderr}");
        // With --json the log lines are JSON too.
        for line in stderr.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_short_job_and_releases_the_long_one_to_a_second_runner() {
    let server = RedisServer::start();
    let store = Store::open(server.url().as_str()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // On the first runner a long job never ends by itself.
    let job_sh = script(
        dir.path(),
        r#"echo "$MODE started on $1"
if [ "$MODE" = short ]; then sleep 1; fi
if [ "$MODE" = long ] && [ "$1" = first ]; then sleep 600; fi
echo "$MODE done on $1""#,
    );
    let exe = job_sh.to_str().unwrap();
    let first = runner(
        &server,
        &[
            "--exec",
            exe,
            "first",
            "--consumer",
            "first",
            "--concurrency",
            "2",
            "--drain-secs",
            "3",
            "--kill-grace",
            "1s",
            "--min-idle-secs",
            "2",
            "--log-format",
            "json",
        ],
    );
    enqueue(&store, "short", "short").await;
    enqueue(&store, "long", "long").await;
    wait_for("both jobs running", async || {
        output(&store, "short").await.len() == 1 && output(&store, "long").await.len() == 1
    })
    .await;
    signal(&first, "TERM");
    let out = finish(first).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The short job finished; the long one went back to the queue, its
    // delivery pending for another runner.
    let short = job(&store, "short").await;
    assert_eq!(short.status, JobStatus::Succeeded);
    assert_eq!(
        output(&store, "short").await,
        ["short started on first", "short done on first"]
    );
    let long = job(&store, "long").await;
    assert_eq!(long.status, JobStatus::Queued);
    let last = long.history.last().unwrap();
    assert_eq!(last.reason.as_deref(), Some("released: the runner shut down"));
    let queue = Queue::new(JOBS_STREAM, JOBS_GROUP);
    let pending = queue.pending_entries(&mut store.clone(), 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].consumer, "first");

    // One JSON object per line: what it did, in order.
    let log = json_log(&out);
    assert_eq!(said(&log, "connected to Redis").len(), 1);
    assert_eq!(said(&log, "job started").len(), 2);
    let finished = said(&log, "job finished");
    assert_eq!(finished.len(), 1);
    assert_eq!(
        (&finished[0]["job"], &finished[0]["status"]),
        (&"short".into(), &"succeeded".into())
    );
    assert_eq!(finished[0]["exit_code"], 0);
    assert_eq!(finished[0]["output_lines"], 2);
    assert!(finished[0]["duration_secs"].as_f64().unwrap() >= 1.0);
    assert_eq!(said(&log, "job stopped at shutdown; back to the queue").len(), 1);
    assert!(
        log.iter()
            .any(|l| l["message"].as_str().unwrap().starts_with("draining")),
        "{log:?}"
    );

    // A second runner takes the long job over and finishes it.
    let second = runner(
        &server,
        &["--exec", exe, "second", "--consumer", "second", "--min-idle-secs", "2"],
    );
    wait_for("the long job succeeded on the second runner", async || {
        job(&store, "long").await.status == JobStatus::Succeeded
    })
    .await;
    let lines = output(&store, "long").await;
    assert_eq!(lines.first().unwrap(), "long started on first");
    assert_eq!(lines.last().unwrap(), "long done on second");

    // A second signal does not wait for the drain time.
    signal(&second, "TERM");
    let out = finish(second).await;
    assert!(out.status.success());
    enqueue(&store, "stuck", "long").await;
    let third = runner(
        &server,
        &[
            "--exec",
            exe,
            "first",
            "--consumer",
            "third",
            "--drain-secs",
            "600",
            "--kill-grace",
            "1s",
        ],
    );
    wait_for("the stuck job running", async || {
        job(&store, "stuck").await.status == JobStatus::Running
    })
    .await;
    signal(&third, "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&third, "INT");
    let out = finish(third).await;
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("second signal: stopping the running jobs now"), "{log}");
    let stuck = job(&store, "stuck").await;
    assert_eq!(stuck.status, JobStatus::Queued);
    assert_eq!(
        stuck.history.last().unwrap().reason.as_deref(),
        Some("released: the runner shut down")
    );
}

/// `GET path` on `addr`: the status code and the body.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Some((code, body))
}

async fn wait_for_code(addr: &str, path: &str, code: u16) -> String {
    let mut last = None;
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let got = get(addr, path);
            if let Some((c, body)) = &got
                && *c == code
            {
                return body.clone();
            }
            last = got;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{path} never answered {code}; last: {last:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_a_redis_restart_and_a_drain_and_jobs_cancel_stops_a_process() {
    let mut server = RedisServer::start();
    let store = Store::open(server.url().as_str()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job_sh = script(dir.path(), "echo \"$MODE started\"\nsleep 600");
    let port = RedisServer::free_port();
    let addr = format!("127.0.0.1:{port}");
    let runner = runner(
        &server,
        &[
            "--exec",
            job_sh.to_str().unwrap(),
            "--health-addr",
            &addr,
            "--drain-secs",
            "60",
            "--kill-grace",
            "1s",
        ],
    );
    let body = wait_for_code(&addr, "/healthz", 200).await;
    assert!(body.contains(r#""redis":true"#), "{body}");
    wait_for_code(&addr, "/readyz", 200).await;

    // Redis goes away: both checks fail; it comes back: both pass again
    // (the group is made again on the empty server).
    server.kill();
    let body = wait_for_code(&addr, "/healthz", 503).await;
    assert!(body.contains(r#""redis":false"#), "{body}");
    wait_for_code(&addr, "/readyz", 503).await;
    server.restart();
    wait_for_code(&addr, "/healthz", 200).await;
    wait_for_code(&addr, "/readyz", 200).await;

    // `repobox jobs cancel` stops a running process.
    enqueue(&store, "doomed", "doomed").await;
    enqueue(&store, "busy", "busy").await;
    wait_for("both jobs running", async || {
        output(&store, "doomed").await.len() == 1 && output(&store, "busy").await.len() == 1
    })
    .await;
    let cancel = Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(["jobs", "cancel", "doomed"])
        .env("REDIS_URL", server.url())
        .output()
        .unwrap();
    assert!(cancel.status.success(), "{}", String::from_utf8_lossy(&cancel.stderr));
    wait_for("the cancelled job over", async || {
        job(&store, "doomed").await.status == JobStatus::Cancelled
    })
    .await;
    assert_eq!(
        output(&store, "doomed").await.last().unwrap(),
        "[repobox: cancelled; its processes ended on SIGTERM]"
    );

    // Draining: not ready, still healthy; then a second signal.
    signal(&runner, "TERM");
    let body = wait_for_code(&addr, "/readyz", 503).await;
    assert!(body.contains(r#""phase":"draining""#), "{body}");
    let (code, _) = get(&addr, "/healthz").unwrap();
    assert_eq!(code, 200);
    signal(&runner, "TERM");
    let out = finish(runner).await;
    assert!(out.status.success());
    assert_eq!(job(&store, "busy").await.status, JobStatus::Queued);

    // The log said it all, one line per event.
    let log = String::from_utf8_lossy(&out.stderr);
    for line in [
        "connected to Redis",
        "lost Redis; retrying until it is back",
        "reconnected to Redis after",
        "job started job=doomed user=u1 delivery=1",
        "job finished job=doomed status=cancelled",
        "the job was cancelled; stopping it",
        "serving /healthz and /readyz",
    ] {
        assert!(log.contains(line), "no {line:?} in\n{log}");
    }
    assert_eq!(log.matches("lost Redis").count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_with_sigkill_takes_its_program_with_it() {
    let server = RedisServer::start();
    let store = Store::open(server.url().as_str()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let job_sh = script(dir.path(), "echo $$ > \"$PIDFILE\"\necho started\nexec sleep 600");
    let runner = runner(&server, &["--exec", job_sh.to_str().unwrap()]);
    let mut job = Job::new("orphan", "u1", "https://example.com/o.git", now_millis());
    job.env = vec![("PIDFILE".to_owned(), pidfile.to_str().unwrap().to_owned())];
    Job::create_and_enqueue(&mut store.clone(), &job, now_millis())
        .await
        .unwrap();
    wait_for("the job running", async || output(&store, "orphan").await.len() == 1).await;
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    // SIGKILL, as the guard's drop sends it.
    drop(runner);
    wait_for("the program gone", async || {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z')),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_says_once_that_redis_is_unreachable_and_still_stops_on_sigterm() {
    let port = RedisServer::free_port();
    let runner = RunnerProcess::from(
        Command::new(env!("CARGO_BIN_EXE_repobox"))
            .args(["runner", "--demo"])
            .env("REDIS_URL", format!("redis://127.0.0.1:{port}"))
            .env_remove("REPOBOX_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(&runner, "TERM");
    let out = finish(runner).await;
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(log.matches("lost Redis; retrying until it is back").count(), 1, "{log}");
    assert!(log.contains(" WARN "), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inherit_env_passes_the_runners_environment_but_never_its_redis_settings() {
    let server = RedisServer::start_with(&["--requirepass", "hunter2pass"]);
    let url = format!("redis://:hunter2pass@127.0.0.1:{}", server.port());
    let store = Store::open(url.as_str()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The job also tries the runner's own environment, through /proc.
    let job_sh = script(
        dir.path(),
        "env\necho ---\ntr '\\0' '\\n' < /proc/$PPID/environ || echo 'environ: unreadable'",
    );
    let run = |extra: &[&str]| {
        let child = Command::new(env!("CARGO_BIN_EXE_repobox"))
            .args(["runner", "--exec", job_sh.to_str().unwrap()])
            .args(extra)
            .env("REDIS_URL", &url)
            .env("REPOBOX_LOG", "debug")
            .env("MY_TOOL_TOKEN", "visible")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        RunnerProcess::from(child)
    };
    for (id, extra) in [("inherited", &["--inherit-env"][..]), ("minimal", &[][..])] {
        let runner = run(extra);
        enqueue(&store, id, "env").await;
        wait_for("the job over", async || job(&store, id).await.status.is_final()).await;
        signal(&runner, "TERM");
        let out = finish(runner).await;
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(!log.contains("hunter2pass"), "{log}");
        let lines = output(&store, id).await;
        assert!(!lines.iter().any(|l| l.contains("hunter2pass")), "{lines:?}");
        let split = lines.iter().position(|l| l == "---").unwrap();
        let (env, proc_environ) = (&lines[..split], &lines[split + 1..]);
        assert!(!env.iter().any(|l| l.starts_with("REDIS_")), "{env:?}");
        assert!(env.iter().any(|l| l == &format!("REPOBOX_JOB_ID={id}")), "{env:?}");
        assert!(!env.iter().any(|l| l.starts_with("REPOBOX_LOG")), "{env:?}");
        // Unreadable to a job of the runner's user; to root, readable, but
        // the value is overwritten.
        let masked = format!("REDIS_URL={}", "*".repeat(url.len()));
        assert!(
            proc_environ.iter().any(|l| l == "environ: unreadable" || *l == masked),
            "{proc_environ:?}"
        );
        let inherited = env.iter().any(|l| l == "MY_TOOL_TOKEN=visible");
        assert_eq!(inherited, id == "inherited", "{env:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_is_noticed_and_does_not_hold_up_a_stop() {
    let server = RedisServer::start();
    let store = Store::open(server.url().as_str()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job_sh = script(dir.path(), "echo started\nsleep 600");
    let port = RedisServer::free_port();
    let addr = format!("127.0.0.1:{port}");
    let exe = job_sh.to_str().unwrap();
    // One slot, busy with a job: no read tells whether Redis is there.
    let runner = runner(
        &server,
        &[
            "--exec",
            exe,
            "--concurrency",
            "1",
            "--health-addr",
            &addr,
            "--kill-grace",
            "1s",
        ],
    );
    wait_for_code(&addr, "/healthz", 200).await;
    enqueue(&store, "busy", "busy").await;
    wait_for("the job running", async || output(&store, "busy").await.len() == 1).await;

    // The server hangs (a partition, a stopped process): nothing answers.
    let pid = server.pid().unwrap().to_string();
    let stop = |sig: &str| Command::new("kill").args([sig, &pid]).status().unwrap();
    assert!(stop("-STOP").success());
    let body = wait_for_code(&addr, "/healthz", 503).await;
    assert!(body.contains(r#""redis":false"#), "{body}");
    // Two signals stop it while the server still hangs.
    signal(&runner, "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&runner, "TERM");
    let out = finish(runner).await;
    assert!(stop("-CONT").success());
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(log.matches("lost Redis; retrying until it is back").count(), 1, "{log}");
    assert!(!log.contains("connect failed"), "the store's lines stay out: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptors_the_runner_inherited_do_not_reach_its_jobs() {
    let server = RedisServer::start();
    let store = Store::open(server.url().as_str()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job_sh = script(
        dir.path(),
        "if [ -e /proc/$$/fd/9 ]; then echo 'fd 9 leaked'; else echo 'fd 9 closed'; fi",
    );
    // The runner starts with fd 9 open on a file, as a careless parent
    // leaves it (bash, unlike dash, leaves it open across exec).
    let runner = RunnerProcess::from(
        Command::new("bash")
            .args(["-c", "exec 9</etc/hostname; exec \"$0\" runner --exec \"$1\""])
            .arg(env!("CARGO_BIN_EXE_repobox"))
            .arg(&job_sh)
            .env("REDIS_URL", server.url())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    enqueue(&store, "fds", "fds").await;
    wait_for("the job over", async || job(&store, "fds").await.status.is_final()).await;
    signal(&runner, "TERM");
    assert!(finish(runner).await.status.success());
    assert_eq!(output(&store, "fds").await, ["fd 9 closed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runner_processes_share_one_rate_limit_and_say_when_the_queue_is_paused() {
    let server = RedisServer::start();
    let store = Store::open(server.url()).unwrap();
    let mut conn = store.clone();
    for i in 0..7 {
        enqueue(&store, &format!("r{i}"), "ok").await;
    }
    let args = |name: &'static str| {
        [
            "--shell",
            "true",
            "--rate-limit",
            "3/1m",
            "--log-format",
            "json",
            "--consumer",
            name,
        ]
    };
    let a = runner(&server, &args("a"));
    let b = runner(&server, &args("b"));
    let succeeded = async || {
        Job::count_by_status(&mut store.clone(), JobStatus::Succeeded)
            .await
            .unwrap()
    };
    wait_for("three jobs ran", async || succeeded().await == 3).await;
    // The window is a minute: both runners ask, neither starts another.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(succeeded().await, 3);
    assert_eq!(Job::count_by_status(&mut conn, JobStatus::Queued).await.unwrap(), 4);
    // A pause is said once by each runner.
    let q = repobox_orm::Queue::new(JOBS_STREAM, JOBS_GROUP);
    assert!(q.pause(&mut conn).await.unwrap());
    // Noticed within a read's block (1 s) and a pause check (250 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(&a, "TERM");
    signal(&b, "TERM");
    for out in [finish(a).await, finish(b).await] {
        assert!(out.status.success(), "{out:?}");
        let log = json_log(&out);
        assert_eq!(
            said(&log, "queue paused: taking no new jobs; running ones finish").len(),
            1,
            "{log:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_empty_stops_the_runner_once_the_queue_is_done() {
    let server = RedisServer::start();
    let store = Store::open(server.url()).unwrap();
    for i in 0..3 {
        enqueue(&store, &format!("u{i}"), "ok").await;
    }
    let r = runner(&server, &["--shell", "true", "--until-empty", "--json"]);
    let out = finish(r).await;
    assert!(out.status.success(), "{out:?}");
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["succeeded"], 3, "{stats}");
    assert!(said(&json_log(&out), "the queue is empty; draining").len() == 1);
}

/// One scrape of `/metrics`, parsed by a Prometheus text-format parser.
fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let (code, body) = get(addr, "/metrics").expect("a scrape");
    assert_eq!(code, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus' text format")
}

/// The value of the sample `metric` whose labels include `labels`.
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

/// `--metrics-addr` serves Prometheus' text format: its counters and
/// histograms move as jobs run, its gauges say what Redis holds, and a
/// scrape while Redis is gone still answers, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_jobs_in_prometheus_text_format() {
    let mut server = RedisServer::start();
    let store = Store::open(server.url().as_str()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job_sh = script(dir.path(), "if [ \"$MODE\" = fail ]; then exit 3; fi");
    let addr = format!("127.0.0.1:{}", RedisServer::free_port());
    let runner = runner(
        &server,
        &[
            "--exec",
            job_sh.to_str().unwrap(),
            "--metrics-addr",
            &addr,
            "--max-deliveries",
            "1",
        ],
    );
    wait_for_code(&addr, "/metrics", 200).await;
    let first = scrape(&addr);
    assert_eq!(sample(&first, "repobox_queue_up", &[]), Some(1.0));
    assert_eq!(
        sample(&first, "repobox_jobs_started_total", &[]),
        None,
        "nothing ran yet"
    );
    for (id, mode) in [("m1", "ok"), ("m2", "ok"), ("m3", "fail")] {
        enqueue(&store, id, mode).await;
    }
    // An entry naming no job: dead-lettered at its first delivery.
    let _: String = repobox_orm::redis::cmd("XADD")
        .arg("jobs:stream")
        .arg("*")
        .arg("job_id")
        .arg("nobody")
        .query_async(&mut store.clone())
        .await
        .unwrap();
    wait_for("three jobs over and a dead letter", async || {
        let m = scrape(&addr);
        sample(&m, "repobox_jobs_finished_total", &[("outcome", "succeeded")]) == Some(2.0)
            && sample(&m, "repobox_jobs_finished_total", &[("outcome", "failed")]) == Some(1.0)
            && sample(&m, "repobox_jobs_dead_lettered_total", &[]) == Some(1.0)
    })
    .await;
    let m = scrape(&addr);
    let queue = ("queue", "jobs:stream");
    assert_eq!(sample(&m, "repobox_jobs_started_total", &[queue]), Some(3.0));
    assert_eq!(
        sample(&m, "repobox_job_duration_seconds", &[queue, ("outcome", "succeeded")]),
        Some(2.0)
    );
    assert_eq!(sample(&m, "repobox_job_queue_wait_seconds", &[queue]), Some(3.0));
    assert_eq!(sample(&m, "repobox_jobs", &[("status", "succeeded")]), Some(2.0));
    assert_eq!(sample(&m, "repobox_jobs", &[("status", "failed")]), Some(1.0));
    assert_eq!(sample(&m, "repobox_queue_consumers", &[("level", "normal")]), Some(1.0));
    assert_eq!(sample(&m, "repobox_queue_waiting", &[("level", "normal")]), Some(0.0));
    assert_eq!(
        sample(&m, "repobox_queue_dead_letters", &[("level", "normal")]),
        Some(1.0)
    );
    // Each end is an `update_if_and_ack`, or goes with the read of the
    // next job in a `take`.
    let ends: f64 = ["update_if_and_ack", "take"]
        .iter()
        .filter_map(|op| {
            sample(
                &m,
                "repobox_operation_duration_seconds",
                &[("model", "Job"), ("op", op)],
            )
        })
        .sum();
    assert!(ends >= 3.0, "{ends}");
    assert!(
        m.docs.contains_key("repobox_jobs_finished_total"),
        "every metric has its help"
    );
    // Redis goes away: the scrape still answers, and says so.
    server.kill();
    let gone = scrape(&addr);
    assert_eq!(sample(&gone, "repobox_queue_up", &[]), Some(0.0));
    assert_eq!(sample(&gone, "repobox_jobs_started_total", &[queue]), Some(3.0));
    server.restart();
    signal(&runner, "TERM");
    assert!(finish(runner).await.status.success());
}
