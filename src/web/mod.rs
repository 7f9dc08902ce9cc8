//! `repobox web`: the web UI (overview, jobs, a job, dead letters, data)
//! and `/metrics`, on axum. Pages are rendered on the server (maud: HTML
//! templates compiled into the binary, every value escaped); the few live
//! parts are Server-Sent Events that a small script served by the binary
//! puts in place. No CDN, no build step.
//!
//! - `auth`: the token, sessions, CSRF and host rules;
//! - `html`: the layout and how text from Redis is shown;
//! - `overview`, `list`, `jobs`, `dead`, `data`: one file per page and its actions;
//! - `chart`: the overview's chart, drawn as inline SVG.

mod auth;
mod chart;
mod data;
mod dead;
mod html;
mod jobs;
mod list;
mod overview;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use repobox_orm::Store;

use crate::cli::WebArgs;

/// The server's state, shared by every request.
#[derive(Clone)]
pub struct Web(Arc<Inner>);

/// What [`Web`] holds.
pub struct Inner {
    /// The Redis it shows.
    pub store: Store,
    /// Its URL as pages show it (no password).
    pub redis_shown: String,
    /// Whether every action is refused.
    pub read_only: bool,
    /// The token, session and CSRF rules.
    pub guard: auth::Guard,
    /// The data page's check or repair, when one runs or ran.
    pub data: data::Runs,
    /// Live streams (SSE) open now, at most [`LIVE_STREAMS`]: each costs
    /// Redis calls, a job's a connection of its own.
    pub live: Arc<tokio::sync::Semaphore>,
}

/// How many live streams may be open at once.
pub const LIVE_STREAMS: usize = 64;

impl Web {
    /// A place for one more live stream, held until it ends; `Err`: the
    /// answer to give (503) when all are taken.
    pub fn live_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Box<Response>> {
        self.live.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!(open = LIVE_STREAMS, "a live stream was refused: too many are open");
            Box::new(html::plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many live views are open: try again later",
            ))
        })
    }
}

