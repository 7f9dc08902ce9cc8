//! `repobox web` on a million entries: the overview, a deep page of jobs and
//! `/metrics`, each one HTTP request to the binary (which reads Redis for
//! it), on one `redis-server` holding 1,000,000 jobs (hashes and status and
//! user indexes) and 1,000,000 stream entries waiting. The target: under
//! 100 ms a page.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use repobox_orm::testing::RedisServer;

/// Jobs and stream entries written.
const ENTRIES: u64 = 1_000_000;

/// Writes the jobs, their index entries and the stream's entries inside the
/// server, in chunks.
fn seed(server: &RedisServer) {
    let mut conn = server.client().get_connection().unwrap();
    let script = redis::Script::new(
        r"
        local from, to = tonumber(ARGV[1]), tonumber(ARGV[2])
        for i = from, to do
            local id = 'm' .. i
            redis.call('HSET', 'job:' .. id, 'id', id, 'user_id', 'u' .. (i % 1000), 'repo_url', 'r',
                'status', 'succeeded', 'created_at', i, 'finished_at', i, 'started_at', i, 'exit_code', 0)
            redis.call('ZADD', 'jobs:status:succeeded', i, id)
            redis.call('ZADD', 'jobs:user:u' .. (i % 1000), i, id)
            redis.call('XADD', 'jobs:stream', '*', 'job_id', id, 'user_id', 'u' .. (i % 1000))
        end
        return to",
    );
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("jobs:stream")
        .arg("runners")
        .arg("$")
        .arg("MKSTREAM")
        .query(&mut conn)
        .unwrap();
    let chunk = 100_000;
    for from in (1..=ENTRIES).step_by(chunk) {
        let to = (from + chunk as u64 - 1).min(ENTRIES);
        let _: u64 = script.arg(from).arg(to).invoke(&mut conn).unwrap();
    }
}

fn web(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = RedisServer::start();
    seed(&server);
    let mut child = Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(["web", "--listen", "127.0.0.1:0"])
        .env("REDIS_URL", server.url())
        .env("REPOBOX_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line.trim().strip_prefix("listening on ").unwrap().to_owned();
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut g = c.benchmark_group("web_1m");
    g.sample_size(30).measurement_time(Duration::from_secs(5));
    for (name, path) in [
        ("overview", "/"),
        ("jobs_page_10000", "/jobs?status=succeeded&page=10000"),
        ("metrics", "/metrics"),
    ] {
        let url: hyper::Uri = format!("{base}{path}").parse().unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let response = client.get(url.clone()).await.unwrap();
                    assert!(response.status().is_success(), "{path}");
                    response.into_body().collect().await.unwrap().to_bytes().len()
                })
            })
        });
    }
    g.finish();
    let _ = child.kill();
    let _ = child.wait();
}

criterion_group!(benches, web);
criterion_main!(benches);
