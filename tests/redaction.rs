//! The `repobox` binary never prints a password of its Redis URL: not in the
//! demo's banner, an error, `--json` output or a log line at any level,
//! whatever the URL's form.

use std::process::{Command, Output, Stdio};

use repobox_orm::testing::RedisServer;

/// The commands tried with each URL: they fail fast against a closed port.
const COMMANDS: [&[&str]; 4] = [
    &["jobs", "list", "--user", "a"],
    &["jobs", "list", "--user", "a", "--json"],
    &["demo", "--jobs", "1"],
    &["demo", "--jobs", "1", "--json"],
];

const LOG_LEVELS: [&str; 3] = ["off", "info", "trace"];

/// URL forms, `{p}` and `{q}` closed ports, each with the texts that must
/// never be printed (the password raw, percent-encoded, decoded, and pieces
/// a parser could split off).
fn cases(p: u16, q: u16) -> Vec<(String, Vec<&'static str>)> {
    let at = |template: &str| template.replace("{p}", &p.to_string()).replace("{q}", &q.to_string());
    vec![
        (at("redis://:S3cretPW01@127.0.0.1:{p}"), vec!["S3cretPW01"]),
        (at("redis://app:S3cretPW02@127.0.0.1:{p}/0"), vec!["S3cretPW02"]),
        (at("rediss://:S3cretPW03@127.0.0.1:{p}"), vec!["S3cretPW03"]),
        (at("valkey://:S3cretPW04@127.0.0.1:{p}"), vec!["S3cretPW04"]),
        // One part alone: redis-rs takes it as a user name; it may be a password.
        (at("redis://S3cretPW05@127.0.0.1:{p}"), vec!["S3cretPW05"]),
        (
            at("redis://:p@ss:w%rd06@127.0.0.1:{p}"),
            vec!["p@ss:w%rd06", "p%40ss%3Aw%rd06", "ss:w%rd06"],
        ),
        (at("redis://:S3c/retPW07@127.0.0.1:{p}"), vec!["S3c/retPW07", "retPW07"]),
        (
            at("redis://:S3c%2FretPW08@127.0.0.1:{p}"),
            vec!["S3c%2FretPW08", "S3c/retPW08"],
        ),
        (
            at("redis://:pa%23ss%3Fw%40rd09@127.0.0.1:{p}"),
            vec!["pa%23ss%3Fw%40rd09", "pa#ss?w@rd09", "w@rd09"],
        ),
        (at("redis://:pa#ss10@127.0.0.1:{p}"), vec!["pa#ss10", "ss10@"]),
        (at("redis://:pa?ss11@127.0.0.1:{p}"), vec!["pa?ss11", "ss11@"]),
        (
            at("redis://u:1234/S3cret12@127.0.0.1:{p}"),
            vec!["1234/S3cret12", "S3cret12"],
        ),
        (at("redis://:S3cretPW13%@127.0.0.1:{p}"), vec!["S3cretPW13"]),
        (at("redis://:S3cretPW14@127.0.0.1:{p}#frag"), vec!["S3cretPW14"]),
        (at("redis://127.0.0.1:{p}/?pass=S3cretPW15"), vec!["S3cretPW15"]),
        (
            at("redis://127.0.0.1:{p}/?protocol=3&password=S3cretPW16"),
            vec!["S3cretPW16"],
        ),
        (
            "unix:///tmp/repobox-no-such.sock?pass=S3cretPW17".to_owned(),
            vec!["S3cretPW17"],
        ),
        (
            "redis+unix:///tmp/repobox-no-such.sock?user=app&password=S3cretPW18".to_owned(),
            vec!["S3cretPW18"],
        ),
        (
            "unix:///tmp/repobox-no-such.sock?pass=p@ss&w?rd19".to_owned(),
            vec!["p@ss&w?rd19", "w?rd19"],
        ),
        (
            at("redis+cluster://:S3cretPW20@127.0.0.1:{p},127.0.0.1:{q}"),
            vec!["S3cretPW20"],
        ),
        (
            at("rediss+cluster://app:S3c%40retPW21@127.0.0.1:{p},127.0.0.1:{q}"),
            vec!["S3c%40retPW21", "S3c@retPW21"],
        ),
        (
            at("redis+cluster://:S3c/retPW22@127.0.0.1:{p},127.0.0.1:{q}"),
            vec!["S3c/retPW22", "retPW22"],
        ),
        (
            at("redis+cluster://:S3cret@PW23@127.0.0.1:{p},127.0.0.1:{q}"),
            vec!["S3cret@PW23", "PW23@"],
        ),
        (
            at("redis+cluster://:S3cretPW24@127.0.0.1:{p},,127.0.0.1:{q}"),
            vec!["S3cretPW24"],
        ),
        ("redis://:S3cretPW25@[not a url".to_owned(), vec!["S3cretPW25"]),
        (at("http://:S3cretPW26@127.0.0.1:{p}"), vec!["S3cretPW26"]),
    ]
}

