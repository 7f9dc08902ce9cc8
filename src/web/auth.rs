//! Who may use the web UI, and how a request proves it.
//!
//! - Without a token the server listens on loopback only, and answers only
//!   requests whose `Host` is its own address, `localhost` or an
//!   `--allow-host` (a page of another site that rebinds its name to
//!   127.0.0.1 gets 421); with a token, only the `--allow-host`s when any
//!   are given.
//! - With a token (16 characters at least), every request but the login
//!   form and the assets carries it: `Authorization: Bearer <token>`, or the
//!   cookie the login form sets (a random session id, `HttpOnly;
//!   SameSite=Strict`, 12 hours). Tokens are compared in constant time; a
//!   wrong one is held up [`WRONG_TOKEN_WAIT`], one at a time.
//! - Every POST carries the process's CSRF token in its form (the login
//!   form one of its own; checked in constant time), and a POST whose `Origin` or `Sec-Fetch-Site` says it
//!   comes from another site is refused (403) before it is read.
//! - `--read-only` refuses every action (403) and pages show none.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, RequestExt};
use maud::html;
use subtle::ConstantTimeEq;

use super::Web;
use super::html::{plain, public_page};

/// The session cookie's name.
const COOKIE: &str = "repobox_session";
/// How long a login lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// At most this many live sessions; the oldest goes first.
const SESSIONS_KEPT: usize = 10_000;
/// The shortest token taken.
pub const TOKEN_MIN_LEN: usize = 16;
/// How long a wrong token holds up the answer; wrong tokens wait their turn
/// one at a time, so guessing goes at most this fast, however many
/// connections try.
const WRONG_TOKEN_WAIT: Duration = Duration::from_millis(250);

/// The rules of one server: its token, its sessions, its CSRF token, the
/// hosts it answers to.
pub struct Guard {
    token: Option<String>,
    csrf: String,
    /// The login form's CSRF token: another than the actions', as the form
    /// is shown to anyone.
    login_csrf: String,
    /// Wrong tokens wait here one at a time.
    wrong: tokio::sync::Mutex<()>,
    sessions: Mutex<HashMap<String, Instant>>,
    /// `Host` values answered without a token (lowercase); empty: any.
    hosts: Vec<String>,
}

impl Guard {
    /// The rules for a server on `addr`: `token` required unless `addr` is a
    /// loopback address.
    pub fn new(addr: SocketAddr, token: Option<String>, allow_hosts: &[String]) -> anyhow::Result<Guard> {
        let token = token.filter(|t| !t.is_empty());
        if token.as_ref().is_some_and(|t| t.trim().chars().count() < TOKEN_MIN_LEN) {
            anyhow::bail!("the token is too short: give one of at least {TOKEN_MIN_LEN} characters");
        }
        if token.is_none() && !addr.ip().is_loopback() {
            anyhow::bail!("{addr} is not a loopback address: give a token (--token or REPOBOX_WEB_TOKEN) to serve it");
        }
        let port = addr.port();
        let mut hosts = Vec::new();
        // With a token the host is checked only against `--allow-host`,
        // when given: the token is what keeps others out.
        if token.is_none() {
            for name in [
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "[::1]".to_owned(),
                host_of(addr),
            ] {
                hosts.push(format!("{name}:{port}"));
                if port == 80 {
                    hosts.push(name);
                }
            }
        }
        if token.is_none() || !allow_hosts.is_empty() {
            hosts.extend(allow_hosts.iter().map(|h| h.to_ascii_lowercase()));
        }
        Ok(Guard {
            token,
            csrf: random_hex()?,
            login_csrf: random_hex()?,
            wrong: tokio::sync::Mutex::new(()),
            sessions: Mutex::new(HashMap::new()),
            hosts,
        })
    }

    /// Whether requests must carry the token.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The CSRF token forms carry.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// The login form's CSRF token.
    pub fn login_csrf(&self) -> &str {
        &self.login_csrf
    }

    /// Holds up an answer to a wrong token: one at a time, each
    /// [`WRONG_TOKEN_WAIT`].
    async fn wrong_token(&self) {
        let _turn = self.wrong.lock().await;
        tokio::time::sleep(WRONG_TOKEN_WAIT).await;
    }

    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        if self.hosts.is_empty() {
            return true;
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase);
        host.is_some_and(|h| self.hosts.contains(&h))
    }

    fn token_matches(&self, given: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(given.as_bytes())))
    }

    /// Whether the request carries the token or a live session; `Err`
    /// when it carries a wrong bearer token (to be held up).
    fn authenticated(&self, headers: &HeaderMap) -> Result<bool, ()> {
        if self.token.is_none() {
            return Ok(true);
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match bearer {
            Some(b) if self.token_matches(b.trim()) => return Ok(true),
            Some(_) => return Err(()),
            None => {}
        }
        let Some(session) = cookie(headers, COOKIE) else {
            return Ok(false);
        };
        let now = Instant::now();
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        // A HashMap lookup by a secret: its timing says little, as ids are
        // random 256-bit values; the comparison decides nothing else.
        Ok(sessions.get(session).is_some_and(|until| *until > now))
    }

    fn new_session(&self) -> anyhow::Result<String> {
        let id = random_hex()?;
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, until| *until > now);
        if sessions.len() >= SESSIONS_KEPT
            && let Some(oldest) = sessions.iter().min_by_key(|(_, until)| **until).map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), now + SESSION_TTL);
        Ok(id)
    }

    fn end_session(&self, headers: &HeaderMap) {
        if let Some(session) = cookie(headers, COOKIE) {
            self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(session);
        }
    }

    fn csrf_matches(&self, given: Option<&str>, login: bool) -> bool {
        let csrf = if login { &self.login_csrf } else { &self.csrf };
        given.is_some_and(|g| bool::from(csrf.as_bytes().ct_eq(g.as_bytes())))
    }
}

