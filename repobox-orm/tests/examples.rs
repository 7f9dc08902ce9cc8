//! The programs in `examples/`, run as a user runs them (`REDIS_URL` and a
//! server, a cluster or a TLS server of their own), each to its end.
//!
//! `cargo test` builds the examples before it runs the tests; run them
//! alone with `cargo build -p repobox-orm --examples && cargo test -p repobox-orm --test examples`.

use std::path::PathBuf;
use std::process::Command;

use repobox_orm::testing::{RedisCluster, RedisServer, TlsFiles};

/// The example's binary, next to this test's (`target/<profile>/examples`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = profile.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo test` (it builds the examples) or `cargo build --examples`",
        path.display()
    );
    path
}

/// Runs the example with `env`; its standard output, once it has exited 0.
fn run(name: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new(example(name))
        .env_remove("REDIS_URL")
        .envs(env.iter().copied())
        .output()
        .expect("the example starts");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_quick_start_runs_twice_and_leaves_nothing_behind() {
    let server = RedisServer::start();
    let url = server.url();
    for _ in 0..2 {
        let out = run("quickstart", &[("REDIS_URL", &url)]);
        assert!(out.contains("created quickstart:job:job-2"), "{out}");
        assert!(out.contains("job-0 Done exit=Some(0)"), "{out}");
        assert!(out.contains("job-1 Running exit=None"), "{out}");
        assert!(out.contains("ann has 3 jobs"), "{out}");
        assert!(out.contains("deleted 3"), "{out}");
    }
    assert_eq!(keys(&server), Vec::<String>::new());
}

#[test]
fn the_sessions_example_ends_every_session_it_starts() {
    let server = RedisServer::start();
    let out = run("sessions", &[("REDIS_URL", &server.url())]);
    assert!(
        out.contains("a session lives 167 more hours") || out.contains("a session lives 168 more hours"),
        "{out}"
    );
    assert!(out.contains("2 sessions for the user"), "{out}");
    assert!(out.contains("ended 2"), "{out}");
    assert_eq!(keys(&server), Vec::<String>::new());
}

#[test]
fn the_queue_example_runs_every_job_once() {
    let server = RedisServer::start();
    let out = run("queue", &[("REDIS_URL", &server.url())]);
    assert!(out.contains("20 jobs run, 20 done"), "{out}");
    assert_eq!(keys(&server), Vec::<String>::new());
}

#[test]
fn the_cluster_example_runs_on_a_cluster() {
    let cluster = RedisCluster::shared();
    let out = run("cluster", &[("REDIS_URL", &cluster.url())]);
    assert!(out.contains("a cluster: true"), "{out}");
    assert!(out.contains(r#"ann: ["repo-4", "repo-3"]"#), "{out}");
    assert!(out.contains("read back 15 of 15"), "{out}");
    assert!(out.contains("deleted 15"), "{out}");
    for node in cluster.nodes() {
        assert_eq!(keys(node), Vec::<String>::new(), "left on {}", node.url());
    }
}

#[test]
fn the_tls_example_runs_with_mutual_tls() {
    let files = TlsFiles::generate();
    let server = RedisServer::start_tls(&files, true);
    let path = |p: &PathBuf| p.to_string_lossy().into_owned();
    let (ca, cert, key) = (path(&files.ca_cert), path(&files.client_cert), path(&files.client_key));
    let out = run(
        "tls",
        &[
            ("REDIS_URL", &server.tls_url()),
            ("REDIS_CA", &ca),
            ("REDIS_CLIENT_CERT", &cert),
            ("REDIS_CLIENT_KEY", &key),
        ],
    );
    assert!(out.contains("read back over TLS: over TLS"), "{out}");
    assert_eq!(keys(&server), Vec::<String>::new());
}

/// Every key on the server: what an example left behind.
fn keys(server: &RedisServer) -> Vec<String> {
    let mut conn = server.client().get_connection().expect("a connection");
    redis::cmd("KEYS").arg("*").query(&mut conn).expect("KEYS")
}
