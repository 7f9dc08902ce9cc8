//! `GET /dead`: the dead letters of every level (reason, deliveries), to
//! requeue one or all, or delete; each action confirmed, then posted.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use repobox_models::Job;
use repobox_orm::RedisValue;
use serde::Deserialize;

use super::auth::Act;
use super::html::{Shown, confirm as confirm_page, error_page, job_href, page as layout, time};
use super::{Web, failed};

/// Dead letters shown.
const SHOWN: usize = 500;

/// `GET /dead`.
pub async fn page(State(web): State<Web>) -> Response {
    let mut conn = web.store.clone();
    let letters = match Job::dead_letters(&mut conn, SHOWN).await {
        Ok(letters) => letters,
        Err(e) => return failed(&web, e),
    };
    layout(
        &web,
        "Dead letters",
        html! {
            p { (letters.len()) " dead letter(s)" @if letters.len() == SHOWN { " (the first " (SHOWN) ")" } }
            @if !web.read_only && !letters.is_empty() {
                p.actions { a.button href="/dead/confirm?action=requeue&all=1" { "Requeue all" } }
            }
            table #dead {
                tr { th { "letter" } th { "level" } th { "job" } th { "deliveries" } th { "reason" } th { "runner" } th { "dead since" } @if !web.read_only { th {} } }
                @for d in &letters {
                    tr {
                        td { (Shown(&d.entry.id)) }
                        td { (d.level.as_str()) }
                        td { @if let Some(job) = d.field("job_id") { a href=(job_href(job)) { (Shown(job)) } } @else { "-" } }
                        td { (Shown(d.field("deliveries").unwrap_or("-"))) }
                        td { (Shown(d.field("reason").unwrap_or("-"))) }
                        td { (Shown(d.field("consumer").unwrap_or("-"))) }
                        td { (time(d.field("dead_at").and_then(|t| t.parse().ok()))) }
                        @if !web.read_only {
                            td {
                                a.button href=(format!("/dead/confirm?action=requeue&id={}", d.entry.id)) { "Requeue" } " "
                                a.button href=(format!("/dead/confirm?action=delete&id={}", d.entry.id)) { "Delete" }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Which letters an action is for.
#[derive(Deserialize)]
pub struct Which {
    action: String,
    id: Option<String>,
    all: Option<String>,
}

impl Which {
    /// `None`: all of them (requeue only); else the one id, if it is a
    /// stream entry id.
    fn ids(&self) -> Result<Option<Vec<String>>, &'static str> {
        if self.all.as_deref() == Some("1") && self.action == "requeue" {
            return Ok(None);
        }
        match &self.id {
            Some(id) if is_entry_id(id) => Ok(Some(vec![id.clone()])),
            _ => Err("name a dead letter (an entry id such as 1700000000000-0)"),
        }
    }
}

/// Whether `id` is a stream entry id (`<millis>-<seq>`).
fn is_entry_id(id: &str) -> bool {
    id.split_once('-').is_some_and(|(ms, seq)| {
        !ms.is_empty() && !seq.is_empty() && ms.bytes().chain(seq.bytes()).all(|b| b.is_ascii_digit())
    })
}

/// `GET /dead/confirm?action=requeue|delete&id=..` (or `all=1`).
pub async fn confirm(State(web): State<Web>, Query(which): Query<Which>) -> Response {
    let ids = match which.ids() {
        Ok(ids) => ids,
        Err(e) => return error_page(&web, StatusCode::BAD_REQUEST, e),
    };
    let (title, action) = match which.action.as_str() {
        "requeue" => ("Requeue", "requeue"),
        "delete" => ("Delete", "delete"),
        _ => return error_page(&web, StatusCode::BAD_REQUEST, "no such action"),
    };
    match ids {
        None => confirm_page(
            &web,
            "Requeue all",
            html! { "Requeue every dead letter?" },
            "/dead/act",
            &[("action", "requeue"), ("all", "1")],
            "/dead",
        ),
        Some(ids) => confirm_page(
            &web,
            title,
            html! { (title) " dead letter " code { (ids[0]) } "?" },
            "/dead/act",
            &[("action", action), ("id", &ids[0])],
            "/dead",
        ),
    }
}

/// `POST /dead/act`.
pub async fn act(State(web): State<Web>, Act(fields): Act) -> Response {
    let which = Which {
        action: fields.get("action").cloned().unwrap_or_default(),
        id: fields.get("id").cloned(),
        all: fields.get("all").cloned(),
    };
    let ids = match which.ids() {
        Ok(ids) => ids,
        Err(e) => return error_page(&web, StatusCode::BAD_REQUEST, e),
    };
    let mut conn = web.store.clone();
    let result = match (which.action.as_str(), &ids) {
        ("requeue", ids) => Job::requeue_dead(&mut conn, ids.as_deref())
            .await
            .map(|done| u64::try_from(done.len()).unwrap_or(u64::MAX)),
        ("delete", Some(ids)) => Job::delete_dead(&mut conn, ids).await,
        _ => return error_page(&web, StatusCode::BAD_REQUEST, "no such action"),
    };
    match result {
        Ok(n) => {
            tracing::info!(action = %which.action, letters = n, "dead letters changed from the web UI");
            Redirect::to("/dead").into_response()
        }
        Err(e) => failed(&web, e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_entry_ids_are_taken() {
        assert!(super::is_entry_id("1700000000000-0"));
        for bad in ["", "-", "1-", "-1", "a-1", "1-1-1", "*", "+"] {
            assert!(!super::is_entry_id(bad), "{bad}");
        }
    }
}
