//! `repobox migrate`: the models' migration run by the binary, killed with
//! SIGKILL at random points while the application writes, and resumed, on
//! one server and on a cluster; Ctrl-C; `list`; the dry run; `--json`.

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;
use repobox_models::{Job, JobPatch};
use repobox_orm::Store;
use repobox_orm::testing::{RedisCluster, RedisServer};

const NAME: &str = "2026-12-job-exit-code";

fn repobox(url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_repobox"));
    cmd.args(args)
        .env("REDIS_URL", url)
        .env("REPOBOX_LOG", "error")
        .stdin(Stdio::null());
    cmd
}

fn output(url: &str, args: &[&str]) -> Output {
    repobox(url, args).output().expect("run repobox")
}

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `n` jobs as the code before the rename wrote them: the exit code under `exit`.
async fn old_jobs(conn: &mut Store, n: u64) {
    let jobs: Vec<Job> = (0..n)
        .map(|i| {
            let mut job = Job::new(
                format!("j{i}"),
                format!("u{}", i % 50),
                "https://example.com/r.git",
                1_000 + i as i64,
            );
            job.exit_code = Some((i % 7) as i32);
            job
        })
        .collect();
    for chunk in jobs.chunks(1_000) {
        for r in Job::create_many(conn, chunk).await.unwrap() {
            r.unwrap();
        }
    }
    let tasks: Vec<_> = (0..4u64)
        .map(|w| {
            let mut conn = conn.clone();
            tokio::spawn(async move {
                for i in (w..n).step_by(4) {
                    let key = format!("job:j{i}");
                    let _: () = conn.hset(&key, "exit", (i % 7).to_string()).await.unwrap();
                    let _: () = conn.hdel(&key, "exit_code").await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runs_resume_and_the_result_is_exact_on_one_server() {
    let server = RedisServer::start();
    killed_and_resumed(server.url(), Store::open(server.url()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runs_resume_and_the_result_is_exact_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    killed_and_resumed(cluster.url(), cluster.store()).await;
}

async fn killed_and_resumed(url: String, mut conn: Store) {
    const N: u64 = 20_000;
    old_jobs(&mut conn, N).await;
    let dry = json_of(&output(&url, &["--json", "migrate", "run", NAME, "--dry-run"]));
    assert_eq!(dry["end"], "dry_run");
    assert_eq!(dry["steps"][0]["changed"], N, "{dry}");

    // The application writes the whole time: new exit codes, deletes.
    let last: Arc<Mutex<HashMap<u64, Option<i32>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let (mut conn, last, stop) = (conn.clone(), last.clone(), stop.clone());
            tokio::spawn(async move {
                let mut x = 0x2545_f491_4f6c_dd1d_u64 + w;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Each writer its own jobs: `last` is exact.
                    let i = w + 2 * (x % (N / 2));
                    if last.lock().unwrap().get(&i) == Some(&None) {
                        continue;
                    }
                    let id = format!("j{i}");
                    if x.is_multiple_of(7) {
                        Job::delete(&mut conn, &id).await.unwrap();
                        last.lock().unwrap().insert(i, None);
                    } else {
                        let code = 100 + (x % 50) as i32;
                        let patch = JobPatch {
                            exit_code: Some(Some(code)),
                            ..Default::default()
                        };
                        Job::update(&mut conn, &id, &patch).await.unwrap();
                        last.lock().unwrap().insert(i, Some(code));
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();

    // Killed at points spread over a run, four times. At 5,000 keys a
    // second the four runs (2.5 s between them) cannot get through the
    // 20,000 keys however fast the machine.
    for (k, after) in [250u64, 700, 450, 1_100].into_iter().enumerate() {
        let mut child = repobox(&url, &["migrate", "run", NAME, "--rate", "5000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(after)).await;
        let finished = child.try_wait().unwrap();
        assert!(finished.is_none(), "run {k} ended before its kill: slow it down");
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let list = json_of(&output(&url, &["--json", "migrate", "list"]));
    let ours = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == NAME)
        .unwrap()
        .clone();
    assert_eq!(ours["state"]["state"], "in_progress", "{list}");

    let done = output(&url, &["--json", "migrate", "run", NAME]);
    assert!(
        done.status.success(),
        "{:?}\n{}\n{}",
        done.status,
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let report = json_of(&done);
    assert_eq!(
        (report["end"].as_str(), report["resumed"].as_bool()),
        (Some("finished"), Some(true)),
        "{report}"
    );
    // The checkpoint counts every key once, and the killed runs' last
    // batches again at most: no run started over.
    let looked = report["steps"][0]["looked"].as_u64().unwrap();
    assert!(looked <= N + 4 * 1_000, "{report}");
    assert!(report["steps"][0]["changed"].as_u64().unwrap() <= N, "{report}");
    assert_eq!(report["verification"][0]["entity"], "Job", "{report}");

    let last = last.lock().unwrap().clone();
    let mut hashes: Vec<HashMap<String, String>> = Vec::with_capacity(N as usize);
    for chunk in (0..N).collect::<Vec<_>>().chunks(1_000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.hgetall(format!("job:j{i}"));
        }
        let got: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await.unwrap();
        hashes.extend(got);
    }
    for (i, fields) in (0..N).zip(hashes) {
        let key = format!("job:j{i}");
        let want = match last.get(&i) {
            Some(None) => {
                assert!(fields.is_empty(), "{key} was deleted and came back");
                continue;
            }
            Some(Some(code)) => *code,
            None => (i % 7) as i32,
        };
        assert_eq!(fields.get("exit_code"), Some(&want.to_string()), "{key}: {fields:?}");
        assert!(!fields.contains_key("exit"), "{key}: {fields:?}");
    }
    let again = json_of(&output(&url, &["--json", "migrate", "run", NAME]));
    assert_eq!(again["end"], "already_done");
    let index = output(&url, &["index", "check"]);
    assert!(index.status.success(), "{}", String::from_utf8_lossy(&index.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_after_the_batch_in_progress_with_exit_code_5() {
    let server = RedisServer::start();
    let url = server.url();
    let mut conn = Store::open(&url).unwrap();
    old_jobs(&mut conn, 5_000).await;
    let child = repobox(&url, &["migrate", "run", NAME, "--rate", "2000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    nix_kill(child.id(), "INT");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("stopped: run it again to resume"), "{stdout}");
    let left: u64 = {
        let mut n = 0;
        for i in 0..5_000 {
            n += u64::from(conn.hexists::<_, _, bool>(format!("job:j{i}"), "exit").await.unwrap());
        }
        n
    };
    assert!(left > 0 && left < 5_000, "{left}");
    let out = output(&url, &["migrate", "run", NAME]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("finished (resumed)"), "{stdout}");
    assert!(stdout.contains("verified Job: every index exact"), "{stdout}");
    let unknown = output(&url, &["--json", "migrate", "run", "no-such"]);
    assert_eq!(unknown.status.code(), Some(1));
    let err: serde_json::Value = serde_json::from_slice(&unknown.stderr).unwrap();
    assert!(err["error"].as_str().unwrap().contains(NAME), "{err}");
}

fn nix_kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}
