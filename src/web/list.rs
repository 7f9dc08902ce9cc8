//! `GET /jobs`: jobs of one status, of one user, or of one user in one
//! status; newest first, paginated.
//!
//! A status or a user alone is one page of its index (a range, a count and
//! the page's hashes, whatever the index holds). Both together have no
//! index of their own: the user's index is walked from `from` (a position
//! in it, newest first) in chunks, keeping the jobs in the status, until a
//! page is full or [`WALK_MOST`] jobs were looked at; the page says how far
//! it looked and links on from there.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use repobox_models::{Job, JobStatus};
use repobox_orm::{Page, RedisValue};
use serde::Deserialize;

use super::html::{Shown, encode, error_page, error_text, job_href, page, time};
use super::{Web, failed};
use crate::output::duration_ms;

/// Jobs per page.
const PER_PAGE: usize = 50;
/// The most jobs of a user one page of "user and status" looks at.
const WALK_MOST: usize = 2_000;

/// The list's filters.
#[derive(Deserialize, Default)]
pub struct Filter {
    status: Option<String>,
    user: Option<String>,
    /// The page (1-based) of one index.
    page: Option<usize>,
    /// Where in the user's index a "user and status" page starts.
    from: Option<usize>,
}

/// One page of the list.
struct Found {
    jobs: Vec<Job>,
    errors: Vec<repobox_orm::Error>,
    /// What the page holds, in words.
    summary: String,
    prev: Option<String>,
    next: Option<String>,
}

/// `GET /jobs`.
pub async fn list(State(web): State<Web>, Query(filter): Query<Filter>) -> Response {
    let user = filter.user.filter(|u| !u.is_empty());
    let status = match filter.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match JobStatus::ALL.into_iter().find(|st| st.as_str() == s) {
            Some(st) => Some(st),
            None => return error_page(&web, StatusCode::BAD_REQUEST, "no such status"),
        },
    };
    let found = match (&user, status) {
        (Some(user), Some(status)) => of_user_in(&web, user, status, filter.from.unwrap_or(0)).await,
        (Some(user), None) => one_index(&web, Some(user), JobStatus::Running, filter.page).await,
        // Without a filter: the running jobs.
        (None, status) => one_index(&web, None, status.unwrap_or(JobStatus::Running), filter.page).await,
    };
    let found = match found {
        Ok(found) => found,
        Err(e) => return failed(&web, e),
    };
    let shown_status = if user.is_some() {
        status
    } else {
        Some(status.unwrap_or(JobStatus::Running))
    };
    page(
        &web,
        "Jobs",
        html! {
            form.filters method="get" action="/jobs" {
                label { "Status " select name="status" {
                    option value="" { "-" }
                    @for s in JobStatus::ALL {
                        option value=(s.as_str()) selected[shown_status == Some(s)] { (s.as_str()) }
                    }
                } }
                " "
                label { "user " input type="text" name="user" value=(user.as_deref().unwrap_or("")); }
                " " button { "Show" }
            }
            p #total { (found.summary) }
            table #jobs {
                tr { th { "job" } th { "status" } th { "user" } th { "created" } th { "exit" } th { "took" } th { "repository" } }
                @for job in &found.jobs {
                    tr {
                        td { a href=(job_href(&job.id)) { (Shown(&job.id)) } }
                        td.status { (job.status.as_str()) }
                        td { (Shown(&job.user_id)) }
                        td { (time(Some(job.created_at))) }
                        td { @if let Some(c) = job.exit_code { (c) } @else { "-" } }
                        td { (duration_ms(job.started_at.zip(job.finished_at).and_then(|(s, f)| f.checked_sub(s)))) }
                        td { (Shown(&job.repo_url)) }
                    }
                }
                @for e in &found.errors {
                    tr.unreadable {
                        td { "?" } td.status { "unreadable" } td colspan="5" { (Shown(&error_text(&e.to_string()))) }
                    }
                }
            }
            nav.pages {
                @if let Some(prev) = &found.prev { a rel="prev" href=(prev) { "← newer" } " " }
                @if let Some(next) = &found.next { a rel="next" href=(next) { "older →" } }
            }
        },
    )
}

/// Page `number` (1-based) of the user's index, or else of `status`'s.
async fn one_index(
    web: &Web,
    user: Option<&String>,
    status: JobStatus,
    number: Option<usize>,
) -> repobox_models::Result<Found> {
    let mut conn = web.store.clone();
    let number = number.unwrap_or(1).max(1);
    let page_of = Page::newest(PER_PAGE).offset((number - 1).saturating_mul(PER_PAGE));
    let (listing, total) = match user {
        Some(user) => {
            let listing = Job::user_jobs(&mut conn, user, page_of).await?;
            (listing, Job::user_job_count(&mut conn, user).await?)
        }
        None => {
            let listing = Job::by_status(&mut conn, status, page_of).await?;
            (listing, Job::count_by_status(&mut conn, status).await?)
        }
    };
    let query = |p: usize| match user {
        Some(u) => format!("?user={}&page={p}", encode(u)),
        None => format!("?status={}&page={p}", status.as_str()),
    };
    let pages = u64::try_from(PER_PAGE).map_or(1, |per| total.div_ceil(per).max(1));
    Ok(Found {
        jobs: listing.items,
        errors: listing.errors,
        summary: format!("{total} job(s); page {number} of {pages}"),
        prev: (number > 1).then(|| query(number - 1)),
        next: (u64::try_from(number).unwrap_or(u64::MAX) < pages).then(|| query(number + 1)),
    })
}

/// The user's jobs in `status`, walking the user's index from `from`.
async fn of_user_in(web: &Web, user: &str, status: JobStatus, from: usize) -> repobox_models::Result<Found> {
    let mut conn = web.store.clone();
    let total = usize::try_from(Job::user_job_count(&mut conn, user).await?).unwrap_or(usize::MAX);
    let (mut jobs, mut errors) = (Vec::new(), Vec::new());
    let mut at = from;
    while jobs.len() < PER_PAGE && at < total && at - from < WALK_MOST {
        let listing = Job::user_jobs(&mut conn, user, Page::newest(PER_PAGE).offset(at)).await?;
        jobs.extend(listing.items.into_iter().filter(|j| j.status == status));
        errors.extend(listing.errors);
        at = at.saturating_add(PER_PAGE);
    }
    let end = at.min(total);
    let query = |from: usize| format!("?user={}&status={}&from={from}", encode(user), status.as_str());
    Ok(Found {
        summary: format!(
            "{} {} job(s) among the user's jobs {} to {end} of {total} (newest first)",
            jobs.len(),
            status.as_str(),
            from.saturating_add(1).min(end),
        ),
        jobs,
        errors,
        prev: (from > 0).then(|| query(0)),
        next: (end < total).then(|| query(end)),
    })
}