fn spawn(args: &[&str], url: &str, log: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(args)
        .env("REDIS_URL", url)
        .env("REPOBOX_LOG", log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run repobox")
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn no_url_form_leaks_its_password_at_any_log_level() {
    let (p, q) = (RedisServer::free_port(), RedisServer::free_port());
    for (url, secrets) in cases(p, q) {
        // Every command and level of one URL at once: they only wait on refusals.
        let runs: Vec<_> = COMMANDS
            .iter()
            .flat_map(|args| LOG_LEVELS.iter().map(move |log| (*args, *log)))
            .map(|(args, log)| (args, log, spawn(args, &url, log)))
            .collect();
        for (args, log, child) in runs {
            let out = child.wait_with_output().unwrap();
            let all = text(&out);
            let context = format!("{url} {args:?} REPOBOX_LOG={log}:\n{all}");
            assert!(!out.status.success(), "{context}");
            for secret in &secrets {
                assert!(!all.contains(secret), "{secret:?} printed: {context}");
            }
            assert!(
                all.contains("***") || all.contains("<unparsable>"),
                "the URL is not named: {context}"
            );
            assert!(!all.contains("panicked"), "{context}");
            if args.contains(&"--json") {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let last = stderr.lines().last().unwrap_or_default();
                let err: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {context}"));
                assert!(err["error"].is_string(), "{context}");
                if log == "off" {
                    assert_eq!(stderr.lines().count(), 1, "{context}");
                }
            }
        }
    }
}

#[test]
fn a_password_given_as_an_argument_is_not_printed_either() {
    let url = format!("redis://:S3c/retPW@127.0.0.1:{}", RedisServer::free_port());
    for args in [
        vec!["jobs", "list", "--user", "a", "--redis-url", url.as_str()],
        vec!["jobs", "list", "--user", "a", "--json", "--redis-url", url.as_str()],
        // A usage error that names the argument: clap's text is scrubbed too.
        vec!["jobs", "list", "--user", "a", url.as_str()],
        vec!["jobs", "list", "--user", "a", url.as_str(), "--json"],
        vec!["demo", "--redis-url", url.as_str(), "--jobs", "x"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_repobox"))
            .args(&args)
            .env_remove("REDIS_URL")
            .env("REPOBOX_LOG", "trace")
            .output()
            .unwrap();
        let all = text(&out);
        assert!(!out.status.success(), "{args:?}: {all}");
        assert!(!all.contains("retPW"), "{args:?}: {all}");
    }
    // `--help` shows that REDIS_URL is read, never its value.
    let out = Command::new(env!("CARGO_BIN_EXE_repobox"))
        .arg("--help")
        .env("REDIS_URL", &url)
        .output()
        .unwrap();
    let help = text(&out);
    assert!(out.status.success() && help.contains("REDIS_URL"), "{help}");
    assert!(!help.contains("retPW"), "{help}");
}

/// Against a real server whose password holds `@ : / ? # %`: the commands
/// work, and the password is printed nowhere, raw or percent-encoded.
#[test]
fn a_working_url_with_an_awkward_password_is_shown_masked() {
    let password = "S3c@r:t/p?w#d%x";
    let server = RedisServer::start_with(&["--requirepass", password]);
    let encoded = "S3c%40r%3At%2Fp%3Fw%23d%25x";
    let url = format!("redis://:{encoded}@127.0.0.1:{}/", server.port());
    for (args, log) in [
        (&["demo", "--jobs", "1"][..], "trace"),
        (&["demo", "--jobs", "1", "--json"], "info"),
        (&["jobs", "list", "--user", "nobody", "--json"], "trace"),
        (&["queue", "stats"], "trace"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_repobox"))
            .args(args)
            .env("REDIS_URL", &url)
            .env("REPOBOX_LOG", log)
            .output()
            .unwrap();
        let all = text(&out);
        assert!(out.status.success(), "{args:?}: {all}");
        for secret in [password, encoded, "S3c@r", "S3c%40r"] {
            assert!(!all.contains(secret), "{secret:?} in {args:?}: {all}");
        }
        if args == ["demo", "--jobs", "1"] {
            assert!(all.contains("Using Redis at redis://:***@127.0.0.1:"), "{all}");
        }
        if args.contains(&"--json") {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {all}"));
            if args[0] == "demo" {
                assert_eq!(v["redis"], format!("redis://:***@127.0.0.1:{}/", server.port()));
            }
        }
    }
}
