//! `GET /`: the queue at a glance, and `GET /live/overview`, the same
//! fragment every two seconds as Server-Sent Events.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use maud::{Markup, html};
use repobox_models::{JOBS_GROUP, JOBS_STREAM, Job, JobStatus, Overview, level_queues, now_millis};
use repobox_orm::queue::{Consumer, Metrics};
use repobox_orm::{Page, Queue, RedisValue, Store};
use tokio::sync::OwnedSemaphorePermit;

use super::html::{Shown, error_text, job_href, page as layout, sse_html};
use super::{Web, chart};

/// How often the live fragment is sent.
const EVERY: Duration = Duration::from_secs(2);
/// How many running jobs the overview lists.
const RUNNING_SHOWN: usize = 20;

/// What the overview shows. Only the queue's [`Overview`] is needed: a
/// part that cannot be read (a value another client broke) is shown as
/// its error, and the rest still is.
struct Glance {
    overview: Overview,
    metrics: Result<Metrics, String>,
    /// Runners by name: pending deliveries and the least idle time over the levels.
    runners: Result<BTreeMap<String, (u64, Duration)>, String>,
    /// The newest running jobs, with the runner that holds each (when known).
    running: Result<Vec<(Job, Option<String>)>, String>,
}

impl Glance {
    /// Reads it in a fixed number of calls: the overview's, the metrics',
    /// two per level (consumers, pending deliveries), and a page of the
    /// running jobs.
    async fn read(store: &Store) -> repobox_models::Result<Glance> {
        let mut conn = store.clone();
        let overview = Overview::read(&mut conn).await?;
        let queue = Queue::new(JOBS_STREAM, JOBS_GROUP);
        let metrics = queue
            .metrics(&mut conn, &["succeeded", "failed"], now_millis())
            .await
            .map_err(|e| e.to_string());
        let mut holder: HashMap<String, String> = HashMap::new();
        let runners = runners(&mut conn, &mut holder).await.map_err(|e| e.to_string());
        let running = Job::by_status(&mut conn, JobStatus::Running, Page::newest(RUNNING_SHOWN))
            .await
            .map_err(|e| e.to_string())
            .map(|listing| {
                listing
                    .items
                    .into_iter()
                    .map(|job| {
                        let runner = job.run_entry.as_ref().and_then(|e| holder.get(e)).cloned();
                        (job, runner)
                    })
                    .collect()
            });
        Ok(Glance {
            overview,
            metrics,
            runners,
            running,
        })
    }
}

/// The consumers of every level by name, and who holds each pending entry.
async fn runners(
    conn: &mut Store,
    holder: &mut HashMap<String, String>,
) -> repobox_orm::Result<BTreeMap<String, (u64, Duration)>> {
    let mut runners: BTreeMap<String, (u64, Duration)> = BTreeMap::new();
    for (_, q) in level_queues() {
        let consumers: Vec<Consumer> = match q.consumers(conn).await {
            Ok(c) => c,
            Err(e) if e.is_missing_group() => continue,
            Err(e) => return Err(e),
        };
        for c in consumers {
            let seen = runners.entry(c.name).or_insert((0, c.idle));
            seen.0 = seen.0.saturating_add(c.pending);
            seen.1 = seen.1.min(c.idle);
        }
        for p in q.pending_entries(conn, 100).await? {
            holder.insert(p.id, p.consumer);
        }
    }
    Ok(runners)
}

/// `GET /`.
pub async fn page(State(web): State<Web>) -> Response {
    let (body, read) = fragment(&web.store).await;
    let mut response = layout(
        &web,
        "Overview",
        html! {
            div #live data-live="/live/overview" { (body) }
        },
    );
    if !read {
        // The body says what went wrong; the status says it to a script.
        *response.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
    }
    response
}

/// `GET /live/overview`: the overview's fragment every two seconds.
pub async fn live(State(web): State<Web>) -> Response {
    match web.live_slot() {
        Ok(slot) => Sse::new(fragments(web.store.clone(), slot))
            .keep_alive(KeepAlive::default())
            .into_response(),
        Err(refused) => *refused,
    }
}

