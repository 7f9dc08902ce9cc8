//! `GET /data`: per model, how many entities there are and how healthy its
//! indexes are (the `index check` report), found by a walk run on request
//! whose progress streams to the page (`GET /data/live`); a repair behind a
//! confirmation. One walk at a time per server.

use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::{Stream, StreamExt};
use maud::{Markup, html};
use repobox_models::now_millis;
use repobox_orm::{IndexReport, Walk, WalkProgress};
use tokio::sync::OwnedSemaphorePermit;

use super::Web;
use super::auth::{Act, Posted};
use super::html::{Shown, confirm as confirm_page, csrf_field, error_text, page as layout, sse_html, time};

/// How often the progress is sent.
const EVERY: Duration = Duration::from_millis(500);

/// The data page's walks: the one running, and the last one's result.
#[derive(Default)]
pub struct Runs(Mutex<State_>);

#[derive(Default)]
struct State_ {
    /// The walk running: `check` or `repair`.
    running: Option<&'static str>,
    /// Its current pass and how far it is.
    pass: String,
    total: u64,
    done: u64,
    last: Option<Finished>,
}

/// What a finished walk found.
struct Finished {
    kind: &'static str,
    at: i64,
    found: Result<Found, String>,
}

struct Found {
    counts: Vec<(&'static str, u64)>,
    reports: Vec<(&'static str, IndexReport)>,
}

impl Runs {
    fn state(&self) -> std::sync::MutexGuard<'_, State_> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `kind` as running, unless a walk runs already.
    fn begin(&self, kind: &'static str) -> bool {
        let mut state = self.state();
        if state.running.is_some() {
            return false;
        }
        state.running = Some(kind);
        state.pass = "starting".into();
        state.total = 0;
        state.done = 0;
        true
    }
}

impl WalkProgress for Runs {
    fn pass(&self, what: &str, units: u64) {
        let mut state = self.state();
        state.pass = what.to_owned();
        state.total = units;
        state.done = 0;
    }

    fn advance(&self, units: u64) {
        let mut state = self.state();
        state.done = state.done.saturating_add(units);
    }
}

/// Runs a check (or a repair) in the background, its progress in `web.data`.
fn start(web: &Web, kind: &'static str) {
    if !web.data.begin(kind) {
        return;
    }
    tracing::info!(walk = kind, "an index {kind} begins, from the web UI");
    let web = web.clone();
    tokio::spawn(async move {
        let found = walk(&web, kind == "repair").await;
        match &found {
            Ok(_) => tracing::info!(walk = kind, "the index {kind} is done"),
            Err(e) => tracing::warn!(walk = kind, error = %e, "the index {kind} failed"),
        }
        let mut state = web.data.state();
        state.running = None;
        state.last = Some(Finished {
            kind,
            at: now_millis(),
            found,
        });
    });
}

async fn walk(web: &Web, repair: bool) -> Result<Found, String> {
    let mut conn = web.store.clone();
    let progress: &Runs = &web.data;
    let walk = Walk::new().progress(progress);
    let counts = repobox_models::count_entities(&mut conn, &walk)
        .await
        .map_err(|e| e.to_string())?;
    let reports = repobox_models::sweep_indexes(&mut conn, repair, &walk)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Found { counts, reports })
}

/// `GET /data`.
pub async fn page(State(web): State<Web>) -> Response {
    let body = fragment(&web);
    layout(&web, "Data", html! { div #data data-live="/data/live" { (body) } })
}

/// `POST /data/check`: reads only, so allowed in read-only mode.
pub async fn check(State(web): State<Web>, Posted(_): Posted) -> Response {
    start(&web, "check");
    Redirect::to("/data").into_response()
}

/// `GET /data/confirm-repair`.
pub async fn confirm_repair(State(web): State<Web>) -> Response {
    confirm_page(
        &web,
        "Repair",
        html! { "Repair every index of every model (remove entries of entities that are gone, re-score, add what is missing)?" },
        "/data/repair",
        &[],
        "/data",
    )
}

/// `POST /data/repair`.
pub async fn repair(State(web): State<Web>, Act(_): Act) -> Response {
    start(&web, "repair");
    Redirect::to("/data").into_response()
}

/// `GET /data/live`: the fragment every half second while a walk runs,
/// then once more and `done`.
pub async fn live(State(web): State<Web>) -> Response {
    match web.live_slot() {
        Ok(slot) => Sse::new(progress(web, slot))
            .keep_alive(KeepAlive::default())
            .into_response(),
        Err(refused) => *refused,
    }
}

/// The progress, `slot` held as long as the stream.
fn progress(web: Web, slot: OwnedSemaphorePermit) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold((web, false, slot), |(web, over, slot)| async move {
        if over {
            return None;
        }
        tokio::time::sleep(EVERY).await;
        let running = web.data.state().running.is_some();
        let mut events = vec![Ok(Event::default().event("data").data(sse_html(fragment(&web))))];
        if !running {
            events.push(Ok(Event::default().event("done").data("")));
        }
        Some((futures_util::stream::iter(events), (web, !running, slot)))
    })
    .flatten()
}

fn fragment(web: &Web) -> Markup {
    let state = web.data.state();
    html! {
        @if let Some(kind) = state.running {
            p #walking { "Index " (kind) " running: " (Shown(&state.pass)) }
            progress #walk max=(state.total.max(1)) value=(state.done.min(state.total)) {}
            span { " " (state.done) " of about " (state.total) " keys" }
        } @else {
            form method="post" action="/data/check" {
                (csrf_field(web))
                button #check type="submit" { "Check the indexes" }
            }
        }
        @if let Some(last) = &state.last {
            h2 { "Last " (last.kind) ", " (time(Some(last.at))) }
            @match &last.found {
                Err(e) => p.error { "It failed: " (Shown(&error_text(e))) },
                Ok(found) => (report(web, found, last.kind == "repair", state.running.is_some())),
            }
        } @else {
            p { "No check has run since the server started." }
        }
    }
}

fn report(web: &Web, found: &Found, repaired: bool, running: bool) -> Markup {
    let needs = found
        .reports
        .iter()
        .map(|(_, r)| r.needs_repair())
        .fold(0u64, u64::saturating_add);
    html! {
        table #counts {
            tr { th { "model" } th { "entities" } }
            @for (model, n) in &found.counts { tr { td { (model) } td { (n) } } }
        }
        table #indexes {
            tr { th { "index" } th { "kind" } th { "keys" } th { "members" } th { "gone" } th { "mismatched" }
                 th { "re-scored" } th { "missing" } th { "conflicts" } th { "bad" } th { "health" } }
            @for (model, r) in &found.reports {
                tr {
                    td { (model) "::" (r.index) } td { (r.kind) } td { (r.keys) } td { (r.members) } td { (r.gone) }
                    td { (r.mismatched) } td { (r.rescored) } td { (r.missing) } td { (r.conflicts) } td { (r.bad) }
                    td { @if r.needs_repair().saturating_add(r.conflicts).saturating_add(r.bad) == 0 { "ok" } @else if repaired { "repaired" } @else { "needs attention" } }
                }
            }
        }
        @for (model, r) in &found.reports {
            @for problem in &r.problems { p.problem { (model) "::" (r.index) ": " (Shown(&error_text(problem))) } }
        }
        @if !repaired && needs > 0 && !web.read_only && !running {
            p { (needs) " entr(y/ies) need a repair. " a.button #repair href="/data/confirm-repair" { "Repair…" } }
        }
    }
}
