//! `GET /jobs/{id}` (fields, history, output following live) and the actions
//! allowed in a job's state, each confirmed on a page of its own and posted
//! with the CSRF token.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::{Stream, StreamExt};
use maud::{Markup, html};
use repobox_models::{Follow, Job, JobStatus, OutputRange, now_millis};
use repobox_orm::RedisValue;
use serde::Deserialize;

use super::auth::Act;
use super::html::{Shown, confirm as confirm_page, encode, error_page, job_href, page, sse_html, text, time};
use super::{Web, failed};
use crate::output::clean;

/// Output lines a job's page shows before following.
const OUTPUT_SHOWN: isize = 500;

/// What may be done to a job in its state.
fn allowed(status: JobStatus) -> Vec<&'static str> {
    let mut actions = Vec::new();
    if status == JobStatus::Failed {
        actions.push("retry");
    }
    if status.is_scheduled() {
        actions.push("run-now");
    }
    if !status.is_final() {
        actions.push("cancel");
    }
    if status != JobStatus::Running {
        actions.push("delete");
    }
    actions
}

/// `GET /jobs/{id}`.
pub async fn show(State(web): State<Web>, Path(id): Path<String>) -> Response {
    let mut conn = web.store.clone();
    let job = match Job::get(&mut conn, id.as_str()).await {
        Ok(Some(job)) => job,
        Ok(None) => return error_page(&web, StatusCode::NOT_FOUND, &format!("no job {}", clean(&id))),
        Err(e) => return failed(&web, e),
    };
    // The last lines up to the count, so that following goes on from it.
    let shown = match Job::output_count(&mut conn, &id).await {
        Ok(n) => isize::try_from(n).unwrap_or(isize::MAX),
        Err(e) => return failed(&web, e),
    };
    let range = OutputRange {
        start: shown.saturating_sub(OUTPUT_SHOWN),
        end: shown - 1,
    };
    let lines = match Job::output(&mut conn, &id, range).await {
        Ok(lines) if shown > 0 => lines,
        Ok(_) => Vec::new(),
        Err(e) => return failed(&web, e),
    };
    let href = job_href(&job.id);
    page(
        &web,
        &format!("Job {}", job.id),
        html! {
            div #state { (state(&job, !web.read_only)) }
            h2 { "Output" }
            pre #output data-live=(if job.status.is_final() { String::new() } else { format!("{href}/live?from={shown}") }) {
                @for line in &lines { (Shown(line)) "\n" }
            }
        },
    )
}

/// The part of a job's page that changes while it runs: its fields, the
/// actions its state allows (unless `actions` is false: read-only), its
/// history.
fn state(job: &Job, actions: bool) -> Markup {
    let env_names: Vec<&str> = job.env.iter().map(|(k, _)| k.as_str()).collect();
    let href = job_href(&job.id);
    html! {
        table.fields {
            tr { th { "status" } td #status { (job.status.as_str()) } }
            tr { th { "user" } td { a href=(format!("/jobs?user={}", encode(&job.user_id))) { (Shown(&job.user_id)) } } }
            tr { th { "repository" } td { (Shown(&job.repo_url)) } }
            tr { th { "created" } td { (time(Some(job.created_at))) } }
            tr { th { "started" } td { (time(job.started_at)) } }
            tr { th { "finished" } td { (time(job.finished_at)) } }
            tr { th { "exit code" } td { @if let Some(c) = job.exit_code { (c) } @else { "-" } } }
            tr { th { "error" } td.error { (Shown(job.error.as_deref().unwrap_or("-"))) } }
            tr { th { "attempt" } td { (job.attempt()) } }
            tr { th { "priority" } td { (job.priority.map_or("normal", |p| p.as_str())) } }
            tr { th { "due" } td { (time(job.run_at)) } }
            tr { th { "progress" } td { @if let Some(p) = job.progress { (p) "% " } (Shown(job.progress_message.as_deref().unwrap_or(""))) } }
            tr { th { "cancel requested" } td { (time(job.cancel_requested_at)) } }
            // Values of the environment may be secrets: only the names.
            tr { th { "environment" } td { (Shown(&env_names.join(", "))) } }
        }
        @if actions {
            p.actions {
                @for action in allowed(job.status) {
                    a.button href=(format!("{href}/confirm/{action}")) { (label(action)) } " "
                }
            }
        }
        h2 { "History" }
        ol.history {
            @for change in &job.history {
                li {
                    span.status { (change.status.as_str()) } " at " (time(Some(change.at)))
                    @if let Some(attempt) = change.attempt { ", attempt " (attempt) }
                    @if let Some(run_at) = change.run_at { ", due " (time(Some(run_at))) }
                    @if let Some(reason) = &change.reason { ": " (Shown(reason)) }
                }
            }
        }
    }
}

fn label(action: &str) -> &'static str {
    match action {
        "retry" => "Retry",
        "run-now" => "Run now",
        "cancel" => "Cancel",
        "delete" => "Delete",
        _ => "?",
    }
}