/// The name of `addr`'s IP as a `Host` header gives it.
fn host_of(addr: SocketAddr) -> String {
    match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// 32 random bytes in hex.
fn random_hex() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for the web UI's tokens: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The value of cookie `name`, if the request has it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Paths anyone may fetch: the login form and the assets.
fn is_public(path: &str) -> bool {
    path == "/login" || path.starts_with("/assets/")
}

/// The middleware in front of every route: host, token, and where a POST
/// comes from.
pub async fn guard(State(web): State<Web>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if !web.guard.host_allowed(headers) {
        return plain(
            StatusCode::MISDIRECTED_REQUEST,
            "unknown host: start with --allow-host to serve it",
        );
    }
    if request.method() == Method::POST && from_another_site(headers) {
        return plain(StatusCode::FORBIDDEN, "cross-site request refused");
    }
    let path = request.uri().path();
    let authenticated = match web.guard.authenticated(headers) {
        Ok(yes) => yes,
        Err(()) => {
            tracing::warn!(path = %crate::output::clean(path), "a wrong bearer token was refused");
            web.guard.wrong_token().await;
            false
        }
    };
    if !is_public(path) && !authenticated {
        let wants_html = request.method() == Method::GET
            && headers
                .get(header::ACCEPT)
                .and_then(|a| a.to_str().ok())
                .is_some_and(|a| a.contains("text/html"));
        if wants_html {
            return Redirect::to("/login").into_response();
        }
        let mut response = plain(StatusCode::UNAUTHORIZED, "a token is required");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(request).await
}

/// Whether the browser says this POST comes from another site.
fn from_another_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|s| s != "same-origin" && s != "none") {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        None => false,
        Some(origin) => {
            let origin_host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            origin_host.is_none() || origin_host != host
        }
    }
}

/// A POSTed form whose CSRF token is right: the form's fields.
pub struct Posted(pub HashMap<String, String>);

/// A POSTed action (it changes data): [`Posted`], refused in read-only mode.
pub struct Act(pub HashMap<String, String>);

impl FromRequest<Web> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, web: &Web) -> Result<Self, Self::Rejection> {
        let request_path = request.uri().path().to_owned();
        let Form(fields): Form<HashMap<String, String>> = request
            .extract()
            .await
            .map_err(|_| plain(StatusCode::BAD_REQUEST, "a form was expected"))?;
        let login = request_path == "/login";
        if !web.guard.csrf_matches(fields.get("csrf").map(String::as_str), login) {
            tracing::warn!("a form without the right CSRF token was refused");
            return Err(plain(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token: reload the page",
            ));
        }
        Ok(Posted(fields))
    }
}

impl FromRequest<Web> for Act {
    type Rejection = Response;

    async fn from_request(request: Request, web: &Web) -> Result<Self, Self::Rejection> {
        if web.read_only {
            return Err(plain(StatusCode::FORBIDDEN, "this server is read-only"));
        }
        let Posted(fields) = Posted::from_request(request, web).await?;
        Ok(Act(fields))
    }
}

/// `GET /login`: the token form.
pub async fn login_page(State(web): State<Web>) -> Response {
    login_form(&web, None)
}

fn login_form(web: &Web, error: Option<&str>) -> Response {
    if !web.guard.has_token() {
        return Redirect::to("/").into_response();
    }
    public_page(
        "Log in",
        html! {
            @if let Some(error) = error { p.error { (error) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(web.guard.login_csrf());
                label { "Token " input type="password" name="token" autocomplete="current-password" autofocus; }
                " "
                button type="submit" { "Log in" }
            }
        },
    )
}

/// `POST /login`: a right token sets the session cookie.
pub async fn login(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Posted(fields): Posted,
) -> Response {
    let given = fields.get("token").map(String::as_str).unwrap_or("");
    if !web.guard.token_matches(given) {
        tracing::warn!(%peer, "a login with a wrong token was refused");
        web.guard.wrong_token().await;
        let mut response = login_form(&web, Some("That is not the token."));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    }
    match web.guard.new_session() {
        Ok(id) => {
            tracing::info!(%peer, "logged in");
            let cookie = format!(
                "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                SESSION_TTL.as_secs()
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Err(e) => plain_error(&e),
    }
}

/// `POST /logout`: ends the session and clears its cookie.
pub async fn logout(State(web): State<Web>, headers: HeaderMap, Posted(_): Posted) -> Response {
    web.guard.end_session(&headers);
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

fn plain_error(e: &anyhow::Error) -> Response {
    tracing::error!(error = %e, "cannot log in");
    plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot log in: see the server's log")
}
