//! Every page and action over HTTP, and the rules around them.

use repobox_models::{Job, JobStatus, now_millis};
use repobox_orm::testing::RedisServer;

use crate::kit::{WebServer, calls, delta, get, job_in, open_stream, post, send, store};

/// A dead letter as a runner writes it.
fn dead_letter(server: &RedisServer, job_id: &str, reason: &str) -> String {
    let mut conn = server.client().get_connection().unwrap();
    redis::cmd("XADD")
        .arg("jobs:stream:dead")
        .arg("*")
        .arg(&[
            ("job_id", job_id),
            ("user_id", "u"),
            ("original_id", "1-0"),
            ("reason", reason),
            ("deliveries", "5"),
            ("consumer", "runner-a"),
            ("dead_at", "1700000000000"),
        ])
        .query(&mut conn)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_answers_with_the_security_headers() {
    let server = RedisServer::start();
    let store = store(&server);
    job_in(&store, "j-failed", "u1", JobStatus::Failed, Some("boom")).await;
    let letter = dead_letter(&server, "j-failed", "too many deliveries");
    let web = WebServer::start(&server.url(), &[]);
    let pages = [
        "/",
        "/jobs",
        "/jobs?status=failed",
        "/jobs?user=u1",
        "/jobs/j-failed",
        "/jobs/j-failed/confirm/retry",
        "/dead",
        &format!("/dead/confirm?action=delete&id={letter}"),
        "/data",
    ];
    for path in pages {
        let reply = get(&format!("{}{path}", web.base)).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert!(reply.header("content-type").starts_with("text/html"), "{path}");
        assert!(
            reply.header("content-security-policy").contains("script-src 'self'")
                && !reply.header("content-security-policy").contains("unsafe-inline"),
            "{path}"
        );
        assert_eq!(reply.header("x-frame-options"), "DENY", "{path}");
        assert_eq!(reply.header("x-content-type-options"), "nosniff", "{path}");
        assert!(
            !reply.body.contains("<script>"),
            "{path}: only the script file, never inline"
        );
    }
    let list = get(&format!("{}/jobs?status=failed", web.base)).await;
    assert!(
        list.body.contains("j-failed") && list.body.contains("1 job(s)"),
        "{}",
        list.body
    );
    // A record another client broke is a row of its own, with its key.
    let mut raw = server.client().get_connection().unwrap();
    let _: () = redis::cmd("HSET")
        .arg("job:j-broken")
        .arg(&[
            ("id", "j-broken"),
            ("user_id", "u1"),
            ("status", "failed"),
            ("created_at", "soon"),
        ])
        .query(&mut raw)
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("jobs:status:failed")
        .arg(2)
        .arg("j-broken")
        .query(&mut raw)
        .unwrap();
    let list = get(&format!("{}/jobs?status=failed", web.base)).await;
    assert_eq!(list.status, 200);
    assert!(
        list.body.contains("unreadable") && list.body.contains("job:j-broken"),
        "{}",
        list.body
    );
    assert!(list.body.contains(">j-failed<"), "the readable job is listed too");
    let dead = get(&format!("{}/dead", web.base)).await;
    assert!(dead.body.contains(&letter) && dead.body.contains("too many deliveries"));
    let missing = get(&format!("{}/jobs/nope", web.base)).await;
    assert_eq!(missing.status, 404);
    assert_eq!(get(&format!("{}/no/such/page", web.base)).await.status, 404);
    assert_eq!(get(&format!("{}/jobs?status=bogus", web.base)).await.status, 400);
    // An id no key can hold is the request's fault, not Redis's.
    assert_eq!(get(&format!("{}/jobs/a%3Ab", web.base)).await.status, 400);
    assert_eq!(get(&format!("{}/jobs?user=a%3Ab", web.base)).await.status, 400);
    for asset in ["/assets/app.js", "/assets/style.css"] {
        let reply = get(&format!("{}{asset}", web.base)).await;
        assert_eq!(reply.status, 200, "{asset}");
        assert!(reply.body.len() > 100, "{asset}");
    }
    let metrics = get(&format!("{}/metrics", web.base)).await;
    assert_eq!(metrics.status, 200);
    let lines: Vec<_> = metrics.body.lines().map(|l| Ok(l.to_owned())).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).expect("the Prometheus text format");
    let value = |name: &str| {
        scrape.samples.iter().find(|s| s.metric == name).map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v) => v,
            _ => f64::NAN,
        })
    };
    assert_eq!(value("repobox_queue_up"), Some(1.0));
    assert!(scrape.samples.iter().any(|s| s.metric == "repobox_queue_dead_letters"
        && matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 1.0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_the_csrf_token_and_do_what_they_say() {
    let server = RedisServer::start();
    let store = store(&server);
    let mut conn = store.clone();
    job_in(&store, "j-failed", "u1", JobStatus::Failed, Some("boom")).await;
    job_in(&store, "j-delayed", "u1", JobStatus::Delayed, None).await;
    let queued = Job::new("j-queued", "u1", "r", now_millis());
    Job::create_and_enqueue(&mut conn, &queued, now_millis()).await.unwrap();
    job_in(&store, "j-done", "u1", JobStatus::Succeeded, None).await;
    let web = WebServer::start(&server.url(), &[]);
    let page = get(&format!("{}/jobs/j-failed", web.base)).await;
    assert!(page.body.contains("/jobs/j%2Dfailed/confirm/retry"), "{}", page.body);
    let confirm = get(&format!("{}/jobs/j-failed/confirm/retry", web.base)).await;
    let csrf = confirm.csrf();
    let status = async |id: &str| Job::get(&mut store.clone(), id).await.unwrap().map(|j| j.status);

    // Without the token, with a wrong one, from another site: refused, nothing done.
    let url = format!("{}/jobs/j-failed/retry", web.base);
    assert_eq!(send("POST", &url, &[], Some(&[])).await.status, 403);
    assert_eq!(post(&url, &"0".repeat(64), &[]).await.status, 403);
    let cross = [("origin", "http://evil.example")];
    let form = [("csrf", csrf.as_str())];
    assert_eq!(send("POST", &url, &cross, Some(&form)).await.status, 403);
    let cross = [("sec-fetch-site", "cross-site")];
    assert_eq!(send("POST", &url, &cross, Some(&form)).await.status, 403);
    assert_eq!(status("j-failed").await, Some(JobStatus::Failed));

    // With it: done, and back to the job.
    let done = post(&url, &csrf, &[]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.header("location"), "/jobs/j%2Dfailed");
    assert_eq!(status("j-failed").await, Some(JobStatus::Queued));
    assert_eq!(
        post(&format!("{}/jobs/j-delayed/run-now", web.base), &csrf, &[])
            .await
            .status,
        303
    );
    assert_eq!(status("j-delayed").await, Some(JobStatus::Queued));
    assert_eq!(
        post(&format!("{}/jobs/j-queued/cancel", web.base), &csrf, &[])
            .await
            .status,
        303
    );
    assert_eq!(status("j-queued").await, Some(JobStatus::Cancelled));
    assert_eq!(
        post(&format!("{}/jobs/j-done/delete", web.base), &csrf, &[])
            .await
            .status,
        303
    );
    assert_eq!(status("j-done").await, None);
    // An action the state does not allow: a clear refusal, nothing changed.
    let refused = post(&format!("{}/jobs/j-queued/retry", web.base), &csrf, &[]).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains("cannot go from cancelled to queued"),
        "{}",
        refused.body
    );

    // Dead letters: requeue one onto its stream, delete another.
    let first = dead_letter(&server, "j-failed", "stalled");
    let second = dead_letter(&server, "j-x", "stalled");
    let queue = repobox_orm::Queue::new("jobs:stream", "runners");
    let before = queue.len(&mut conn).await.unwrap();
    let requeue = post(
        &format!("{}/dead/act", web.base),
        &csrf,
        &[("action", "requeue"), ("id", &first)],
    )
    .await;
    assert_eq!(requeue.status, 303, "{}", requeue.body);
    assert_eq!(queue.len(&mut conn).await.unwrap(), before + 1);
    let delete = post(
        &format!("{}/dead/act", web.base),
        &csrf,
        &[("action", "delete"), ("id", &second)],
    )
    .await;
    assert_eq!(delete.status, 303);
    assert_eq!(queue.dead_len(&mut conn).await.unwrap(), 0);
    let bad = post(
        &format!("{}/dead/act", web.base),
        &csrf,
        &[("action", "delete"), ("id", "+")],
    )
    .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_hides_and_refuses_every_action() {
    let server = RedisServer::start();
    let store = store(&server);
    job_in(&store, "j-failed", "u1", JobStatus::Failed, Some("boom")).await;
    let letter = dead_letter(&server, "j-failed", "stalled");
    let web = WebServer::start(&server.url(), &["--read-only"]);
    let page = get(&format!("{}/jobs/j-failed", web.base)).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("/confirm/"), "no action offered: {}", page.body);
    assert!(page.body.contains("read-only"));
    let dead = get(&format!("{}/dead", web.base)).await;
    assert!(!dead.body.contains("/dead/confirm"), "{}", dead.body);
    assert_eq!(
        get(&format!("{}/jobs/j-failed/confirm/retry", web.base)).await.status,
        403
    );
    assert_eq!(get(&format!("{}/data/confirm-repair", web.base)).await.status, 403);
    // The data page's check only reads: it has a form, whose token we use.
    let csrf = get(&format!("{}/data", web.base)).await.csrf();
    for (path, fields) in [
        ("/jobs/j-failed/retry", vec![]),
        ("/jobs/j-failed/delete", vec![]),
        ("/dead/act", vec![("action", "delete"), ("id", letter.as_str())]),
        ("/data/repair", vec![]),
    ] {
        let reply = post(&format!("{}{path}", web.base), &csrf, &fields).await;
        assert_eq!(reply.status, 403, "{path}");
    }
    assert_eq!(
        Job::get(&mut store.clone(), "j-failed").await.unwrap().unwrap().status,
        JobStatus::Failed
    );
    let mut conn = store.clone();
    assert_eq!(
        repobox_orm::Queue::new("jobs:stream", "runners")
            .dead_len(&mut conn)
            .await
            .unwrap(),
        1
    );
    assert_eq!(post(&format!("{}/data/check", web.base), &csrf, &[]).await.status, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_every_page_and_the_login_cookie_is_http_only_and_strict() {
    let server = RedisServer::start();
    let token = "s3cret-token-of-the-web-ui";
    let web = WebServer::start(&server.url(), &["--token", token]);
    let url = format!("{}/jobs", web.base);
    assert_eq!(get(&url).await.status, 401);
    assert_eq!(get(&format!("{}/metrics", web.base)).await.status, 401);
    assert_eq!(get(&format!("{}/live/overview", web.base)).await.status, 401);
    let browser = send("GET", &url, &[("accept", "text/html")], None).await;
    assert_eq!((browser.status, browser.header("location")), (303, "/login"));
    assert_eq!(
        send("GET", &url, &[("authorization", "Bearer wrong")], None)
            .await
            .status,
        401
    );
    let bearer = format!("Bearer {token}");
    let ok = send("GET", &url, &[("authorization", bearer.as_str())], None).await;
    assert_eq!(ok.status, 200);
    assert!(!ok.body.contains(token), "the token is never rendered");
    // The login form: a wrong token is refused, the right one sets the cookie.
    let login = get(&format!("{}/login", web.base)).await;
    assert_eq!(login.status, 200);
    // The form anyone sees shows neither the actions' CSRF token nor Redis.
    assert!(
        !login.body.contains("127.0.0.1:") && !login.body.contains("/logout"),
        "{}",
        login.body
    );
    let csrf = login.csrf();
    let actions_csrf = ok.csrf();
    assert_ne!(csrf, actions_csrf);
    let wrong = post(&format!("{}/login", web.base), &csrf, &[("token", "nope")]).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_empty());
    let right = post(&format!("{}/login", web.base), &csrf, &[("token", token)]).await;
    assert_eq!(right.status, 303);
    let cookie = right.header("set-cookie").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(token),
        "the cookie is a session id, not the token: {cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let with_cookie = send("GET", &url, &[("cookie", session.as_str())], None).await;
    assert_eq!(with_cookie.status, 200);
    assert_eq!(
        send("GET", &url, &[("cookie", "repobox_session=forged")], None)
            .await
            .status,
        401
    );
    // Log out: the session ends on the server.
    let out = send(
        "POST",
        &format!("{}/logout", web.base),
        &[("cookie", session.as_str())],
        Some(&[("csrf", actions_csrf.as_str())]),
    )
    .await;
    assert_eq!(out.status, 303);
    assert_eq!(
        send("GET", &url, &[("cookie", session.as_str())], None).await.status,
        401
    );
}

#[test]
fn another_address_than_loopback_requires_a_token() {
    let server = RedisServer::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(["web", "--listen", "0.0.0.0:0"])
        .env("REDIS_URL", server.url())
        .env_remove("REPOBOX_WEB_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("give a token"), "{stderr}");
    // With one it serves (reached here through loopback).
    let short = std::process::Command::new(env!("CARGO_BIN_EXE_repobox"))
        .args(["web", "--listen", "127.0.0.1:0", "--token", "short"])
        .env("REDIS_URL", server.url())
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&short.stderr).contains("too short"));
    let token = "a-token-of-sixteen-or-more";
    let web = WebServer::start(&server.url(), &["--listen", "0.0.0.0:0", "--token", token]);
    let port = web.base.rsplit(':').next().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    let url = format!("http://127.0.0.1:{port}/jobs");
    let reply = tokio::runtime::Runtime::new().unwrap().block_on(send(
        "GET",
        &url,
        &[("authorization", bearer.as_str())],
        None,
    ));
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_asked_for_under_another_host_name_is_refused() {
    let server = RedisServer::start();
    let web = WebServer::start(&server.url(), &["--allow-host", "repobox.internal"]);
    let url = format!("{}/", web.base);
    // A page of another site that rebinds its name to 127.0.0.1.
    assert_eq!(
        send("GET", &url, &[("host", "evil.example:80")], None).await.status,
        421
    );
    assert_eq!(
        send("GET", &url, &[("host", "repobox.internal")], None).await.status,
        200
    );
    let port = web.base.rsplit(':').next().unwrap();
    let localhost = format!("localhost:{port}");
    assert_eq!(
        send("GET", &url, &[("host", localhost.as_str())], None).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_fields_are_shown_as_text() {
    let server = RedisServer::start();
    let store = store(&server);
    let script = "<script>alert(1)</script>";
    let img = "\"><img src=x onerror=alert(2)>";
    let escape = "\u{1b}[2J\u{1b}]0;pwned\u{7}";
    let hostile = format!("{script}{img}{escape}");
    let mut job = job_in(&store, "j-evil", "u1", JobStatus::Failed, Some(&hostile)).await;
    job.repo_url = hostile.clone();
    job.history[0].reason = Some(hostile.clone());
    job.progress_message = Some(hostile.clone());
    job.env = vec![("API_KEY".into(), "value-that-is-a-secret".into())];
    Job::save(&mut store.clone(), &job).await.unwrap();
    Job::append_output(&mut store.clone(), "j-evil", &[hostile.as_str()])
        .await
        .unwrap();
    dead_letter(&server, "j-evil", &hostile);
    let web = WebServer::start(&server.url(), &[]);
    for path in ["/jobs/j-evil", "/jobs?status=failed", "/dead"] {
        let body = get(&format!("{}{path}", web.base)).await.body;
        assert!(!body.contains(script) && !body.contains("<img"), "{path}: {body}");
        assert!(!body.contains('\u{1b}') && !body.contains('\u{7}'), "{path}");
        assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{path}: {body}");
        assert!(body.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"), "{path}");
        assert!(body.contains("\\u{1b}[2J"), "{path}");
    }
    let page = get(&format!("{}/jobs/j-evil", web.base)).await.body;
    assert!(
        page.contains("API_KEY") && !page.contains("value-that-is-a-secret"),
        "{page}"
    );
    // An environment another client wrote in another shape: the job cannot
    // be read, and no page, stream or error shows its values.
    let mut raw = server.client().get_connection().unwrap();
    let _: () = redis::cmd("HSET")
        .arg("job:j-env")
        .arg(&[
            ("id", "j-env"),
            ("user_id", "u1"),
            ("repo_url", "r"),
            ("status", "failed"),
            ("created_at", "5"),
            ("env", r#"{"DB_PASSWORD":"SUPERSECRET"}"#),
        ])
        .query(&mut raw)
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("jobs:status:failed")
        .arg(5)
        .arg("j-env")
        .query(&mut raw)
        .unwrap();
    for path in [
        "/jobs/j-env",
        "/jobs?status=failed",
        "/jobs/j-env/live?from=0",
        "/jobs/j-env/delete",
    ] {
        let reply = if path.ends_with("delete") {
            let csrf = get(&format!("{}/data", web.base)).await.csrf();
            post(&format!("{}{path}", web.base), &csrf, &[]).await
        } else {
            get(&format!("{}{path}", web.base)).await
        };
        assert!(!reply.body.contains("SUPERSECRET"), "{path}: {}", reply.body);
        assert!(reply.body.contains("`env`"), "{path} names the field: {}", reply.body);
        if path == "/jobs/j-env" {
            assert_eq!(reply.status, 500, "data that cannot be read is not an outage");
        }
    }
}

/// Writes `n` succeeded jobs and their index entries inside the server (a
/// script), as quickly as Redis can.
fn seed(server: &RedisServer, n: u64) {
    let mut conn = server.client().get_connection().unwrap();
    let script = redis::Script::new(
        r"
        local n = tonumber(ARGV[1])
        for i = 1, n do
            local id = 'm' .. i
            redis.call('HSET', 'job:' .. id, 'id', id, 'user_id', 'bulk', 'repo_url', 'r',
                'status', 'succeeded', 'created_at', i, 'finished_at', i, 'started_at', i, 'exit_code', 0)
            redis.call('ZADD', 'jobs:status:succeeded', i, id)
            redis.call('ZADD', 'jobs:user:bulk', i, id)
        end
        return n",
    );
    let _: u64 = script.arg(n).invoke(&mut conn).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_a_million_jobs_answer_in_a_few_calls_without_a_scan() {
    let server = RedisServer::start();
    seed(&server, 1_000_000);
    let web = WebServer::start(&server.url(), &[]);
    // The server's connection is made (HELLO) before the counting.
    assert_eq!(get(&format!("{}/jobs", web.base)).await.status, 200);
    for (path, bound) in [
        // A range, a count, and the page's 50 hashes (one pipeline).
        ("/jobs?status=succeeded", 52),
        ("/jobs?status=succeeded&page=10000", 52),
        ("/jobs?user=bulk&page=20000", 52),
        ("/", 40),
        ("/metrics", 30),
    ] {
        let before = calls(&server);
        let reply = get(&format!("{}{path}", web.base)).await;
        let (per, sum) = delta(&before, &calls(&server));
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            !per.contains_key("scan") && !per.contains_key("keys"),
            "{path}: {per:?}"
        );
        assert!(sum <= bound, "{path}: {sum} calls: {per:?}");
        if path.starts_with("/jobs") {
            assert!(reply.body.contains("1000000 job(s)"), "{path}");
            assert_eq!(reply.body.matches("<tr>").count(), 51, "{path}: a header and 50 rows");
        }
    }
    let deep = get(&format!("{}/jobs?status=succeeded&page=10000", web.base)).await;
    // Newest first: page 10,000 of 50 skips 499,950 and holds jobs 500,050 down to 500,001.
    assert!(
        deep.body.contains(">m500050<") && deep.body.contains(">m500001<"),
        "{}",
        deep.body
    );
    assert!(!deep.body.contains(">m500051<") && !deep.body.contains(">m500000<"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_page_counts_checks_and_repairs() {
    let server = RedisServer::start();
    let store = store(&server);
    for i in 0..3 {
        job_in(&store, &format!("j{i}"), "u1", JobStatus::Succeeded, None).await;
    }
    // A ghost in an index, as a crashed writer of another client leaves it.
    let mut conn = server.client().get_connection().unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("jobs:user:u1")
        .arg(1)
        .arg("ghost")
        .query(&mut conn)
        .unwrap();
    let web = WebServer::start(&server.url(), &[]);
    let csrf = get(&format!("{}/data", web.base)).await.csrf();
    assert_eq!(post(&format!("{}/data/check", web.base), &csrf, &[]).await.status, 303);
    let page = wait_for_walk(&web).await;
    assert!(page.contains("<td>Job</td><td>3</td>"), "{page}");
    assert!(
        page.contains("needs attention") && page.contains("/data/confirm-repair"),
        "{page}"
    );
    assert_eq!(get(&format!("{}/data/confirm-repair", web.base)).await.status, 200);
    assert_eq!(post(&format!("{}/data/repair", web.base), &csrf, &[]).await.status, 303);
    let page = wait_for_walk(&web).await;
    assert!(page.contains("Last repair"), "{page}");
    let left: Option<f64> = redis::cmd("ZSCORE")
        .arg("jobs:user:u1")
        .arg("ghost")
        .query(&mut conn)
        .unwrap();
    assert_eq!(left, None, "the repair removed the ghost");
    // The progress stream ends once no walk runs.
    let live = get(&format!("{}/data/live", web.base)).await;
    assert!(
        live.body.contains("event: data") && live.body.contains("event: done"),
        "{}",
        live.body
    );
}

/// The data page once its walk is over.
async fn wait_for_walk(web: &WebServer) -> String {
    for _ in 0..600 {
        let page = get(&format!("{}/data", web.base)).await.body;
        if !page.contains("id=\"walking\"") && page.contains("Last ") {
            return page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the walk did not end within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_pages_say_so_and_come_back_with_it() {
    let mut server = RedisServer::start();
    let store = store(&server);
    job_in(&store, "j1", "u1", JobStatus::Failed, None).await;
    let web = WebServer::start(&server.url(), &[]);
    assert_eq!(get(&format!("{}/jobs/j1", web.base)).await.status, 200);
    server.kill();
    let down = get(&format!("{}/jobs/j1", web.base)).await;
    assert_eq!(down.status, 503, "{}", down.body);
    let overview = get(&format!("{}/", web.base)).await;
    assert_eq!(overview.status, 503);
    assert!(overview.body.contains("Cannot read the queue"), "{}", overview.body);
    let metrics = get(&format!("{}/metrics", web.base)).await;
    assert!(metrics.body.contains("repobox_queue_up 0"), "{}", metrics.body);
    server.restart();
    let mut back = 0;
    for _ in 0..100 {
        back = get(&format!("{}/jobs?status=failed", web.base)).await.status;
        if back == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(back, 200, "the server's pages come back with Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_never_write_even_over_a_broken_index() {
    let server = RedisServer::start();
    let store = store(&server);
    job_in(&store, "f1", "u1", JobStatus::Failed, Some("boom")).await;
    job_in(&store, "r1", "u1", JobStatus::Running, None).await;
    // What a crashed writer of another client leaves: a member whose job is
    // gone, and one whose job has another status.
    let mut raw = server.client().get_connection().unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("jobs:status:running")
        .arg(1)
        .arg("gone")
        .query(&mut raw)
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("jobs:status:running")
        .arg(1)
        .arg("f1")
        .query(&mut raw)
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("jobs:user:u1")
        .arg(1)
        .arg("gone")
        .query(&mut raw)
        .unwrap();
    let web = WebServer::start(&server.url(), &["--read-only"]);
    assert_eq!(get(&format!("{}/jobs", web.base)).await.status, 200);
    let before = calls(&server);
    for path in [
        "/",
        "/jobs?status=running",
        "/jobs?user=u1",
        "/jobs/f1",
        "/dead",
        "/data",
        "/metrics",
    ] {
        let reply = get(&format!("{}{path}", web.base)).await;
        assert_eq!(reply.status, 200, "{path}");
    }
    let running = get(&format!("{}/jobs?status=running", web.base)).await.body;
    assert!(running.contains(">r1<") && !running.contains(">f1<"), "{running}");
    let (per, _) = delta(&before, &calls(&server));
    for write in ["zrem", "zadd", "eval", "evalsha", "hset", "del", "xadd", "srem"] {
        assert!(!per.contains_key(write), "a GET wrote ({write}): {per:?}");
    }
    let card: u64 = redis::cmd("ZCARD").arg("jobs:status:running").query(&mut raw).unwrap();
    assert_eq!(card, 3, "the index is left as it was");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_are_capped_and_end_on_data_that_cannot_be_read() {
    let server = RedisServer::start();
    let web = WebServer::start(&server.url(), &[]);
    // A job that cannot be: its stream says so and ends (the GET completes).
    let bad = get(&format!("{}/jobs/a%3Ab/live", web.base)).await;
    assert!(
        bad.body.contains("event: problem") && bad.body.contains("event: done"),
        "{}",
        bad.body
    );
    let mut open = Vec::new();
    for _ in 0..64 {
        let stream = open_stream(&format!("{}/live/overview", web.base)).await;
        assert_eq!(stream.status(), 200);
        open.push(stream);
    }
    let refused = get(&format!("{}/live/overview", web.base)).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(get(&format!("{}/jobs/x/live", web.base)).await.status, 503);
    // Pages still answer, and a closed stream frees its place.
    assert_eq!(get(&format!("{}/jobs", web.base)).await.status, 200);
    drop(open.pop());
    let mut again = 0;
    for _ in 0..50 {
        let stream = open_stream(&format!("{}/live/overview", web.base)).await;
        again = stream.status().as_u16();
        if again == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(again, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_and_allowed_hosts_other_hosts_are_refused() {
    let server = RedisServer::start();
    let token = "a-token-of-sixteen-or-more";
    let web = WebServer::start(&server.url(), &["--token", token, "--allow-host", "repobox.internal"]);
    let bearer = format!("Bearer {token}");
    let url = format!("{}/jobs", web.base);
    let evil = send(
        "GET",
        &url,
        &[("host", "evil.example"), ("authorization", bearer.as_str())],
        None,
    )
    .await;
    assert_eq!(evil.status, 421);
    let login = send("GET", &format!("{}/login", web.base), &[("host", "evil.example")], None).await;
    assert_eq!(login.status, 421, "a rebinding page cannot even read the login form");
    let good = send(
        "GET",
        &url,
        &[("host", "repobox.internal"), ("authorization", bearer.as_str())],
        None,
    )
    .await;
    assert_eq!(good.status, 200);
    // A missing asset is a plain 404, not a page with the layout.
    let asset = send(
        "GET",
        &format!("{}/assets/nope.js", web.base),
        &[("host", "repobox.internal")],
        None,
    )
    .await;
    assert_eq!(asset.status, 404);
    assert!(
        !asset.body.contains("csrf") && !asset.body.contains("<html"),
        "{}",
        asset.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_filter_by_user_and_status_together() {
    let server = RedisServer::start();
    let store = store(&server);
    for i in 0..130 {
        let status = if i % 3 == 0 {
            JobStatus::Failed
        } else {
            JobStatus::Succeeded
        };
        job_in(&store, &format!("j{i:03}"), "u1", status, None).await;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    job_in(&store, "other", "u2", JobStatus::Failed, None).await;
    let web = WebServer::start(&server.url(), &[]);
    let page = get(&format!("{}/jobs?user=u1&status=failed", web.base)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let rows = page.body.matches("<td class=\"status\">").count();
    assert_eq!(
        page.body.matches("<td class=\"status\">failed</td>").count(),
        rows,
        "{}",
        page.body
    );
    assert!(!page.body.contains(">other<"));
    // 44 of the 130 are failed: fewer than a page, so the walk looks at all 130.
    assert_eq!(rows, 44);
    assert!(
        page.body.contains(">j129<") && page.body.contains(">j000<"),
        "{}",
        page.body
    );
    assert!(page.body.contains("44 failed job(s) among the user"), "{}", page.body);
    assert!(page.body.contains("jobs 1 to 130 of 130"), "{}", page.body);
    assert!(!page.body.contains("rel=\"next\""), "nothing older is left");
}
