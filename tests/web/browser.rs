//! The web UI in headless Chromium (chromedriver, through fantoccini): the
//! live parts work under the page's Content-Security-Policy, hostile data
//! stays text, and an action goes through its confirmation.
//!
//! Needs `chromium` and `chromium-driver` (Debian's packages; `.ci/run`
//! installs them). A screenshot of each page is written under
//! `target/web-screenshots/` for a person to look at; the README's
//! `docs/web-ui.png` is its `overview.png`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use repobox_models::{Job, JobOutcome, JobStatus, now_millis};
use repobox_orm::Queue;
use repobox_orm::queue::Finished;
use repobox_orm::testing::RedisServer;

use crate::kit::{WebServer, job_in, store};

/// A chromedriver process and a headless Chromium session on it.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let driver_path = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver is missing: install Debian's chromium and chromium-driver (.ci/run does)");
        let port = RedisServer::free_port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1200,900", format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        driver,
                        _profile: profile,
                    };
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no browser session: {last:?}");
    }

    /// The text of the element `css`.
    async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
    }

    /// Waits until the text of `css` holds `wanted`.
    async fn wait_text(&self, css: &str, wanted: &str) {
        for _ in 0..300 {
            if let Ok(el) = self.client.find(Locator::Css(css)).await
                && el.text().await.is_ok_and(|t| t.contains(wanted))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let url = self.client.current_url().await.map(|u| u.to_string());
        let source = self.client.source().await.unwrap_or_default();
        panic!("{css} never showed {wanted:?} at {url:?}:\n{source}");
    }

    /// Saves what the browser shows as `target/web-screenshots/<name>.png`.
    async fn screenshot(&self, name: &str) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), self.client.screenshot().await.unwrap()).unwrap();
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_works_in_a_real_browser() {
    let server = RedisServer::start();
    let store = store(&server);
    let mut conn = store.clone();
    let web = WebServer::start(&server.url(), &[]);
    let browser = Browser::start().await;
    let b = &browser.client;

    // An hour of runs as runners count them, for the chart.
    let queue = Queue::new("jobs:stream", "runners");
    let now = now_millis();
    let mut finished = Vec::new();
    for minute in 0..60i64 {
        let at_ms = now - (59 - minute) * 60_000;
        let wave = usize::try_from(20 + (minute * 7 % 23)).unwrap();
        let took = Duration::from_millis(800);
        finished.extend((0..wave).map(|_| Finished {
            outcome: "succeeded",
            took,
            at_ms,
        }));
        finished.extend((0..wave / 6).map(|_| Finished {
            outcome: "failed",
            took,
            at_ms,
        }));
    }
    queue.count_finished(&mut conn, &finished).await.unwrap();

    // The overview follows the queue live (the script and SSE under the CSP).
    b.goto(&format!("{}/", web.base)).await.unwrap();
    browser.wait_text("#waiting", "0 waiting").await;
    for i in 0..3 {
        let job = Job::new(
            format!("q{i}"),
            format!("user-{i}"),
            "https://git.example/team/app.git",
            now_millis(),
        );
        Job::create_and_enqueue(&mut conn, &job, now_millis()).await.unwrap();
    }
    browser.wait_text("#waiting", "3 waiting").await;
    browser.screenshot("overview").await;
    b.goto(&format!("{}/jobs?status=queued", web.base)).await.unwrap();
    assert_eq!(b.find_all(Locator::Css("#jobs a")).await.unwrap().len(), 3);
    browser.screenshot("jobs").await;

    // Hostile fields stay text: no dialog, no element made from them.
    let hostile = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>\u{1b}[2J";
    job_in(&store, "j-evil", "u1", JobStatus::Failed, Some(hostile)).await;
    b.goto(&format!("{}/jobs/j-evil", web.base)).await.unwrap();
    assert!(b.get_alert_text().await.is_err(), "no script ran");
    assert!(b.find_all(Locator::Css("main img")).await.unwrap().is_empty());
    assert!(browser.text("td.error").await.contains("<script>alert(1)</script>"));
    assert!(browser.text("td.error").await.contains("\\u{1b}[2J"));
    browser.screenshot("job-hostile").await;

    // An action: the link, its confirmation page, the POST, the job after it.
    b.find(Locator::LinkText("Retry")).await.unwrap().click().await.unwrap();
    assert!(b.current_url().await.unwrap().path().ends_with("/confirm/retry"));
    b.find(Locator::Css("#confirm")).await.unwrap().click().await.unwrap();
    browser.wait_text("#status", "queued").await;
    assert_eq!(
        Job::get(&mut conn, "j-evil").await.unwrap().unwrap().status,
        JobStatus::Queued
    );

    // A job's output follows live, and the page stops when the job is over.
    Job::append_output(&mut conn, "q0", &["first line"]).await.unwrap();
    b.goto(&format!("{}/jobs/q0", web.base)).await.unwrap();
    browser.wait_text("#output", "first line").await;
    Job::append_output(&mut conn, "q0", &["second <b>line</b>"])
        .await
        .unwrap();
    browser.wait_text("#output", "second <b>line</b>").await;
    assert_eq!(browser.text("#output").await.matches("first line").count(), 1);
    Job::update_status(
        &mut conn,
        "q0",
        JobStatus::Cancelled,
        now_millis(),
        JobOutcome::default(),
    )
    .await
    .unwrap();
    browser.wait_text("#status", "cancelled").await;
    // The history and the actions follow the state too.
    browser.wait_text("ol.history", "cancelled").await;
    assert!(
        b.find(Locator::LinkText("Cancel")).await.is_err(),
        "a cancelled job offers no cancel"
    );
    browser.screenshot("job").await;

    // The dead letters: requeue one through its confirmation.
    let letter: String = {
        let mut c = server.client().get_connection().unwrap();
        redis::cmd("XADD")
            .arg("jobs:stream:dead")
            .arg("*")
            .arg(&[("job_id", "q1"), ("reason", "stalled 5 times"), ("deliveries", "5")])
            .query(&mut c)
            .unwrap()
    };
    b.goto(&format!("{}/dead", web.base)).await.unwrap();
    browser.wait_text("#dead", "stalled 5 times").await;
    browser.screenshot("dead").await;
    b.find(Locator::LinkText("Requeue"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(browser.text("main").await.contains(&letter));
    b.find(Locator::Css("#confirm")).await.unwrap().click().await.unwrap();
    browser.wait_text("main", "0 dead letter(s)").await;
    assert_eq!(queue.dead_len(&mut conn).await.unwrap(), 0);

    // The data page: a check on request, its report streamed in.
    b.goto(&format!("{}/data", web.base)).await.unwrap();
    b.find(Locator::Css("#check")).await.unwrap().click().await.unwrap();
    browser.wait_text("#counts", "Job").await;
    browser.screenshot("data").await;
    browser.close().await;
}
