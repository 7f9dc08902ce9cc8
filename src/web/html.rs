//! What every page shares: the layout, how text from Redis is shown, times,
//! links to jobs, forms and confirmations.
//!
//! Text from Redis reaches a page only through [`Shown`] (or an attribute
//! built by [`job_href`]): maud escapes it for HTML, and control and bidi
//! characters are shown escaped (`\u{1b}`), as the CLI shows them.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, Render, html};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::Web;
use crate::output::clean;

/// Text from Redis (or from a request) as a page shows it: [`text`], then
/// HTML-escaped by maud.
pub struct Shown<'a>(pub &'a str);

impl Render for Shown<'_> {
    fn render_to(&self, buffer: &mut String) {
        text(self.0).as_str().render_to(buffer);
    }
}

/// The most characters of one value a page shows.
const SHOWN_CHARS: usize = 10_000;

/// Text from Redis as a page or a stream shows it: control and bidi
/// characters escaped (as the CLI shows them), and at most
/// [`SHOWN_CHARS`] characters of it, so that a huge value cannot make a
/// huge page.
pub fn text(value: &str) -> String {
    let total = value.chars().count();
    if total <= SHOWN_CHARS {
        return clean(value);
    }
    let head: String = value.chars().take(SHOWN_CHARS).collect();
    format!("{}… ({} more characters)", clean(&head), total - SHOWN_CHARS)
}

/// An error's message as a page shows it: [`Shown`], with anything that
/// looks like a session digest (64 hex digits, in a key or a member)
/// replaced by `<digest>`.
pub fn error_text(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 64 {
            out.push_str("<digest>");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in message.chars() {
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The navigation's entries: (path, label).
const NAV: [(&str, &str); 4] = [
    ("/", "Overview"),
    ("/jobs", "Jobs"),
    ("/dead", "Dead letters"),
    ("/data", "Data"),
];

/// A whole page: the header with the navigation and the Redis it shows
/// (its URL without the password), then `body`.
pub fn page(web: &Web, title: &str, body: Markup) -> Response {
    let header = html! {
        nav {
            @for (href, label) in NAV {
                a href=(href) { (label) }
            }
        }
        span.redis { (Shown(&web.redis_shown)) }
        @if web.read_only { span.badge { "read-only" } }
        @if web.guard.has_token() {
            form.inline method="post" action="/logout" {
                (csrf_field(web))
                button { "Log out" }
            }
        }
    };
    document(title, Some(header), body)
}

/// A page for anyone (the login form): no navigation, no Redis address, no
/// form but its own, no script.
pub fn public_page(title: &str, body: Markup) -> Response {
    document(title, None, body)
}

/// The document around every page: `header` (with the script) for a
/// signed-in page, the bare name without.
fn document(title: &str, header: Option<Markup>, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (Shown(title)) " · repobox" }
                link rel="stylesheet" href="/assets/style.css";
                @if header.is_some() { script src="/assets/app.js" defer {} }
            }
            body {
                header { strong { "repobox" } @if let Some(header) = header { (header) } }
                main { h1 { (Shown(title)) } (body) }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

/// The hidden field that every form posts: the CSRF token.
pub fn csrf_field(web: &Web) -> Markup {
    html! { input type="hidden" name="csrf" value=(web.guard.csrf()); }
}

/// A value as a URL's query or path shows it.
pub fn encode(value: &str) -> percent_encoding::PercentEncode<'_> {
    utf8_percent_encode(value, NON_ALPHANUMERIC)
}

/// The path of a job's page.
pub fn job_href(id: &str) -> String {
    format!("/jobs/{}", utf8_percent_encode(id, NON_ALPHANUMERIC))
}

/// Unix millis as a UTC time (`2026-12-01 02:10:00Z`), or `-`.
pub fn time(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    let Ok(ms) = u64::try_from(ms) else {
        return ms.to_string();
    };
    std::time::UNIX_EPOCH
        .checked_add(std::time::Duration::from_millis(ms))
        .and_then(|t| {
            // humantime formats years up to 9999 only.
            (ms < 253_402_300_800_000).then(|| humantime::format_rfc3339_seconds(t).to_string().replace('T', " "))
        })
        .unwrap_or_else(|| ms.to_string())
}

/// A page that asks before an action: `question`, then a button that posts
/// `fields` (and the CSRF token) to `action`, and a way back; 403 on a
/// read-only server.
pub fn confirm(
    web: &Web,
    title: &str,
    question: Markup,
    action: &str,
    fields: &[(&str, &str)],
    back: &str,
) -> Response {
    // Confirmations exist only for actions, which read-only refuses.
    if web.read_only {
        return error_page(web, StatusCode::FORBIDDEN, "this server is read-only");
    }
    page(
        web,
        title,
        html! {
            p.question { (question) }
            form method="post" action=(action) {
                (csrf_field(web))
                @for (name, value) in fields {
                    input type="hidden" name=(name) value=(value);
                }
                button.danger type="submit" id="confirm" { "Yes, " (title.to_lowercase()) }
                " "
                a href=(back) { "Cancel" }
            }
        },
    )
}

/// An error page with `status`: the message escaped.
pub fn error_page(web: &Web, status: StatusCode, message: &str) -> Response {
    let mut response = page(
        web,
        status.canonical_reason().unwrap_or("Error"),
        html! { p.error { (Shown(&error_text(message))) } },
    );
    *response.status_mut() = status;
    response
}

/// A plain-text answer (errors outside a page: 401, 403 before the app).
pub fn plain(status: StatusCode, message: &'static str) -> Response {
    (status, message).into_response()
}

/// An SSE payload: HTML with no carriage return (SSE cannot carry one; the
/// text in it is escaped, so only markup could have one).
pub fn sse_html(markup: Markup) -> String {
    markup.into_string().replace('\r', "&#13;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_text_is_escaped_for_html_and_the_terminal() {
        let out = html! { (Shown("<script>alert(1)</script>\"><img src=x onerror=y>\u{1b}[2J\u{202e}")) }.into_string();
        assert_eq!(
            out,
            "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=y&gt;\\u{1b}[2J\\u{202e}"
        );
    }

    #[test]
    fn huge_values_are_cut() {
        let long = "x".repeat(SHOWN_CHARS + 5);
        assert_eq!(text(&long), format!("{}… (5 more characters)", "x".repeat(SHOWN_CHARS)));
        assert_eq!(text("short\u{1b}"), "short\\u{1b}");
    }

    #[test]
    fn digests_are_hidden_in_errors() {
        let digest = "ab".repeat(32);
        assert_eq!(error_text(&format!("`session:{digest}` bad")), "`session:<digest>` bad");
        assert_eq!(error_text("job:12ab short"), "job:12ab short");
    }

    #[test]
    fn times_are_utc_or_raw() {
        assert_eq!(time(Some(0)), "1970-01-01 00:00:00Z");
        assert_eq!(time(Some(-5)), "-5");
        assert_eq!(time(None), "-");
        assert_eq!(time(Some(i64::MAX)), i64::MAX.to_string());
    }
}
