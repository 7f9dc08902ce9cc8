//! The `repobox` binary against a test-kit server.

use std::process::{Command, Output};

use repobox_orm::testing::RedisServer;

fn repobox(server: Option<&RedisServer>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_repobox"));
    cmd.args(args).env_remove("REDIS_URL").env("REPOBOX_LOG", "error");
    if let Some(server) = server {
        cmd.env("REDIS_URL", server.url());
    }
    cmd.output().expect("run repobox")
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).expect("--json prints JSON")
}

#[test]
fn demo_runs_the_whole_flow_and_the_read_commands_agree() {
    let server = RedisServer::start();
    let out = ok(&repobox(Some(&server), &["demo", "--jobs", "3"]));
    assert!(out.contains("3. Enqueued 3 jobs"), "{out}");
    assert!(out.contains("2 succeeded, 1 failed"), "{out}");
    assert!(out.contains("tests failed: 1 of 12"), "{out}");
    let user = out
        .lines()
        .find_map(|l| l.strip_prefix("1. Created user "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the demo names its user")
        .to_owned();

    let list = json(&repobox(Some(&server), &["jobs", "list", "--user", &user, "--json"]));
    assert_eq!(list["total"], 3);
    let jobs = list["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3);
    let statuses: Vec<&str> = jobs.iter().map(|j| j["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["failed", "succeeded", "succeeded"], "newest first");
    let table = ok(&repobox(Some(&server), &["jobs", "list", "--user", &user]));
    assert!(table.starts_with("ID") && table.contains("3 of 3 jobs"), "{table}");

    let id = jobs[0]["id"].as_str().unwrap();
    let show = json(&repobox(Some(&server), &["jobs", "show", id, "--json"]));
    assert_eq!(show["exit_code"], 1);
    assert_eq!(show["output_lines"], 6);
    let tail = ok(&repobox(Some(&server), &["jobs", "tail", id]));
    assert_eq!(tail.lines().count(), 6, "{tail}");

    let stats = json(&repobox(Some(&server), &["queue", "stats", "--json"]));
    assert_eq!(stats["length"], 3);
    assert_eq!(stats["pending"], 0);
    assert_eq!(stats["dead_letters"], 0);
    assert!(stats["consumers"].as_array().unwrap().len() == 1);
    let dead = json(&repobox(Some(&server), &["queue", "dead", "--json"]));
    assert_eq!(dead, serde_json::json!([]));
    // One report per index of every model (User, Session and Job have one each).
    for args in [
        &["index", "--json"][..],
        &["index", "check", "--json"],
        &["index", "repair", "--json"],
    ] {
        let reports = json(&repobox(Some(&server), args));
        let reports = reports.as_array().unwrap();
        assert_eq!(reports.len(), 3, "{args:?}");
        for r in reports {
            let r = &r["report"];
            assert!(r["keys"].as_u64().unwrap() >= 1, "{r}");
            assert_eq!(
                (&r["gone"], &r["mismatched"], &r["bad"], &r["skipped"]),
                (&0.into(), &0.into(), &0.into(), &0.into()),
                "{r}"
            );
        }
    }
}

#[test]
fn demo_starts_its_own_redis_when_none_answers() {
    let dead = format!("redis://127.0.0.1:{}/", RedisServer::free_port());
    let out = ok(&repobox(None, &["--local-url", &dead, "demo", "--jobs", "2"]));
    assert!(out.contains("started a throw-away redis-server"), "{out}");
    assert!(out.contains("2 succeeded, 0 failed"), "{out}");
}

#[test]
fn errors_are_one_line_and_a_non_zero_exit() {
    let server = RedisServer::start();
    let out = repobox(Some(&server), &["jobs", "show", "nope"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim(), "error: no job \"nope\"");
    let out = repobox(Some(&server), &["jobs", "show", "a:b"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.starts_with("error: invalid key part"),
        "{stderr}"
    );
    let dead = format!("redis://127.0.0.1:{}/", RedisServer::free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(["queue", "stats"])
        .env("REDIS_URL", &dead)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: cannot reach Redis at {dead}: ")),
        "{stderr}"
    );
}
