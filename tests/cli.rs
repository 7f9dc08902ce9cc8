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

/// Writes a job hash and its `jobs:user:<user_id>` entry with plain commands,
/// as the web app or an operator would, not through repobox.
fn write_job_as_another_client(conn: &mut redis::Connection, fields: &[(&str, &str)]) {
    let field = |name: &str| fields.iter().find(|(f, _)| *f == name).map(|(_, v)| *v).unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("job:{}", field("id")))
        .arg(fields)
        .query(conn)
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(format!("jobs:user:{}", field("user_id")))
        .arg(field("created_at"))
        .arg(field("id"))
        .query(conn)
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(format!("jobs:status:{}", field("status")))
        .arg(field("created_at"))
        .arg(field("id"))
        .query(conn)
        .unwrap();
}

#[test]
fn demo_runs_the_whole_flow_and_the_read_commands_agree() {
    let server = RedisServer::start();
    let out = ok(&repobox(Some(&server), &["demo", "--jobs", "3", "--keep"]));
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

    // The demo ran on a stream of its own: the shared one was not touched,
    // and reading its stats does not create it.
    let stats = json(&repobox(Some(&server), &["queue", "stats", "--json"]));
    assert_eq!(stats["length"], 0);
    assert_eq!(stats["pending"], 0);
    assert_eq!(stats["dead_letters"], 0);
    assert!(stats["consumers"].as_array().unwrap().is_empty());
    let mut conn = server.client().get_connection().unwrap();
    let exists: bool = redis::cmd("EXISTS").arg("jobs:stream").query(&mut conn).unwrap();
    assert!(!exists, "a read-only command wrote");
    let dead = json(&repobox(Some(&server), &["queue", "dead", "--json"]));
    assert_eq!(dead, serde_json::json!([]));
    // One report per index of every model (User and Session have one each,
    // Job three: by user, by status, and the delayed jobs, none here).
    for args in [
        &["index", "--json"][..],
        &["index", "check", "--json"],
        &["index", "repair", "--json"],
    ] {
        let reports = json(&repobox(Some(&server), args));
        let reports = reports.as_array().unwrap();
        assert_eq!(reports.len(), 5, "{args:?}");
        for r in reports {
            let r = &r["report"];
            let delayed = r["template"] == "jobs:delayed";
            assert!(r["keys"].as_u64().unwrap() >= u64::from(!delayed), "{r}");
            assert_eq!(
                (&r["gone"], &r["mismatched"], &r["bad"], &r["skipped"]),
                (&0.into(), &0.into(), &0.into(), &0.into()),
                "{r}"
            );
        }
    }
}

#[test]
fn demo_starts_its_own_redis_when_none_is_given() {
    let out = ok(&repobox(None, &["demo", "--jobs", "2"]));
    assert!(out.lines().next().unwrap().contains("throw-away redis-server"), "{out}");
    assert!(out.contains("2 succeeded, 0 failed"), "{out}");
}

#[test]
fn the_demo_touches_only_what_it_made() {
    let server = RedisServer::start();
    let mut conn = server.client().get_connection().unwrap();
    // Another application's job, queued on the shared stream.
    let _: () = redis::cmd("HSET")
        .arg("job:prod-1")
        .arg(&[
            ("id", "prod-1"),
            ("user_id", "acme"),
            ("repo_url", "https://github.com/acme/prod.git"),
            ("status", "queued"),
            ("created_at", "1"),
        ])
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg(&["CREATE", "jobs:stream", "runners", "0", "MKSTREAM"])
        .query(&mut conn)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&[
            "jobs:stream",
            "*",
            "job_id",
            "prod-1",
            "user_id",
            "acme",
            "enqueued_at",
            "1",
        ])
        .query(&mut conn)
        .unwrap();
    let keys_before: std::collections::BTreeSet<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    let dump = |conn: &mut redis::Connection| -> Vec<Vec<u8>> {
        ["job:prod-1", "jobs:stream"]
            .iter()
            .map(|k| redis::cmd("DUMP").arg(*k).query(conn).unwrap())
            .collect()
    };
    let before = dump(&mut conn);

    let out = ok(&repobox(Some(&server), &["demo", "--jobs", "3"]));
    assert!(out.contains("namespace of the demo's own"), "{out}");
    assert!(out.contains("2 succeeded, 1 failed"), "{out}");
    assert_eq!(
        dump(&mut conn),
        before,
        "the foreign job or the shared stream was touched"
    );
    let keys_after: std::collections::BTreeSet<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    assert_eq!(keys_after, keys_before, "the demo left keys behind");

    // With --keep, what it made stays, and still nothing else is touched.
    let out = ok(&repobox(Some(&server), &["demo", "--jobs", "1", "--keep"]));
    assert!(out.contains("Kept"), "{out}");
    assert_eq!(dump(&mut conn), before);
    let kept: Vec<String> = redis::cmd("KEYS").arg("job:demo-*").query(&mut conn).unwrap();
    assert!(!kept.is_empty());
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