/// `GET /jobs/{id}/live`: `line` events with each new output line (text,
/// escaped for the terminal as the CLI shows it), `state` events with the
/// job's fields as HTML, and `done` when the job is over.
pub async fn live(State(web): State<Web>, Path(id): Path<String>, Query(from): Query<From>) -> Response {
    let slot = match web.live_slot() {
        Ok(slot) => slot,
        Err(refused) => return *refused,
    };
    match Follow::start(&web.store, &id).await {
        Ok(follow) => Sse::new(follow_events(
            follow.from_line(from.from.unwrap_or(0)),
            !web.read_only,
            slot,
        ))
        .keep_alive(KeepAlive::default())
        .into_response(),
        Err(e) => failed(&web, e),
    }
}

/// Where following begins: the output lines the page shows already.
#[derive(Deserialize)]
pub struct From {
    from: Option<isize>,
}

/// The events of a followed job, until it is over or cannot be read (a
/// Redis that is away is waited for); `slot` is held as long.
fn follow_events(
    follow: Follow,
    actions: bool,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold((follow, false, slot), move |(mut follow, over, slot)| async move {
        if over {
            return None;
        }
        let mut events = Vec::new();
        let done = match follow.next().await {
            Ok(update) => {
                events.extend(
                    update
                        .lines
                        .iter()
                        .map(|l| Ok(Event::default().event("line").data(text(l)))),
                );
                events.push(Ok(Event::default()
                    .event("state")
                    .data(sse_html(state(&update.job, actions)))));
                update.done
            }
            Err(e) => {
                events.push(Ok(Event::default()
                    .event("problem")
                    .data(clean(&super::html::error_text(&e.to_string())))));
                // Only an unreachable Redis may come back; bad data stays bad.
                !e.orm().is_some_and(repobox_orm::Error::is_unreachable)
            }
        };
        if done {
            events.push(Ok(Event::default().event("done").data("")));
        }
        Some((futures_util::stream::iter(events), (follow, done, slot)))
    })
    .flatten()
}

/// `GET /jobs/{id}/confirm/{action}`.
pub async fn confirm(State(web): State<Web>, Path((id, action)): Path<(String, String)>) -> Response {
    if !["retry", "run-now", "cancel", "delete"].contains(&action.as_str()) {
        return error_page(&web, StatusCode::NOT_FOUND, "no such action");
    }
    let href = job_href(&id);
    confirm_page(
        &web,
        label(&action),
        html! { (label(&action)) " job " code { (Shown(&id)) } "?" },
        &format!("{href}/{action}"),
        &[],
        &href,
    )
}

/// `POST /jobs/{id}/{action}`: does it, then back to the job (or the list).
pub async fn act(State(web): State<Web>, Path((id, action)): Path<(String, String)>, Act(_): Act) -> Response {
    let mut conn = web.store.clone();
    let now = now_millis();
    let done = match action.as_str() {
        "retry" => Job::retry(&mut conn, &id, now).await.map(|_| "queued again"),
        "run-now" => Job::run_now(&mut conn, &id, now).await.map(|_| "queued now"),
        "cancel" => Job::cancel(&mut conn, &id, now).await.map(|c| match c {
            repobox_models::Cancel::Cancelled => "cancelled",
            repobox_models::Cancel::Requested => "asked to cancel",
        }),
        "delete" => Job::remove(&mut conn, &id).await.map(|_| "deleted"),
        _ => return error_page(&web, StatusCode::NOT_FOUND, "no such action"),
    };
    match done {
        Ok(what) => {
            tracing::info!(job_id = %clean(&id), action = %action, "job {what} from the web UI");
            if action == "delete" {
                Redirect::to("/jobs").into_response()
            } else {
                Redirect::to(&job_href(&id)).into_response()
            }
        }
        // Redis away, a bad id, a job that cannot be read: as a page answers them.
        Err(e) if e.orm().is_some() => failed(&web, e),
        Err(e) => error_page(&web, StatusCode::CONFLICT, &e.to_string()),
    }
}