impl std::ops::Deref for Web {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The policy every page is served with: scripts and styles from this
/// server only (no inline script), no frames, no plugins, forms posting
/// here only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Runs `repobox web` until SIGTERM or Ctrl-C.
pub async fn web(store: &Store, args: WebArgs, url: &str) -> anyhow::Result<()> {
    // Refused before anything listens.
    auth::Guard::new(args.listen, args.token.clone(), &args.allow_hosts)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    // The port that was picked, when 0 was asked for.
    let guard = auth::Guard::new(addr, args.token, &args.allow_hosts)?;
    crate::metrics::handle();
    let read_only = args.read_only;
    let web = Web(Arc::new(Inner {
        store: store.clone(),
        redis_shown: crate::redact::url(url),
        read_only,
        guard,
        data: data::Runs::default(),
        live: Arc::new(tokio::sync::Semaphore::new(LIVE_STREAMS)),
    }));
    tracing::info!(
        %addr,
        read_only,
        token = web.guard.has_token(),
        "serving the web UI and /metrics"
    );
    // The address on stdout, for scripts that asked for port 0.
    println!("listening on http://{addr}");
    tokio::spawn(watch_redis(store.clone()));
    axum::serve(
        listener,
        router(web).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(crate::commands::shutdown_signal())
    .await
    .context("the web server failed")?;
    tracing::info!("the web server stopped");
    Ok(())
}

/// Every route, behind the guard and the security headers.
pub fn router(web: Web) -> Router {
    Router::new()
        .route("/", get(overview::page))
        .route("/live/overview", get(overview::live))
        .route("/jobs", get(list::list))
        .route("/jobs/{id}", get(jobs::show))
        .route("/jobs/{id}/live", get(jobs::live))
        .route("/jobs/{id}/confirm/{action}", get(jobs::confirm))
        .route("/jobs/{id}/{action}", post(jobs::act))
        .route("/dead", get(dead::page))
        .route("/dead/confirm", get(dead::confirm))
        .route("/dead/act", post(dead::act))
        .route("/data", get(data::page))
        .route("/data/live", get(data::live))
        .route("/data/check", post(data::check))
        .route("/data/confirm-repair", get(data::confirm_repair))
        .route("/data/repair", post(data::repair))
        .route("/metrics", get(metrics))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/assets/app.js", get(script))
        .route("/assets/style.css", get(style))
        .fallback(not_found)
        .layer(from_fn_with_state(web.clone(), auth::guard))
        .layer(from_fn(headers))
        .layer(from_fn(access_log))
        .with_state(web)
}

/// One line per request (the assets aside): method, path, status, time.
async fn access_log(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = crate::output::clean(request.uri().path());
    let began = std::time::Instant::now();
    let response = next.run(request).await;
    if !path.starts_with("/assets/") {
        tracing::info!(
            %method,
            %path,
            status = response.status().as_u16(),
            ms = began.elapsed().as_millis(),
            "request"
        );
    }
    response
}

/// The headers every answer carries. The referrer policy is `same-origin`,
/// not `no-referrer`: under `no-referrer` a browser sends `Origin: null`
/// with a form's POST, which the guard refuses.
async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// No such page: for a missing asset (public) a plain 404, else the page.
async fn not_found(State(web): State<Web>, uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/assets/") {
        return html::plain(StatusCode::NOT_FOUND, "no such asset");
    }
    html::error_page(&web, StatusCode::NOT_FOUND, "no such page")
}

/// `GET /metrics`: as the runner serves it.
async fn metrics(State(web): State<Web>) -> Response {
    let Some(handle) = crate::metrics::handle() else {
        return html::plain(StatusCode::SERVICE_UNAVAILABLE, "metrics are not recorded");
    };
    let body = crate::metrics::render(&handle, &web.store).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("assets/app.js"))
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/style.css"))
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Says loudly, once per outage, when Redis cannot be reached, and when it
/// is back.
async fn watch_redis(store: Store) {
    let mut up = true;
    loop {
        let mut conn = store.clone();
        let ping: Result<String, _> = repobox_orm::redis::cmd("PING").query_async(&mut conn).await;
        match (ping, up) {
            (Err(e), true) => {
                tracing::error!(error = %e, "Redis is unreachable: pages show the error until it is back");
                up = false;
            }
            (Ok(_), false) => {
                tracing::info!("Redis is reachable again");
                up = true;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// An error of the data layer, as a page answers it.
pub trait Failure: std::fmt::Display {
    /// The ORM's error inside, if any.
    fn orm(&self) -> Option<&repobox_orm::Error>;
}

impl Failure for repobox_orm::Error {
    fn orm(&self) -> Option<&repobox_orm::Error> {
        Some(self)
    }
}

impl Failure for repobox_models::Error {
    fn orm(&self) -> Option<&repobox_orm::Error> {
        repobox_models::Error::orm(self)
    }
}

/// A request that failed: the error page and a log line. 503 when Redis
/// cannot be reached (it may come back), 400 for what the request asked
/// that no key can hold (an id with a `:`), 500 for data in Redis that
/// cannot be read.
pub fn failed(web: &Web, e: impl Failure) -> Response {
    let message = e.to_string();
    let status = match e.orm() {
        Some(orm) if orm.is_unreachable() => StatusCode::SERVICE_UNAVAILABLE,
        Some(orm) if orm.is_not_found() => StatusCode::NOT_FOUND,
        Some(repobox_orm::Error::InvalidKeyPart { .. } | repobox_orm::Error::InvalidArgument { .. }) => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(error = %html::error_text(&message), "a page could not be read: Redis is unreachable");
    } else if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::warn!(error = %html::error_text(&message), "a page could not be read");
    }
    html::error_page(web, status, &message)
}