#[test]
fn flags_at_their_limits_are_errors_not_panics() {
    let server = RedisServer::start();
    for args in [
        &[
            "jobs",
            "list",
            "--user",
            "u1",
            "--offset",
            "18446744073709551615",
            "--limit",
            "2",
        ][..],
        &[
            "jobs",
            "list",
            "--user",
            "u1",
            "--offset",
            "9223372036854775807",
            "--limit",
            "2",
        ],
        &["jobs", "list", "--user", "u1", "--limit", "18446744073709551615"],
    ] {
        let out = repobox(Some(&server), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: invalid page"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_bad_job_is_an_error_row_and_the_others_are_listed() {
    let server = RedisServer::start();
    let mut conn = server.client().get_connection().unwrap();
    for (id, at) in [("a", "1"), ("b", "2"), ("c", "3")] {
        write_job_as_another_client(
            &mut conn,
            &[
                ("id", id),
                ("user_id", "u1"),
                ("repo_url", "https://example.com/r.git"),
                ("status", "queued"),
                ("created_at", at),
            ],
        );
    }
    let _: () = redis::cmd("HSET")
        .arg("job:b")
        .arg("status")
        .arg("exploded")
        .query(&mut conn)
        .unwrap();
    let out = ok(&repobox(Some(&server), &["jobs", "list", "--user", "u1"]));
    assert!(
        out.lines().any(|l| l.starts_with("c ") && l.contains("queued")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("a ") && l.contains("queued")),
        "{out}"
    );
    let bad = out.lines().find(|l| l.contains("unreadable")).expect("an error row");
    assert!(bad.contains("job:b") && bad.contains("status"), "{bad}");
    let list = json(&repobox(Some(&server), &["jobs", "list", "--user", "u1", "--json"]));
    assert_eq!(list["jobs"].as_array().unwrap().len(), 2);
    assert!(list["errors"][0]["error"].as_str().unwrap().contains("job:b"));
}

#[test]
fn index_check_and_repair_leave_lookalike_keys_alone() {
    let server = RedisServer::start();
    let mut conn = server.client().get_connection().unwrap();
    let lookalikes = [
        ("SET", "user:email:verify:alice@x.io", vec!["token"]),
        ("ZADD", "jobs:user:alice:archive", vec!["1", "j-old"]),
        ("SADD", "sessions:user:alice:revoked", vec!["s-old"]),
    ];
    for (cmd, key, args) in &lookalikes {
        let _: () = redis::cmd(cmd).arg(*key).arg(args).query(&mut conn).unwrap();
    }
    let dump =
        |conn: &mut redis::Connection, key: &str| -> Vec<u8> { redis::cmd("DUMP").arg(key).query(conn).unwrap() };
    let before: Vec<Vec<u8>> = lookalikes.iter().map(|(_, k, _)| dump(&mut conn, k)).collect();
    for args in [&["index", "--json"][..], &["index", "repair", "--json"]] {
        let reports = json(&repobox(Some(&server), args));
        let skipped: u64 = reports
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["report"]["skipped"].as_u64().unwrap())
            .sum();
        assert_eq!(skipped, 3, "{args:?}: {reports}");
    }
    let after: Vec<Vec<u8>> = lookalikes.iter().map(|(_, k, _)| dump(&mut conn, k)).collect();
    assert_eq!(after, before);
    let out = ok(&repobox(Some(&server), &["index"]));
    assert!(out.contains("User::by_email"), "{out}");
}

/// The reports of `index --json`-style output, summed per field and model.
fn report_sum(reports: &serde_json::Value, model: &str, field: &str) -> u64 {
    reports
        .as_array()
        .expect("one report per index")
        .iter()
        .filter(|r| r["model"] == model)
        .map(|r| r["report"][field].as_u64().unwrap())
        .sum()
}

#[test]
fn index_check_and_repair_count_everything_and_exit_3_on_findings() {
    let server = RedisServer::start();
    let mut conn = server.client().get_connection().unwrap();
    let hset = |conn: &mut redis::Connection, key: &str, fields: &[(&str, &str)]| {
        let _: () = redis::cmd("HSET").arg(key).arg(fields).query(conn).unwrap();
    };
    // Written by another client without their index entries: a user (no
    // email claim) and its session (no set entry), with the session's TTL.
    hset(
        &mut conn,
        "user:u1",
        &[
            ("id", "u1"),
            ("email", "one@x.io"),
            ("name", "One"),
            ("created_at", "5"),
        ],
    );
    let digest = "ab".repeat(32);
    hset(
        &mut conn,
        &format!("session:{digest}"),
        &[
            ("id", &digest),
            ("user_id", "u1"),
            ("user_created_at", "5"),
            ("created_at", "1"),
            ("expires_at", "99999999999999"),
        ],
    );
    let _: () = redis::cmd("PEXPIRE")
        .arg(format!("session:{digest}"))
        .arg(600_000)
        .query(&mut conn)
        .unwrap();
    // Two users holding one email: u2 owns the claim, u3 was written by hand.
    hset(
        &mut conn,
        "user:u2",
        &[
            ("id", "u2"),
            ("email", "dup@x.io"),
            ("name", "Two"),
            ("created_at", "5"),
        ],
    );
    let _: () = redis::cmd("SET")
        .arg("user:email:dup@x.io")
        .arg("u2")
        .query(&mut conn)
        .unwrap();
    hset(
        &mut conn,
        "user:u3",
        &[
            ("id", "u3"),
            ("email", "dup@x.io"),
            ("name", "Three"),
            ("created_at", "5"),
        ],
    );

    // check: every count in the table, a summary, and exit 3.
    let out = repobox(Some(&server), &["index"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("MISSING") && table.contains("CONFLICTS"), "{table}");
    assert!(table.contains("2 entr(y/ies) need a repair (create 2"), "{table}");
    assert!(table.contains("1 unique conflict(s)"), "{table}");
    assert!(
        table.contains("`user:u3` claims a unique value that `user:u2` holds"),
        "{table}"
    );
    let out = repobox(Some(&server), &["index", "check", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report_sum(&reports, "User", "missing"), 1);
    assert_eq!(report_sum(&reports, "User", "conflicts"), 1);
    assert_eq!(report_sum(&reports, "Session", "missing"), 1);

    // repair: says what it created, by kind; exit 3 for the conflict it leaves.
    let out = repobox(Some(&server), &["index", "repair"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("repaired 2 entr(y/ies): created 2, removed 0, re-scored 0"),
        "{said}"
    );
    assert!(
        said.contains("set indexes: created 1") && said.contains("unique indexes: created 1"),
        "{said}"
    );
    let owner: String = redis::cmd("GET").arg("user:email:one@x.io").query(&mut conn).unwrap();
    assert_eq!(owner, "u1");
    let owner: String = redis::cmd("GET").arg("user:email:dup@x.io").query(&mut conn).unwrap();
    assert_eq!(owner, "u2", "the holder keeps its value");
    // The set it created follows its sessions' TTL, as one repobox makes does.
    let ttl: i64 = redis::cmd("PTTL").arg("sessions:user:u1").query(&mut conn).unwrap();
    assert!(
        ttl > 0 && ttl <= 600_000,
        "the created set lives as long as its session (10 min), not the declared 7 days: {ttl}"
    );

    // Until a person settles the conflict, check keeps saying so.
    assert_eq!(repobox(Some(&server), &["index"]).status.code(), Some(3));
    let _: () = redis::cmd("DEL").arg("user:u3").query(&mut conn).unwrap();
    let out = ok(&repobox(Some(&server), &["index"]));
    assert!(out.contains("no entry needs a repair"), "{out}");
}

#[test]
fn the_cli_never_prints_a_password() {
    let dead = RedisServer::free_port();
    for url in [
        format!("redis://:TopSecretPW@127.0.0.1:{dead}"),
        format!("redis://app:TopSecretPW@127.0.0.1:{dead}/0"),
        "redis://:TopSecretPW@[not a url".to_owned(),
    ] {
        for args in [&["queue", "stats"][..], &["jobs", "list", "--user", "u1", "--json"]] {
            let out = Command::new(env!("CARGO_BIN_EXE_repobox"))
                .args(args)
                .env("REDIS_URL", &url)
                .env("REPOBOX_LOG", "trace")
                .output()
                .unwrap();
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!out.status.success());
            assert!(!all.contains("TopSecretPW"), "{url} {args:?}: {all}");
            assert!(
                all.contains("***") || all.contains("<unparsable>"),
                "{url} {args:?}: {all}"
            );
        }
    }
    let server = RedisServer::start_with(&["--requirepass", "s3cretPW"]);
    let url = format!("redis://:s3cretPW@127.0.0.1:{}/", server.port());
    let out = Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(["demo", "--jobs", "1"])
        .env("REDIS_URL", &url)
        .output()
        .unwrap();
    let stdout = ok(&out);
    assert!(stdout.contains("Using Redis at redis://:***@127.0.0.1"), "{stdout}");
    assert!(stdout.contains("session ") && stdout.contains("…"), "{stdout}");
    assert!(!stdout.contains("s3cretPW"), "{stdout}");
}

#[test]
fn stored_strings_cannot_steer_the_terminal_and_json_stays_exact() {
    let server = RedisServer::start();
    let mut conn = server.client().get_connection().unwrap();
    let hostile = "boom\u{1b}]0;pwned\u{7}\u{1b}[2J\r";
    write_job_as_another_client(
        &mut conn,
        &[
            ("id", "j1"),
            ("user_id", "u1"),
            ("repo_url", hostile),
            ("status", "failed"),
            ("created_at", "1"),
            ("error", hostile),
        ],
    );
    let _: () = redis::cmd("RPUSH")
        .arg("job:j1:output")
        .arg(hostile)
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("XADD")
        .arg("jobs:stream:dead")
        .arg("*")
        .arg(&[("job_id", "j1"), ("reason", hostile), ("deliveries", "5")])
        .query(&mut conn)
        .unwrap();
    for args in [
        &["jobs", "list", "--user", "u1"][..],
        &["jobs", "show", "j1"],
        &["queue", "dead"],
    ] {
        let out = ok(&repobox(Some(&server), args));
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{args:?}: {out:?}");
        assert!(out.contains("boom\\u{1b}]0;pwned"), "{args:?}: {out}");
    }
    let list = json(&repobox(Some(&server), &["jobs", "list", "--user", "u1", "--json"]));
    assert_eq!(list["jobs"][0]["repo_url"], hostile);
}

#[test]
fn with_json_an_error_is_json_too() {
    let server = RedisServer::start();
    let out = repobox(Some(&server), &["jobs", "show", "nope", "--json"]);
    assert!(!out.status.success());
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).expect("a JSON error");
    assert_eq!(err["error"], "no job \"nope\"");
}

#[test]
fn the_cli_speaks_tls_with_the_ca_and_client_certificate_it_is_given() {
    use repobox_orm::testing::TlsFiles;
    let files = TlsFiles::generate();
    let server = RedisServer::start_tls(&files, true);
    let out = Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(["queue", "stats", "--json"])
        .env("REDIS_URL", server.tls_url())
        .env("REDIS_CA_FILE", &files.ca_cert)
        .env("REDIS_CLIENT_CERT", &files.client_cert)
        .env("REDIS_CLIENT_KEY", &files.client_key)
        .output()
        .unwrap();
    let stats = json(&out);
    assert_eq!(stats["length"], 0);
    // Without the client certificate the server refuses the connection.
    let out = Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(["queue", "stats"])
        .env("REDIS_URL", server.tls_url())
        .env("REDIS_CA_FILE", &files.ca_cert)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn the_wire_schema_is_the_committed_one() {
    let out = ok(&repobox(None, &["schema"]));
    let printed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let committed: serde_json::Value =
        serde_json::from_str(include_str!("../schema.json")).expect("schema.json is JSON");
    assert_eq!(
        printed, committed,
        "the wire format changed: run `cargo run -- schema > schema.json` and let the web app and the Go runner know"
    );
    let job = printed["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "Job")
        .unwrap();
    assert!(
        job["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "exit_code")
    );
    // The project's own schema checks against itself: no changes, code 0.
    let committed = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.json");
    let out = ok(&repobox(None, &["schema", "--check", committed]));
    assert!(out.contains("no changes"), "{out}");
}

/// `schema --check` against an older schema: each change classified, a
/// breaking one exits with code 4 (text and `--json`); a file that is not a
/// schema is an error (code 1).
#[test]
fn schema_check_classifies_changes_and_exits_4_on_a_breaking_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut old: serde_json::Value = serde_json::from_str(include_str!("../schema.json")).unwrap();
    let job = old["models"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["name"] == "Job")
        .unwrap();
    let fields = job["fields"].as_array_mut().unwrap();
    // Before the rename: `exit`, which `exit_code` reads as an alias.
    let exit = fields.iter_mut().find(|f| f["name"] == "exit_code").unwrap();
    exit["name"] = "exit".into();
    exit.as_object_mut().unwrap().remove("aliases");
    let compatible = dir.path().join("compatible.json");
    std::fs::write(&compatible, old.to_string()).unwrap();
    let out = repobox(None, &["schema", "--check", compatible.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("compatible  Job.exit: renamed to `exit_code`"));

    // A field that the current schema no longer has: breaking.
    let job = old["models"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["name"] == "Job")
        .unwrap();
    job["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "legacy", "type": "string", "optional": false}));
    let breaking = dir.path().join("breaking.json");
    std::fs::write(&breaking, old.to_string()).unwrap();
    let out = repobox(None, &["schema", "--check", breaking.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("breaking    Job.legacy: field removed"));
    let out = repobox(None, &["--json", "schema", "--check", breaking.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["breaking"].as_u64(), report["compatible"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(out.stderr.is_empty(), "the report is the answer, not an error");

    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{\"not\": \"a schema\"}").unwrap();
    let out = repobox(None, &["--json", "schema", "--check", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(err["error"].as_str().unwrap().contains("models"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_process_rides_out_a_killed_server_and_a_deleted_stream_and_stops_on_sigterm() {
    use repobox_models::{JOBS_STREAM, Job, JobStatus, now_millis};
    use std::time::Duration;

    let mut server = RedisServer::start();
    let mut runner = Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(["runner", "--demo", "--consumer", "survivor", "--min-idle-secs", "2"])
        .env("REDIS_URL", server.url())
        .env("REPOBOX_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let store = repobox_orm::Store::open(server.url().as_str()).unwrap();
    let wait_for_status = |id: &'static str, store: repobox_orm::Store| async move {
        tokio::time::timeout(Duration::from_secs(40), async {
            loop {
                if let Ok(Some(job)) = Job::get(&mut store.clone(), id).await
                    && job.status == JobStatus::Succeeded
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{id} did not succeed"));
    };
    Job::create_and_enqueue(
        &mut store.clone(),
        &Job::new("before", "u1", "https://x/ok.git", now_millis()),
        now_millis(),
    )
    .await
    .unwrap();
    wait_for_status("before", store.clone()).await;

    // The server dies for 8 s; the runner must still be there when it comes back.
    server.kill();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        runner.try_wait().unwrap().is_none(),
        "the runner quit during the outage"
    );
    server.restart();
    // Someone deletes the stream (and with it the group).
    let mut conn = server.connection().await;
    let _: () = redis::cmd("DEL").arg(JOBS_STREAM).query_async(&mut conn).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    Job::create_and_enqueue(
        &mut store.clone(),
        &Job::new("after", "u1", "https://x/ok.git", now_millis()),
        now_millis(),
    )
    .await
    .unwrap();
    wait_for_status("after", store.clone()).await;
    assert!(runner.try_wait().unwrap().is_none());

    // A real SIGTERM: it finishes or releases what it holds and exits 0.
    let term = Command::new("kill")
        .args(["-TERM", &runner.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(status) = runner.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the runner stops after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_commands_work_end_to_end() {
    let server = RedisServer::start();
    queue_commands_end_to_end(server.url()).await;
}

/// The same on a 3-primary cluster: every command, and a runner process,
/// through a `redis+cluster://` URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_commands_work_end_to_end_on_a_cluster() {
    let cluster = repobox_orm::testing::RedisCluster::start(3, 0);
    queue_commands_end_to_end(cluster.url()).await;
}

/// `repobox args..` with `REDIS_URL=url`.
fn repobox_at(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(args)
        .env("REDIS_URL", url)
        .env("REPOBOX_LOG", "error")
        .output()
        .expect("run repobox")
}

async fn queue_commands_end_to_end(url: String) {
    use repobox_models::{JOBS_GROUP, JOBS_STREAM, Job, JobStatus, now_millis};
    use std::time::Duration;

    let store = repobox_orm::Store::open(url.as_str()).unwrap();
    let mut conn = store.clone();
    let cli = |args: &[&str]| repobox_at(&url, args);
    let job_status = |id: &'static str| {
        let store = store.clone();
        async move { Job::get(&mut store.clone(), id).await.unwrap().unwrap().status }
    };

    // A queued job is cancelled at once.
    Job::create_and_enqueue(
        &mut conn,
        &Job::new("q1", "u1", "https://x/ok.git", now_millis()),
        now_millis(),
    )
    .await
    .unwrap();
    assert!(ok(&cli(&["jobs", "cancel", "q1"])).contains("cancelled"));
    assert_eq!(job_status("q1").await, JobStatus::Cancelled);

    // Pending: a delivery nobody acknowledged, with its consumer and delivery count.
    let q = repobox_orm::Queue::new(JOBS_STREAM, JOBS_GROUP);
    q.ensure_group(&mut conn).await.unwrap();
    q.read(&mut conn, "someone", 1, None).await.unwrap();
    let pending = json(&cli(&["queue", "pending", "--json"]));
    assert_eq!(pending[0]["consumer"], "someone");
    assert_eq!(pending[0]["deliveries"], 1);
    assert_eq!(pending[0]["level"], "normal");
    q.ack(&mut conn, &[pending[0]["id"].as_str().unwrap()]).await.unwrap();
    // Every priority level is shown, the highest first.
    let high = repobox_orm::Queue::new("jobs:stream:high", JOBS_GROUP);
    high.ensure_group(&mut conn).await.unwrap();
    high.enqueue(&mut conn, &[("job_id", "h0"), ("user_id", "u1")])
        .await
        .unwrap();
    high.read(&mut conn, "other", 1, None).await.unwrap();
    let pending = json(&cli(&["queue", "pending", "--json"]));
    assert_eq!(
        (&pending[0]["level"], &pending[0]["consumer"]),
        (&serde_json::json!("high"), &serde_json::json!("other"))
    );
    assert!(ok(&cli(&["queue", "pending"])).contains("high"));
    high.ack(&mut conn, &[pending[0]["id"].as_str().unwrap()])
        .await
        .unwrap();

    // A failed job retried: queued again with a history entry, and on the stream.
    let mut failed = Job::new("f1", "u1", "https://x/ok.git", now_millis());
    failed.status = JobStatus::Failed;
    Job::create(&mut conn, &failed).await.unwrap();
    let before = q.len(&mut conn).await.unwrap();
    ok(&cli(&["jobs", "retry", "f1"]));
    let retried = Job::get(&mut conn, "f1").await.unwrap().unwrap();
    assert_eq!(retried.status, JobStatus::Queued);
    assert_eq!(retried.history.last().unwrap().status, JobStatus::Queued);
    assert_eq!(q.len(&mut conn).await.unwrap(), before + 1);
    assert!(
        !cli(&["jobs", "retry", "q1"]).status.success(),
        "a cancelled job is not retried"
    );

    // A dead letter requeued: back on the stream, its job queued again; and
    // one of the high level, which goes back onto its own level.
    for (id, level, dead_letters) in [
        ("d1", repobox_models::Priority::Normal, "jobs:stream:dead"),
        ("d2", repobox_models::Priority::High, "jobs:stream:high:dead"),
    ] {
        let mut dead = Job::new(id, "u1", "https://x/ok.git", now_millis());
        dead.status = JobStatus::Failed;
        dead.priority = Some(level);
        Job::create(&mut conn, &dead).await.unwrap();
        let _: String = redis::cmd("XADD")
            .arg(dead_letters)
            .arg("*")
            .arg(&[
                ("original_id", "1-0"),
                ("reason", "gave up"),
                ("deliveries", "5"),
                ("job_id", id),
                ("user_id", "u1"),
            ])
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let listed = json(&cli(&["queue", "dead", "--json"]));
    let levels: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, ["high", "normal"]);
    let high_len = high.len(&mut conn).await.unwrap();
    assert!(ok(&cli(&["queue", "requeue-dead", "--all"])).contains("requeued 2"));
    assert_eq!(job_status("d1").await, JobStatus::Queued);
    assert_eq!(job_status("d2").await, JobStatus::Queued);
    assert_eq!(q.dead_len(&mut conn).await.unwrap(), 0);
    assert_eq!(high.dead_len(&mut conn).await.unwrap(), 0);
    assert_eq!(
        high.len(&mut conn).await.unwrap(),
        high_len + 1,
        "d2 back on the high level"
    );
    assert!(ok(&cli(&["queue", "dead", "--limit", "0"])).lines().count() <= 1);

    // A runner takes the queued jobs; a slow one is cancelled while it runs,
    // and `jobs tail -f` ends when it does.
    let mut runner = Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(["runner", "--demo", "--consumer", "r1"])
        .env("REDIS_URL", &url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Job::create_and_enqueue(
        &mut conn,
        &Job::new("slow1", "u1", "https://x/slow.git", now_millis()),
        now_millis(),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while job_status("slow1").await != JobStatus::Running {
        assert!(tokio::time::Instant::now() < deadline, "the slow job never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tail = Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(["jobs", "tail", "-f", "slow1"])
        .env("REDIS_URL", &url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(ok(&cli(&["jobs", "cancel", "slow1"])).contains("asked to cancel"));
    let tail = exits_within(tail, 60, "the tail ends with the job").await;
    assert!(tail.status.success());
    let followed = String::from_utf8_lossy(&tail.stdout);
    assert!(
        followed.contains("git clone") && followed.contains("cancelled"),
        "{followed}"
    );
    assert!(String::from_utf8_lossy(&tail.stderr).contains("cancelled"));
    assert_eq!(job_status("slow1").await, JobStatus::Cancelled);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while job_status("f1").await != JobStatus::Succeeded
        || job_status("d1").await != JobStatus::Succeeded
        || job_status("d2").await != JobStatus::Succeeded
    {
        assert!(tokio::time::Instant::now() < deadline, "the requeued jobs did not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = Command::new("kill").args(["-TERM", &runner.id().to_string()]).status();
    assert!(runner.wait().unwrap().success());

    // Trim by age keeps nothing pending; everything here is acknowledged.
    let out = ok(&cli(&["queue", "trim", "--older-than-secs", "0"]));
    assert!(out.starts_with("removed "), "{out}");
    assert!(!cli(&["queue", "trim"]).status.success());

    // Pause and resume; stats say so, with the jobs per status.
    let paused = json(&cli(&["queue", "pause", "--json"]));
    assert_eq!(paused, serde_json::json!({ "paused": true, "changed": true }));
    assert!(ok(&cli(&["queue", "pause"])).contains("paused already"));
    let stats = json(&cli(&["queue", "stats", "--json"]));
    assert_eq!(stats["paused"], true);
    // What the runner did, per outcome, and its run times.
    assert_eq!(stats["last_hour"]["succeeded"], 3, "{stats}");
    assert_eq!(stats["last_hour"]["cancelled"], 1, "{stats}");
    assert_eq!(stats["duration_ms"]["runs"], 4, "{stats}");
    assert!(stats["duration_ms"]["p50"].is_u64(), "{stats}");
    assert_eq!(stats["jobs"]["cancelled"], 2, "{stats}");
    assert_eq!(stats["jobs"]["succeeded"], 3, "{stats}");
    assert_eq!(stats["jobs"]["running"], 0, "{stats}");
    assert_eq!(stats["waiting"], 0, "{stats}");
    assert!(ok(&cli(&["queue", "stats"])).contains("paused"));
    assert_eq!(json(&cli(&["queue", "resume", "--json"]))["changed"], true);
    assert_eq!(json(&cli(&["queue", "stats", "--json"]))["paused"], false);

    // A delayed job: listed by status, run now, then waiting on the stream.
    Job::enqueue_in(
        &mut conn,
        &Job::new("later", "u1", "https://x/ok.git", now_millis()),
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    let delayed = json(&cli(&["jobs", "list", "--status", "delayed", "--json"]));
    assert_eq!(delayed["total"], 1);
    assert_eq!(delayed["jobs"][0]["id"], "later");
    assert_eq!(json(&cli(&["queue", "stats", "--json"]))["jobs"]["delayed"], 1);
    assert!(ok(&cli(&["jobs", "run-now", "later"])).contains("queued now"));
    assert_eq!(job_status("later").await, JobStatus::Queued);
    assert!(
        !cli(&["jobs", "run-now", "later"]).status.success(),
        "only a waiting job runs now"
    );
    let stats = json(&cli(&["queue", "stats", "--json"]));
    assert_eq!(
        (&stats["waiting"], &stats["jobs"]["delayed"]),
        (&1.into(), &0.into()),
        "{stats}"
    );
    assert!(!cli(&["jobs", "list"]).status.success(), "--user or --status");

    // Purge: a dry run counts, the real one removes; delete one by one.
    let dry = json(&cli(&[
        "queue",
        "purge",
        "--status",
        "cancelled",
        "--older-than",
        "0s",
        "--dry-run",
        "--json",
    ]));
    assert_eq!((&dry["matched"], &dry["removed"]), (&2.into(), &0.into()), "{dry}");
    assert_eq!(job_status("q1").await, JobStatus::Cancelled);
    let purged = json(&cli(&[
        "queue",
        "purge",
        "--status",
        "cancelled",
        "--older-than",
        "0s",
        "--json",
    ]));
    assert_eq!(purged["removed"], 2, "{purged}");
    assert!(Job::get(&mut conn, "slow1").await.unwrap().is_none());
    assert_eq!(Job::output_count(&mut conn, "slow1").await.unwrap(), 0);
    assert!(
        !cli(&["queue", "purge", "--status", "queued", "--older-than", "0s"])
            .status
            .success()
    );
    let deleted = json(&cli(&["jobs", "delete", "f1", "nope", "--json"]));
    assert_eq!(deleted, serde_json::json!({ "removed": ["f1"], "absent": ["nope"] }));
    assert!(Job::get(&mut conn, "f1").await.unwrap().is_none());
}

#[test]
fn read_only_commands_work_on_a_replica() {
    let primary = RedisServer::start();
    let mut conn = primary.client().get_connection().unwrap();
    for (id, at) in [("a", "1"), ("b", "2")] {
        write_job_as_another_client(
            &mut conn,
            &[
                ("id", id),
                ("user_id", "u1"),
                ("repo_url", "r"),
                ("status", "queued"),
                ("created_at", at),
            ],
        );
    }
    // A ghost the read would like to repair: on a replica it cannot, and must still answer.
    let _: () = redis::cmd("ZADD")
        .arg("jobs:user:u1")
        .arg(3)
        .arg("ghost")
        .query(&mut conn)
        .unwrap();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.port().to_string()]);
    let mut rconn = replica.client().get_connection().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let n: u64 = redis::cmd("ZCARD").arg("jobs:user:u1").query(&mut rconn).unwrap();
        if n == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the replica never synced");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let list = json(&repobox(Some(&replica), &["jobs", "list", "--user", "u1", "--json"]));
    assert_eq!(list["jobs"].as_array().unwrap().len(), 2);
    for args in [
        &["jobs", "show", "a"][..],
        &["jobs", "tail", "a"],
        &["queue", "stats"],
        &["queue", "dead"],
        &["queue", "pending"],
        &["schema"],
    ] {
        ok(&repobox(Some(&replica), args));
    }
    // The check reads (and reports the ghost, with its exit code) without writing.
    let out = repobox(Some(&replica), &["index", "check"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 entr(y/ies) need a repair"));
}

#[test]
fn demo_runs_the_whole_flow_on_a_cluster() {
    let cluster = repobox_orm::testing::RedisCluster::start(3, 0);
    let url = cluster.url();
    let out = ok(&repobox(None, &["demo", "--jobs", "3", "--keep", "--redis-url", &url]));
    assert!(out.contains("3. Enqueued 3 jobs"), "{out}");
    assert!(out.contains("2 succeeded, 1 failed"), "{out}");
    // The sweep walks every primary: it finds the kept user, session and
    // jobs wherever their slots put them, and the indexes are exact.
    let reports = json(&repobox(None, &["index", "--json", "--redis-url", &url]));
    let reports = reports.as_array().expect("one report per index");
    assert_eq!(reports.len(), 5, "{reports:?}");
    for r in reports {
        let r = &r["report"];
        let delayed = r["template"] == "jobs:delayed";
        assert!(r["keys"].as_u64().unwrap() >= u64::from(!delayed), "{r}");
        for count in ["gone", "mismatched", "missing", "bad", "skipped"] {
            assert_eq!(r[count], 0, "{count}: {r}");
        }
    }
    let jobs = json(&repobox(
        None,
        &[
            "jobs",
            "list",
            "--json",
            "--redis-url",
            &url,
            "--user",
            out.lines()
                .find_map(|l| l.strip_prefix("1. Created user "))
                .and_then(|l| l.split_whitespace().next())
                .unwrap(),
        ],
    ));
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(3), "{jobs}");
    assert_eq!(jobs["total"], 3, "{jobs}");
}

/// Parses `bytes` as exactly one JSON value.
fn one_json(bytes: &[u8], what: &str) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{what} is not one JSON value ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// Every subcommand with `--json`: its result on stdout is JSON; an argument
/// error (exit 2) and a Redis error (exit 1) are one JSON object on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_speaks_json_on_success_and_on_every_error() {
    use repobox_models::{Job, JobStatus, now_millis};

    let server = RedisServer::start();
    let url = server.url();
    let store = repobox_orm::Store::open(url.as_str()).unwrap();
    let mut conn = store.clone();
    Job::create_and_enqueue(
        &mut conn,
        &Job::new("q1", "u1", "https://x/ok.git", now_millis()),
        now_millis(),
    )
    .await
    .unwrap();
    let mut failed = Job::new("f1", "u1", "https://x/ok.git", now_millis());
    failed.status = JobStatus::Failed;
    Job::create(&mut conn, &failed).await.unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg("job:f1:output")
        .arg(&["line one", "line two"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&[
            "jobs:stream:dead",
            "*",
            "job_id",
            "f1",
            "user_id",
            "u1",
            "reason",
            "gave up",
            "deliveries",
            "5",
        ])
        .query_async(&mut conn)
        .await
        .unwrap();

    let cli = |args: &[&str]| repobox_at(&url, args);
    let success = |args: &[&str]| {
        let out = cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        one_json(&out.stdout, &format!("stdout of {args:?}"))
    };
    assert_eq!(success(&["jobs", "list", "--user", "u1", "--json"])["total"], 2);
    assert_eq!(success(&["jobs", "show", "f1", "--json"])["output_lines"], 2);
    assert_eq!(success(&["queue", "dead", "--json"])[0]["fields"]["reason"], "gave up");
    assert_eq!(success(&["queue", "stats", "--json"])["length"], 1);
    assert!(success(&["queue", "pending", "--json"]).is_array());
    for args in [
        &["index", "--json"][..],
        &["index", "check", "--json"],
        &["index", "repair", "--json"],
    ] {
        assert!(success(args).is_array(), "{args:?}");
    }
    assert!(success(&["schema", "--json"])["models"].is_array());
    // `jobs tail --json` is JSON Lines: one object per output line.
    let out = cli(&["jobs", "tail", "f1", "--json"]);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| one_json(l.as_bytes(), "a line of jobs tail --json"))
        .collect();
    assert_eq!(
        lines,
        [
            serde_json::json!({ "line": "line one" }),
            serde_json::json!({ "line": "line two" })
        ]
    );
    assert_eq!(success(&["jobs", "cancel", "q1", "--json"])["cancel"], "cancelled");
    assert_eq!(success(&["queue", "requeue-dead", "--all", "--json"])["requeued"], 1);
    assert_eq!(success(&["jobs", "show", "f1", "--json"])["status"], "queued");
    let requeued = Job::get(&mut conn, "f1").await.unwrap().unwrap();
    Job::update_status_from(&mut conn, requeued, JobStatus::Failed, now_millis(), Default::default())
        .await
        .unwrap();
    assert_eq!(success(&["jobs", "retry", "f1", "--json"])["job_id"], "f1");
    assert!(success(&["queue", "trim", "--max-len", "100", "--json"])["removed"].is_u64());
    let demo = success(&["demo", "--jobs", "1", "--json"]);
    assert_eq!((&demo["succeeded"], &demo["failed"]), (&1.into(), &0.into()), "{demo}");
    assert_eq!(demo["jobs"].as_array().map(Vec::len), Some(1), "{demo}");
    // The runner: nothing while it runs, its counts when SIGTERM stops it.
    let runner = Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(["runner", "--demo", "--consumer", "r-json", "--json"])
        .env("REDIS_URL", &url)
        .env("REPOBOX_LOG", "off")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while Job::get(&mut conn, "f1").await.unwrap().unwrap().status != JobStatus::Succeeded {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the runner did not run the retried job"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = Command::new("kill").args(["-TERM", &runner.id().to_string()]).status();
    let out = exits_within(runner, 60, "the runner drains on SIGTERM").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = one_json(&out.stdout, "the runner's stdout");
    assert_eq!(
        (&stats["consumer"], &stats["succeeded"]),
        (&"r-json".into(), &1.into()),
        "{stats}"
    );

    // Argument errors: exit 2, nothing on stdout, one object on stderr.
    for args in [
        &["--json"][..],
        &["nope", "--json"],
        &["demo", "--jobs", "x", "--json"],
        &["runner", "--demo", "--concurrency", "-1", "--json"],
        &["runner", "--json"],
        &["jobs", "--json"],
        &["jobs", "list", "--json"],
        &["jobs", "show", "--json"],
        &["jobs", "tail", "--json", "--bogus"],
        &["jobs", "retry", "--json"],
        &["jobs", "cancel", "a", "b", "--json"],
        &["queue", "stats", "--limit", "3", "--json"],
        &["queue", "pending", "--limit", "x", "--json"],
        &["queue", "requeue-dead", "a", "--all", "--json"],
        &["queue", "trim", "--older-than-secs", "1", "--max-len", "2", "--json"],
        &["queue", "dead", "--limit", "--json"],
        &["index", "frob", "--json"],
        &["schema", "extra", "--json"],
    ] {
        let out = cli(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = one_json(&out.stderr, &format!("stderr of {args:?}"));
        assert_eq!(err["kind"], "usage", "{args:?}: {err}");
        assert!(err["error"].as_str().is_some_and(|e| !e.is_empty()), "{args:?}: {err}");
    }
    // Without --json, clap's own text; --help and --version are unchanged.
    let out = cli(&["jobs", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
    for args in [&["--help"][..], &["--version"], &["jobs", "list", "--help", "--json"]] {
        let out = cli(args);
        assert!(out.status.success(), "{args:?}");
        assert!(
            serde_json::from_slice::<serde_json::Value>(&out.stdout).is_err(),
            "{args:?}"
        );
    }

    // Redis errors: exit 1, one object on stderr naming the kind.
    let dead = format!("redis://127.0.0.1:{}/", RedisServer::free_port());
    for args in [
        &["demo", "--jobs", "1", "--json"][..],
        &["jobs", "list", "--user", "u1", "--json"],
        &["jobs", "show", "a", "--json"],
        &["jobs", "tail", "a", "--json"],
        &["jobs", "retry", "a", "--json"],
        &["jobs", "cancel", "a", "--json"],
        &["queue", "stats", "--json"],
        &["queue", "pending", "--json"],
        &["queue", "requeue-dead", "--all", "--json"],
        &["queue", "trim", "--max-len", "1", "--json"],
        &["queue", "dead", "--json"],
        &["index", "--json"],
        &["index", "check", "--json"],
        &["index", "repair", "--json"],
    ] {
        let out = repobox_at(&dead, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            out.stdout.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = one_json(&out.stderr, &format!("stderr of {args:?}"));
        assert_eq!(err["kind"], "unreachable", "{args:?}: {err}");
        assert!(err["error"].as_str().unwrap().contains("cannot reach Redis"), "{err}");
    }
    // A runner retries an unreachable Redis for as long as it takes; refused
    // credentials stop it, as one JSON error.
    let locked = RedisServer::start_with(&["--requirepass", "letmein"]);
    let out = repobox_at(&locked.url(), &["runner", "--demo", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = one_json(&out.stderr, "the runner's stderr");
    assert_eq!(err["kind"], "error", "{err}");
}

/// Values that another client wrote with bidi controls, C1 controls and DEL:
/// escaped on the terminal, `\uXXXX` in JSON, exact once the JSON is read.
#[test]
fn bidi_and_c1_controls_from_redis_are_escaped_in_tables_and_json() {
    let server = RedisServer::start();
    let mut conn = server.client().get_connection().unwrap();
    let repo = "https://x/\u{202e}lmth.exe\u{85}\u{7f}";
    let error = "failed \u{2066}\u{200f}quietly\u{2069}\u{9b}31m";
    write_job_as_another_client(
        &mut conn,
        &[
            ("id", "j1"),
            ("user_id", "u1"),
            ("repo_url", repo),
            ("status", "failed"),
            ("created_at", "1"),
            ("error", error),
        ],
    );
    let _: () = redis::cmd("XADD")
        .arg("jobs:stream:dead")
        .arg("*")
        .arg(&[("job_id", "j1"), ("reason", error), ("deliveries", "5")])
        .query(&mut conn)
        .unwrap();
    let steering = |c: char| {
        c.is_control() && c != '\n'
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    // What each command shows: the table of `jobs list` has no error column.
    let repo_escapes = ["\\u{202e}", "\\u{85}", "\\u{7f}"];
    let error_escapes = ["\\u{2066}", "\\u{200f}", "\\u{2069}", "\\u{9b}"];
    for (args, escapes) in [
        (&["jobs", "list", "--user", "u1"][..], &repo_escapes[..]),
        (
            &["jobs", "show", "j1"],
            &[&repo_escapes[..], &error_escapes[..]].concat(),
        ),
        (&["queue", "dead"], &error_escapes[..]),
    ] {
        let out = ok(&repobox(Some(&server), args));
        assert!(!out.chars().any(steering), "{args:?}: {out:?}");
        for escaped in escapes {
            assert!(out.contains(escaped), "{escaped} in {args:?}: {out}");
        }
    }
    for args in [
        &["jobs", "list", "--user", "u1", "--json"][..],
        &["jobs", "show", "j1", "--json"],
        &["queue", "dead", "--json"],
    ] {
        let out = ok(&repobox(Some(&server), args));
        assert!(!out.chars().any(steering), "{args:?}: {out:?}");
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        let json_repo_escapes = ["\\u202e", "\\u0085", "\\u007f"];
        let json_error_escapes = ["\\u2066", "\\u200f", "\\u2069", "\\u009b"];
        let (shown, escapes) = match args[..2] {
            ["queue", _] => (
                vec![(&value[0]["fields"]["reason"], error)],
                json_error_escapes.to_vec(),
            ),
            ["jobs", "list"] => (
                vec![
                    (&value["jobs"][0]["repo_url"], repo),
                    (&value["jobs"][0]["error"], error),
                ],
                [&json_repo_escapes[..], &json_error_escapes[..]].concat(),
            ),
            _ => (
                vec![(&value["repo_url"], repo), (&value["error"], error)],
                [&json_repo_escapes[..], &json_error_escapes[..]].concat(),
            ),
        };
        for (got, written) in shown {
            assert_eq!(got, written, "{args:?}: exact once read");
        }
        for escaped in escapes {
            assert!(out.contains(escaped), "{escaped} in {args:?}: {out}");
        }
    }
}

/// How often the server ran `command`.
fn calls_of(server: &RedisServer, command: &str) -> u64 {
    let mut conn = server.client().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_tail_follow_waits_on_events_instead_of_polling() {
    use repobox_models::{Job, now_millis};
    let server = RedisServer::start();
    let store = repobox_orm::Store::open(server.url().as_str()).unwrap();
    let mut conn = store.clone();
    let job = Job::new("t1", "u1", "https://x/ok.git", now_millis());
    let entry = Job::create_and_enqueue(&mut conn, &job, now_millis()).await.unwrap();
    let run = match Job::start(&mut conn, "t1", &entry, Some("u1"), std::time::Duration::from_secs(60))
        .await
        .unwrap()
    {
        repobox_models::Start::Started(run) => *run,
        other => panic!("{other:?}"),
    };
    let tail = Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(["jobs", "tail", "-f", "t1"])
        .env("REDIS_URL", server.url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = calls_of(&server, "lrange");
    // Nothing happens to the job for 2 s: the tail waits, it does not look.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(calls_of(&server, "lrange"), before, "no output read without an event");
    // Output and the end wake it.
    Job::append_output(&mut conn, "t1", &["built"]).await.unwrap();
    Job::update_status_from(
        &mut conn,
        run,
        repobox_models::JobStatus::Succeeded,
        now_millis(),
        Default::default(),
    )
    .await
    .unwrap();
    let out = exits_within(tail, 4, "the tail ends with the job, before its own look").await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "built\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("succeeded"));
}

#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let server = RedisServer::start();
    let mut child = Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(["queue", "stats"])
        .env("REDIS_URL", server.url())
        .env_remove("REPOBOX_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the command prints (it reads Redis first).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.status.success() || out.status.signal() == Some(13),
        "{:?}",
        out.status
    );
}

/// `child`'s output once it exits. One still up after `secs` is killed and
/// the test fails with `what` and what it printed, instead of hanging the
/// whole run on a wait that never ends.
async fn exits_within(child: std::process::Child, secs: u64, what: &str) -> std::process::Output {
    let pid = child.id().to_string();
    let mut wait = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    match tokio::time::timeout(std::time::Duration::from_secs(secs), &mut wait).await {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            let out = wait.await.unwrap();
            panic!(
                "{what}: still running after {secs} s; its stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Walks of the keyspace and of a status index say how far they have come
/// on stderr: without a terminal a line per pass and one at the end; with
/// `--json`, nothing but the JSON result on stdout. `--rate` is checked.
#[test]
fn long_walks_report_progress_on_stderr_and_json_prints_only_json() {
    let server = RedisServer::start();
    ok(&repobox(Some(&server), &["demo", "--jobs", "3", "--keep"]));
    let out = repobox(Some(&server), &["index", "check", "--rate", "100000"]);
    let table = ok(&out);
    assert!(table.contains("Job::by_user_id"), "{table}");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.iter().all(|l| l.starts_with("index check: ")), "{err}");
    let passes = lines.iter().filter(|l| l.starts_with("index check: pass ")).count();
    // An index pass per index, an entity pass per model with indexes.
    assert_eq!(passes, 8, "{err}");
    assert!(err.contains(": index jobs:user:<user_id> (about "), "{err}");
    assert!(err.contains(": hashes job:<id> (about "), "{err}");
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("index check: done: 8 pass(es), ")),
        "{err}"
    );

    let purge = [
        "queue",
        "purge",
        "--status",
        "failed",
        "--older-than",
        "0s",
        "--dry-run",
    ];
    let out = repobox(Some(&server), &purge);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("queue purge: pass 1: failed jobs (about 1 jobs)\n"),
        "{err}"
    );
    assert!(err.contains("queue purge: done: 1 pass(es), 1 jobs in "), "{err}");

    for args in [
        &["index", "check", "--json"][..],
        &["index", "repair", "--json", "--rate", "100000"],
        &[&purge[..], &["--json"]].concat()[..],
    ] {
        let out = repobox(Some(&server), args);
        let stdout = ok(&out);
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.lines().count(), 1, "{args:?}: {stdout}");
        serde_json::from_str::<serde_json::Value>(&stdout).expect("JSON");
    }
    let zero = repobox(Some(&server), &["index", "check", "--rate", "0", "--json"]);
    assert_eq!(zero.status.code(), Some(2), "{zero:?}");
    let usage: serde_json::Value = serde_json::from_slice(&zero.stderr).expect("a usage error in JSON");
    assert_eq!(usage["kind"], "usage", "{usage}");
    assert!(usage["error"].as_str().is_some_and(|e| e.contains("--rate")), "{usage}");
}