/// The fragment every [`EVERY`], `slot` held as long as the stream.
fn fragments(store: Store, slot: OwnedSemaphorePermit) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold((store, slot), |(store, slot)| async move {
        tokio::time::sleep(EVERY).await;
        let html = sse_html(fragment(&store).await.0);
        Some((Ok(Event::default().event("overview").data(html)), (store, slot)))
    })
}

/// The overview's body, or what went wrong reading it (and whether it was read).
async fn fragment(store: &Store) -> (Markup, bool) {
    match Glance::read(store).await {
        Ok(glance) => (render(&glance), true),
        Err(e) => (
            html! {
                p.error { "Cannot read the queue: " (Shown(&error_text(&e.to_string()))) }
            },
            false,
        ),
    }
}

/// A part of the overview that could not be read.
fn unreadable(e: &str) -> Markup {
    html! { p.error { "Cannot read this part: " (Shown(&error_text(e))) } }
}

fn render(g: &Glance) -> Markup {
    let waiting: u64 = g.overview.levels.iter().map(|l| l.waiting).sum();
    let dead: u64 = g.overview.levels.iter().map(|l| l.dead).sum();
    let series = |m: &Metrics, name: &str| m.per_minute.get(name).cloned().unwrap_or_default();
    html! {
        section.cards {
            div.card #waiting { span.n { (waiting) } " waiting" }
            div.card #running { span.n { (g.overview.jobs_with(JobStatus::Running)) } " running" }
            div.card #delayed { span.n { (g.overview.jobs_with(JobStatus::Delayed)) } " delayed" }
            div.card #retrying { span.n { (g.overview.jobs_with(JobStatus::Retrying)) } " retrying" }
            div.card #dead { span.n { (dead) } " dead" }
            div.card #paused { span.n { @if g.overview.paused_since.is_some() { "paused" } @else { "running" } } " queue" }
        }
        h2 { "Runs per minute, last hour" }
        @match &g.metrics {
            Ok(m) => (chart::per_minute(&series(m, "succeeded"), &series(m, "failed"))),
            Err(e) => (unreadable(e)),
        }
        p.legend { span.succeeded { "completed" } " " span.failed { "failed" } }
        h2 { "Jobs by status" }
        table {
            tr { @for (status, _) in &g.overview.jobs { th { (status.as_str()) } } }
            tr { @for (status, n) in &g.overview.jobs {
                td { a href=(format!("/jobs?status={}", status.as_str())) { (n) } }
            } }
        }
        h2 { "Priority levels" }
        table {
            tr { th { "level" } th { "stream" } th { "waiting" } th { "pending" } th { "consumers" } th { "dead" } }
            @for level in &g.overview.levels {
                tr {
                    td { (level.level.as_str()) } td { (Shown(&level.stream)) } td { (level.waiting) }
                    td { (level.pending) } td { (level.consumers) } td { (level.dead) }
                }
            }
        }
        h2 { "Runners" }
        @match &g.runners {
            Err(e) => (unreadable(e)),
            Ok(runners) if runners.is_empty() => p { "No runner has read the queue yet." },
            Ok(runners) => table #runners {
                tr { th { "consumer" } th { "pending" } th { "idle" } }
                @for (name, (pending, idle)) in runners {
                    tr { td { (Shown(name)) } td { (pending) } td { (format!("{:.1} s", idle.as_secs_f64())) } }
                }
            }
        }
        h2 { "Running jobs" }
        @match &g.running {
            Err(e) => (unreadable(e)),
            Ok(running) if running.is_empty() => p { "None." },
            Ok(running) => table #running-jobs {
                tr { th { "job" } th { "user" } th { "runner" } th { "started" } th { "progress" } }
                @for (job, runner) in running {
                    tr {
                        td { a href=(job_href(&job.id)) { (Shown(&job.id)) } }
                        td { (Shown(&job.user_id)) }
                        td { (Shown(runner.as_deref().unwrap_or("-"))) }
                        td { (super::html::time(job.started_at)) }
                        td { @if let Some(p) = job.progress { (p) "%" } @else { "-" } }
                    }
                }
            }
        }
    }
}
