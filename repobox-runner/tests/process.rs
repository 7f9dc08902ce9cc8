//! `ProcessHandler` against a real redis-server and real child processes:
//! small shell scripts written by each test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use repobox_models::*;
use repobox_orm::Store;
use repobox_orm::testing::RedisServer;
use repobox_runner::{JobHandler, ProcessHandler, RunStats, Runner, RunnerConfig, RunnerControl};

/// A server, a store, and a directory for the test's scripts and files.
struct Bench {
    _server: RedisServer,
    store: Store,
    dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Self {
        let server = RedisServer::start();
        let store = Store::open(server.url().as_str()).unwrap();
        Bench {
            _server: server,
            store,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes an executable `sh` script.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `jobs` with `handler` until each is over, then drains the runner.
    async fn run(&self, handler: impl JobHandler, jobs: &[Job]) -> RunStats {
        let control = RunnerControl::new();
        let runner = Runner::new(self.store.clone(), handler, config());
        let run = tokio::spawn(runner.run_with(control.clone()));
        for job in jobs {
            Job::create_and_enqueue(&mut self.store.clone(), job, now_millis())
                .await
                .unwrap();
        }
        for job in jobs {
            self.wait_until(&job.id, |j| j.status.is_final()).await;
        }
        control.drain();
        run.await.unwrap().unwrap()
    }

    async fn job(&self, id: &str) -> Job {
        Job::get(&mut self.store.clone(), id).await.unwrap().unwrap()
    }

    async fn output(&self, id: &str) -> Vec<String> {
        Job::output(&mut self.store.clone(), id, OutputRange::ALL)
            .await
            .unwrap()
    }

    /// Waits for the job's first output line: its program has started.
    async fn wait_for_output(&self, id: &str) {
        self.wait_until(id, |j| j.status == JobStatus::Running).await;
        tokio::time::timeout(Duration::from_secs(30), async {
            while self.output(id).await.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no output from {id} within 30 s"));
    }

    async fn wait_until(&self, id: &str, done: impl Fn(&Job) -> bool) -> Job {
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Ok(Some(job)) = Job::get(&mut self.store.clone(), id).await
                    && done(&job)
                {
                    return job;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("job {id} did not get there within 60 s"))
    }
}

fn config() -> RunnerConfig {
    RunnerConfig::new("test-runner")
        .block(Duration::from_millis(50))
        .claim_interval(Duration::from_millis(100))
        .min_idle(Duration::from_secs(5))
        .shutdown_grace(Duration::from_secs(10))
}

fn job(id: &str) -> Job {
    Job::new(id, "u1", format!("https://example.com/{id}.git"), now_millis())
}

fn job_with_env(id: &str, env: &[(&str, &str)]) -> Job {
    let mut job = job(id);
    job.env = env.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    job
}

/// Whether a process is gone (or a zombie nobody reaped yet: it runs nothing).
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(") ").next().is_some_and(|rest| rest.starts_with('Z')),
    }
}

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_streams_stdout_and_stderr_in_order_and_its_exit_code_decides() {
    let bench = Bench::new();
    let workdirs = bench.path("work");
    std::fs::create_dir(&workdirs).unwrap();
    let script = bench.script(
        "build.sh",
        r#"pwd
stat -c %a . >&2
echo "out 1 for $REPOBOX_JOB_ID"
echo "err 2" >&2
echo "out 3"
read line && echo "stdin was open"
test "$1" = "--flag" || echo "no argument"
exit "$CODE""#,
    );
    let handler = ProcessHandler::exec(&script, ["--flag"]).workdir(&workdirs);
    let stats = bench
        .run(
            handler,
            &[
                job_with_env("fails", &[("CODE", "3")]),
                job_with_env("passes", &[("CODE", "0")]),
            ],
        )
        .await;
    assert_eq!((stats.failed, stats.succeeded), (1, 1), "{stats:?}");

    let failed = bench.job("fails").await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.exit_code, Some(3));
    assert_eq!(failed.error, None);
    let lines = bench.output("fails").await;
    assert_eq!(&lines[1..], ["700", "out 1 for fails", "err 2", "out 3"], "{lines:?}");
    // A fresh directory under --workdir, removed afterwards.
    let cwd = Path::new(&lines[0]);
    assert!(cwd.starts_with(&workdirs), "{cwd:?}");
    assert!(!cwd.exists(), "the working directory is removed");
    let passed = bench.job("passes").await;
    assert_eq!((passed.status, passed.exit_code), (JobStatus::Succeeded, Some(0)));
    assert_ne!(
        bench.output("passes").await[0],
        lines[0],
        "each job has a directory of its own"
    );
    assert_eq!(std::fs::read_dir(&workdirs).unwrap().count(), 0);

    // --keep-workdir keeps it.
    let handler = ProcessHandler::exec(&script, ["--flag"])
        .workdir(&workdirs)
        .keep_workdir(true);
    bench.run(handler, &[job_with_env("kept", &[("CODE", "0")])]).await;
    assert!(Path::new(&bench.output("kept").await[0]).is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_lines_are_stored_in_far_fewer_round_trips() {
    let bench = Bench::new();
    let script = bench.script("flood.sh", "seq 1 200000");
    let rpush_calls = |store: Store| async move {
        let info: String = repobox_orm::redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut store.clone())
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_rpush:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    let before = rpush_calls(bench.store.clone()).await;
    let all = ProcessHandler::exec(&script, [""; 0]).max_output_lines(200_000);
    bench.run(all, &[job("flood")]).await;
    let writes = rpush_calls(bench.store.clone()).await - before;
    let lines = bench.output("flood").await;
    assert_eq!(lines.len(), 200_000);
    assert_eq!((lines[0].as_str(), lines[199_999].as_str()), ("1", "200000"));
    assert!(lines.iter().enumerate().all(|(i, l)| *l == (i + 1).to_string()));
    eprintln!("{writes} writes for 200,000 lines");
    assert!(writes <= 2_000, "{writes} writes for 200,000 lines");
    assert_eq!(bench.job("flood").await.status, JobStatus::Succeeded);

    // Capped: the first lines, then one that says how many were dropped.
    let capped = ProcessHandler::exec(&script, [""; 0]).max_output_lines(1_000);
    bench.run(capped, &[job("capped")]).await;
    let lines = bench.output("capped").await;
    assert_eq!(lines.len(), 1_001);
    assert_eq!(lines[999], "1000");
    assert_eq!(
        lines[1_000],
        "[repobox: 199000 more lines dropped: the output is capped at 1000 lines]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_line_is_cut_and_invalid_utf8_replaced() {
    let bench = Bench::new();
    let script = bench.script(
        "wide.sh",
        r#"head -c 1048576 /dev/zero | tr '\0' 'x'
echo
printf 'bad \377\376 bytes\n'
printf 'no newline at the end'"#,
    );
    bench.run(ProcessHandler::exec(&script, [""; 0]), &[job("wide")]).await;
    let lines = bench.output("wide").await;
    assert_eq!(
        lines.len(),
        3,
        "{:?}",
        lines.iter().map(|l| l.len()).collect::<Vec<_>>()
    );
    let cut = 1_048_576 - 8 * 1024;
    assert_eq!(
        lines[0],
        format!("{} [repobox: line cut, {cut} more bytes dropped]", "x".repeat(8 * 1024))
    );
    assert_eq!(lines[1], "bad \u{fffd}\u{fffd} bytes");
    assert_eq!(lines[2], "no newline at the end");
    assert_eq!(bench.job("wide").await.status, JobStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_stop_the_whole_process_group_with_sigterm_then_sigkill() {
    let bench = Bench::new();
    // Sleeps past the timeout; ends on SIGTERM.
    let sleeper = bench.script("sleeper.sh", "echo started\nsleep 30\necho never");
    // Ignores SIGTERM (and so do its children): only SIGKILL ends it.
    let stubborn = bench.script(
        "stubborn.sh",
        "trap '' TERM\necho $$ > \"$PIDFILE\"\necho started\nwhile true; do sleep 0.1; done",
    );
    // Leaves a grandchild in the background, then sleeps.
    let parent = bench.script(
        "parent.sh",
        "sleep 300 &\necho $! > \"$PIDFILE\"\necho started\nsleep 30",
    );
    let stopped = |script: &Path| {
        ProcessHandler::exec(script, [""; 0])
            .timeout(Duration::from_millis(500))
            .kill_grace(Duration::from_millis(700))
    };
    bench.run(stopped(&sleeper), &[job("sleeper")]).await;
    let pidfile = bench.path("stubborn.pid");
    let env = [("PIDFILE", pidfile.to_str().unwrap())];
    bench.run(stopped(&stubborn), &[job_with_env("stubborn", &env)]).await;
    let grandchild = bench.path("grandchild.pid");
    let env = [("PIDFILE", grandchild.to_str().unwrap())];
    bench.run(stopped(&parent), &[job_with_env("parent", &env)]).await;

    for id in ["sleeper", "stubborn", "parent"] {
        let job = bench.job(id).await;
        assert_eq!(job.status, JobStatus::Failed, "{id}");
        assert_eq!(job.error.as_deref(), Some("timeout"), "{id}");
        let lines = bench.output(id).await;
        assert_eq!(lines[0], "started", "{id}: {lines:?}");
        assert!(!lines.iter().any(|l| l == "never"), "{id}: {lines:?}");
    }
    assert_eq!(
        bench.output("sleeper").await[1],
        "[repobox: timed out after 0.5 s; its processes ended on SIGTERM]"
    );
    assert_eq!(
        bench.output("stubborn").await[1],
        "[repobox: timed out after 0.5 s; its processes got SIGKILL after the 0.7 s grace]"
    );
    assert!(is_gone(read_pid(&pidfile)), "the process that ignored SIGTERM is gone");
    assert!(is_gone(read_pid(&grandchild)), "the grandchild is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_a_program_leaves_behind_are_stopped_and_signals_are_reported() {
    let bench = Bench::new();
    let leaver = bench.script("leaver.sh", "sleep 300 &\necho $! > \"$PIDFILE\"\necho done");
    let pidfile = bench.path("left.pid");
    let killed = bench.script("killed.sh", "echo bye\nkill -KILL $$");
    let handler = |s: &Path| ProcessHandler::exec(s, [""; 0]).kill_grace(Duration::from_secs(1));
    let env = [("PIDFILE", pidfile.to_str().unwrap())];
    bench.run(handler(&leaver), &[job_with_env("leaver", &env)]).await;
    bench.run(handler(&killed), &[job("killed")]).await;

    let leaver = bench.job("leaver").await;
    assert_eq!((leaver.status, leaver.exit_code), (JobStatus::Succeeded, Some(0)));
    assert!(is_gone(read_pid(&pidfile)), "what the program left running is stopped");
    assert_eq!(
        bench.output("leaver").await,
        ["done", "[repobox: stopped the processes the program left running]"]
    );
    let killed = bench.job("killed").await;
    assert_eq!(killed.status, JobStatus::Failed);
    assert_eq!(killed.error.as_deref(), Some("killed by SIGKILL"));
    assert_eq!(killed.exit_code, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_is_stopped_and_ends_cancelled() {
    let bench = Bench::new();
    let script = bench.script(
        "long.sh",
        "trap 'echo got TERM; exit 143' TERM\necho started\nwhile true; do sleep 0.1; done",
    );
    let control = RunnerControl::new();
    let handler = ProcessHandler::exec(&script, [""; 0]).kill_grace(Duration::from_secs(5));
    let run = tokio::spawn(Runner::new(bench.store.clone(), handler, config()).run_with(control.clone()));
    Job::create_and_enqueue(&mut bench.store.clone(), &job("long"), now_millis())
        .await
        .unwrap();
    bench.wait_for_output("long").await;
    assert_eq!(
        Job::cancel(&mut bench.store.clone(), "long", now_millis())
            .await
            .unwrap(),
        Cancel::Requested
    );
    let job = bench.wait_until("long", |j| j.status.is_final()).await;
    assert_eq!(job.status, JobStatus::Cancelled);
    // (`sh` may also say that its `sleep` was terminated.)
    let lines = bench.output("long").await;
    assert_eq!(lines[0], "started");
    assert!(lines.contains(&"got TERM".to_owned()), "{lines:?}");
    assert_eq!(
        lines.last().unwrap(),
        "[repobox: cancelled; its processes ended on SIGTERM]"
    );
    control.drain();
    let stats = run.await.unwrap().unwrap();
    assert_eq!(stats.cancelled, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_may_not_set_names_that_steer_the_process() {
    let bench = Bench::new();
    let ran = bench.path("ran");
    std::fs::create_dir(&ran).unwrap();
    let script = bench.script("mark.sh", "touch \"$1/$REPOBOX_JOB_ID\"\necho ran");
    let code = "the runner sets it, or it can make programs run code";
    let cases: [(&str, &str, &str); 8] = [
        ("preload", "LD_PRELOAD", code),
        ("path", "PATH", code),
        ("lower", "lower", "names must match [A-Z_][A-Z0-9_]*"),
        ("equals", "A=B", "names must match [A-Z_][A-Z0-9_]*"),
        ("own", "REPOBOX_JOB_ID", code),
        ("bash", "BASH_ENV", code),
        ("git", "GIT_CONFIG_PARAMETERS", code),
        ("denied", "AWS_SECRET", "the runner's --deny-env refuses it"),
    ];
    let jobs: Vec<Job> = cases
        .iter()
        .map(|(id, name, _)| job_with_env(id, &[("OK", "1"), (name, "s3cr3t-value")]))
        .chain([job_with_env("fine", &[("OK", "1"), ("CI", "true")])])
        .collect();
    let handler = ProcessHandler::exec(&script, [ran.to_str().unwrap()]).deny_env(["AWS_*"]);
    let stats = bench.run(handler, &jobs).await;
    assert_eq!((stats.failed, stats.succeeded, stats.retried), (8, 1, 0), "{stats:?}");
    for (id, name, reason) in cases {
        let job = bench.job(id).await;
        assert_eq!(job.status, JobStatus::Failed, "{id}");
        let error = job.error.unwrap();
        assert_eq!(error, format!("the job's env may not set \"{name}\": {reason}"));
        assert!(!ran.join(id).exists(), "{id} was not started");
        let output = bench.output(id).await;
        assert_eq!(output, [format!("[repobox: not started: {error}]")]);
        assert!(!output[0].contains("s3cr3t"));
    }
    assert!(ran.join("fine").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_fields_never_become_shell_code() {
    let bench = Bench::new();
    let workdirs = bench.path("work");
    std::fs::create_dir(&workdirs).unwrap();
    let handler = ProcessHandler::shell(r#"echo "url=$REPOBOX_REPO_URL"; echo note=$NOTE; ls -A"#)
        .workdir(&workdirs)
        .keep_workdir(true);
    let mut hostile = job_with_env("hostile", &[("NOTE", "`touch pwned-env`;touch pwned-env2")]);
    hostile.repo_url = "$(touch pwned-url); touch pwned-semicolon; rm -rf .".to_owned();
    bench.run(handler, &[hostile]).await;
    let lines = bench.output("hostile").await;
    assert_eq!(
        lines,
        [
            "url=$(touch pwned-url); touch pwned-semicolon; rm -rf .",
            "note=`touch pwned-env`;touch pwned-env2",
        ],
        "nothing ran, and `ls -A` found nothing in the working directory"
    );
    assert_eq!(bench.job("hostile").await.status, JobStatus::Succeeded);
    let dirs: Vec<_> = std::fs::read_dir(&workdirs).unwrap().collect();
    assert_eq!(dirs.len(), 1);
    let made: Vec<_> = std::fs::read_dir(dirs[0].as_ref().unwrap().path()).unwrap().collect();
    assert!(made.is_empty(), "{made:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_timed_out_stays_failed_when_the_runner_stops_during_its_grace() {
    let bench = Bench::new();
    let script = bench.script("deaf.sh", "trap '' TERM\necho started\nwhile true; do sleep 0.1; done");
    let control = RunnerControl::new();
    let handler = ProcessHandler::exec(&script, [""; 0])
        .timeout(Duration::from_millis(300))
        .kill_grace(Duration::from_secs(3));
    let run = tokio::spawn(Runner::new(bench.store.clone(), handler, config()).run_with(control.clone()));
    Job::create_and_enqueue(&mut bench.store.clone(), &job("deaf"), now_millis())
        .await
        .unwrap();
    bench.wait_for_output("deaf").await;
    // The timeout has fired; the runner stops while the job's grace runs.
    tokio::time::sleep(Duration::from_secs(1)).await;
    control.stop();
    let stats = run.await.unwrap().unwrap();
    let job = bench.job("deaf").await;
    assert_eq!(
        (job.status, job.error.as_deref()),
        (JobStatus::Failed, Some("timeout")),
        "{stats:?}"
    );
    assert_eq!(stats.released, 0);
}
