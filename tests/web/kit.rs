//! A `repobox web` process, an HTTP client, and what the tests seed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use repobox_models::{Job, JobStatus, now_millis};
use repobox_orm::Store;
use repobox_orm::testing::RedisServer;

/// A running `repobox web`; killed when dropped.
pub struct WebServer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl WebServer {
    /// `repobox web --listen 127.0.0.1:0 <args>` on `redis_url`, once it listens.
    pub fn start(redis_url: &str, args: &[&str]) -> WebServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_repobox"))
            .arg("web")
            .args(if args.contains(&"--listen") {
                &[][..]
            } else {
                &["--listen", "127.0.0.1:0"][..]
            })
            .args(args)
            .env("REDIS_URL", redis_url)
            .env_remove("REPOBOX_WEB_TOKEN")
            .env("REPOBOX_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run repobox web");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the address");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("repobox web did not start: {line:?}"))
            .to_owned();
        WebServer { child, base }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Reply {
    /// A header's value, `""` when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The CSRF token of the page's forms.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token")
            + 19;
        self.body[at..at + 64].to_owned()
    }
}

/// A request: `GET` without a body, `POST` with a form.
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], form: Option<&[(&str, &str)]>) -> Reply {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let body = match form {
        Some(fields) => {
            request = request.header("content-type", "application/x-www-form-urlencoded");
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish()
        }
        None => String::new(),
    };
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        client.request(request.body(Full::new(Bytes::from(body))).unwrap()),
    )
    .await
    .expect("an answer within 30 s")
    .expect("the request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.expect("the body").to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `GET url`.
pub async fn get(url: &str) -> Reply {
    send("GET", url, &[], None).await
}

/// `POST url` with `fields` and the page's CSRF token.
pub async fn post(url: &str, csrf: &str, fields: &[(&str, &str)]) -> Reply {
    let mut all = fields.to_vec();
    all.push(("csrf", csrf));
    send("POST", url, &[], Some(&all)).await
}

/// A store on the server.
pub fn store(server: &RedisServer) -> Store {
    Store::open(server.url().as_str()).unwrap()
}

/// Creates a job in `status` (its indexes kept), with `error` when given.
pub async fn job_in(store: &Store, id: &str, user: &str, status: JobStatus, error: Option<&str>) -> Job {
    let now = now_millis();
    let mut job = Job::new(id, user, "https://example.invalid/repo.git", now);
    job.status = status;
    job.error = error.map(str::to_owned);
    if status.is_final() {
        job.started_at = Some(now);
        job.finished_at = Some(now);
    }
    if status.is_scheduled() {
        job.run_at = Some(now + 3_600_000);
    }
    Job::create(&mut store.clone(), &job).await.unwrap();
    job
}

/// How often the server has run each command (`INFO
/// commandstats`), without `PING` and `INFO` (the web server's watch and
/// this count).
pub fn calls(server: &RedisServer) -> std::collections::BTreeMap<String, u64> {
    let mut conn = server.client().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut conn).unwrap();
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once(":calls=")?;
            let n = rest.split(',').next()?.parse().ok()?;
            Some((name.to_owned(), n))
        })
        .filter(|(name, _)| name != "ping" && name != "info")
        .collect()
}

/// The calls made between two [`calls`], per command, and their sum.
pub fn delta(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> (std::collections::BTreeMap<String, u64>, u64) {
    let per: std::collections::BTreeMap<String, u64> = after
        .iter()
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let sum = per.values().sum();
    (per, sum)
}

/// Opens a live stream: the answer's head, its body left open as long as
/// the value lives.
pub async fn open_stream(url: &str) -> hyper::Response<hyper::body::Incoming> {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = hyper::Request::get(url).body(Full::new(Bytes::new())).unwrap();
    tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .expect("an answer within 30 s")
        .expect("the request")
}
