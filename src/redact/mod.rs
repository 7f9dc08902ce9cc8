//! What the CLI may show of a Redis URL: the one place that decides, for the
//! banner, every error and every log line.
//!
//! A URL is shown only as [`url()`](fn@url) renders it: parsed by a real URL parser, its
//! password and `pass`/`password` query values as `***`. A password written
//! raw with `@ / # ? %` can make a URL parse in surprising ways (the start of
//! it read as a port, the rest as a path), so a URL with an `@` where the
//! parser took no user info, or whose rendering holds any text that may be
//! the password, is shown as `<unparsable>` instead. [`Scrubber`] is the second net: it replaces every
//! URL the process was given, and every secret in them, in whatever text
//! leaves the process (errors, log lines, clap's messages).

use std::borrow::Cow;

use url::{Position, Url};

mod scrub;

pub use self::scrub::{ScrubbedStderr, Scrubber};

/// Every scheme redis-rs or a [`repobox_orm::Store`] accepts.
const SCHEMES: [&str; 9] = [
    "redis",
    "rediss",
    "redis+cluster",
    "rediss+cluster",
    "unix",
    "redis+unix",
    "valkey",
    "valkeys",
    "valkey+unix",
];

/// Query parameters whose value is shown; the value of any other is masked,
/// since a raw `&` in a password makes its tail look like a parameter.
const SHOWN_PARAMS: [&str; 3] = ["db", "protocol", "user"];

/// Query parameters that carry a password (`pass` for `unix://`).
const SECRET_PARAMS: [&str; 2] = ["pass", "password"];

/// Shorter secrets are not searched for in rendered text: they cannot be
/// told from ordinary text (a 2-character password is in many host names).
pub(super) const MIN_SEARCHED_SECRET: usize = 4;

pub(super) const MASK: &str = "***";
const UNPARSABLE: &str = "<unparsable>";

/// A Redis URL as messages show it: the password (or a lone user-info part,
/// which may be one), `pass` and `password` query values and unknown query
/// parameters as `***`; a URL that does not parse, or whose rendering might
/// hold its password, as `scheme://<unparsable>` (the scheme only if known).
pub fn url(text: &str) -> String {
    let scheme = scheme_of(text);
    let rendered = match scheme.as_deref() {
        Some("redis+cluster" | "rediss+cluster") => cluster(text),
        Some(_) => single(text),
        None => None,
    };
    match rendered {
        Some(shown) if !holds_secret(&shown, text) => shown,
        _ => match scheme {
            Some(scheme) => format!("{scheme}://{UNPARSABLE}"),
            None => UNPARSABLE.to_owned(),
        },
    }
}

/// The URL's scheme, lower case, if it is one the store accepts.
pub(super) fn scheme_of(text: &str) -> Option<String> {
    let (scheme, _) = text.split_once(':')?;
    let scheme = scheme.to_ascii_lowercase();
    SCHEMES.contains(&scheme.as_str()).then_some(scheme)
}

/// A single server's URL, masked.
fn single(text: &str) -> Option<String> {
    let mut url = Url::parse(text).ok()?;
    mask(&mut url)?;
    Some(url.as_str().to_owned())
}

/// `redis+cluster://[userinfo@]host:port,host:port[/path][?query]`: the URL
/// parser takes one host only, so each node is parsed as the store does
/// (`repobox_orm`'s endpoint), as a URL of its own with the shared user info
/// and tail, and the rendering joins the masked nodes.
fn cluster(text: &str) -> Option<String> {
    let (scheme, _) = text.split_once("://")?;
    let mut prefix = None;
    let mut suffix = None;
    let mut shown_hosts = Vec::new();
    for node in cluster_nodes(text)? {
        let mut url = Url::parse(&node).ok()?;
        if url.host_str().is_none_or(str::is_empty) {
            return None;
        }
        mask(&mut url)?;
        prefix.get_or_insert_with(|| url[Position::AfterScheme..Position::BeforeHost].to_owned());
        suffix.get_or_insert_with(|| url[Position::AfterPort..].to_owned());
        shown_hosts.push(url[Position::BeforeHost..Position::AfterPort].to_owned());
    }
    Some(format!(
        "{}{}{}{}",
        scheme.to_ascii_lowercase(),
        prefix?,
        shown_hosts.join(","),
        suffix?
    ))
}

/// Each node of a cluster URL as a URL of its own, as the store reads them:
/// `redis+cluster://:pw@a:1,b:2/` is `redis://:pw@a:1/` and `redis://:pw@b:2/`.
fn cluster_nodes(text: &str) -> Option<Vec<String>> {
    let (scheme, rest) = text.split_once("://")?;
    let node_scheme = scheme.get(..scheme.len().checked_sub("+cluster".len())?)?;
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let nodes = hosts.split(',').map(|host| match userinfo {
        Some(userinfo) => format!("{node_scheme}://{userinfo}@{host}{tail}"),
        None => format!("{node_scheme}://{host}{tail}"),
    });
    Some(nodes.collect())
}

/// Masks the password, a lone user-info part, secret and unknown query
/// parameters and a fragment other than `#insecure`. `None` if the URL
/// refuses a masked part.
fn mask(url: &mut Url) -> Option<()> {
    if url.password().is_some() {
        url.set_password(Some(MASK)).ok()?;
    } else if !url.username().is_empty() {
        // redis-rs reads a lone part as a user name, but `redis://secret@host`
        // is how many write a password.
        url.set_username(MASK).ok()?;
    }
    if let Some(query) = url.query() {
        let masked = query.split('&').map(masked_param).collect::<Vec<_>>().join("&");
        url.set_query(Some(&masked));
    }
    if url.fragment().is_some_and(|f| f != "insecure") {
        url.set_fragment(Some(MASK));
    }
    Some(())
}

/// One `key=value` of a query as shown: known parameters as they are,
/// secret ones as `key=***`, any other as `***`.
fn masked_param(param: &str) -> Cow<'_, str> {
    let key = param.split_once('=').map_or(param, |(k, _)| k);
    let decoded = decode(key).to_ascii_lowercase();
    if SECRET_PARAMS.contains(&decoded.as_str()) {
        Cow::Owned(format!("{key}={MASK}"))
    } else if SHOWN_PARAMS.contains(&decoded.as_str()) {
        Cow::Borrowed(param)
    } else {
        Cow::Borrowed(MASK)
    }
}

/// Percent-decoding as redis-rs does it (`+` stays `+`), lossy.
fn decode(text: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy()
}

/// Whether `shown`, rendered from `original`, may hold one of its secrets:
/// when an `@` stands where the URL parser took no user info, or when text
/// that may be a password appears in it.
fn holds_secret(shown: &str, original: &str) -> bool {
    stray_at(original)
        || secrets_of(original)
            .iter()
            .any(|secret| secret.len() >= MIN_SEARCHED_SECRET && shown.contains(secret.as_str()))
}

/// Whether `text` has an `@` past its authority: the mark of user info that a
/// raw `/`, `?` or `#` in a password cut off, so that the start of the
/// password was read as a host or port (`redis://u:1234/5@h`). For unix
/// sockets the password is a query parameter, and an `@` in its value is
/// the password's own.
fn stray_at(text: &str) -> bool {
    let rest = text.split_once("://").map_or(text, |(_, rest)| rest);
    let past = &rest[rest.find(['/', '?', '#']).unwrap_or(rest.len())..];
    if !scheme_of(text).is_some_and(|s| s.ends_with("unix")) {
        return past.contains('@');
    }
    let (before_fragment, fragment) = past.split_once('#').unwrap_or((past, ""));
    let (path, query) = before_fragment.split_once('?').unwrap_or((before_fragment, ""));
    path.contains('@')
        || fragment.contains('@')
        || query.split('&').any(|param| {
            let key = param.split_once('=').map_or(param, |(k, _)| k);
            !SECRET_PARAMS.contains(&decode(key).to_ascii_lowercase().as_str()) && param.contains('@')
        })
}

/// Every text of a URL that may be a secret, raw and percent-decoded: the
/// password (or lone user-info part) as the URL parser reads it, and as the
/// widest reading takes it (everything up to the last `@`), and the values
/// of `pass`/`password` parameters, up to the next `&` and up to the end.
pub(super) fn secrets_of(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut add = |secret: &str| {
        for s in [secret.to_owned(), decode(secret).into_owned()] {
            if !s.is_empty() && !found.contains(&s) {
                found.push(s);
            }
        }
    };
    // As the URL parser reads it, percent-encoded as it would print it.
    let first_node = match scheme_of(text).as_deref() {
        Some("redis+cluster" | "rediss+cluster") => cluster_nodes(text).and_then(|n| n.into_iter().next()),
        _ => Some(text.to_owned()),
    };
    if let Some(parsed) = first_node.and_then(|n| Url::parse(&n).ok()) {
        add(parsed.password().unwrap_or(parsed.username()));
    }
    if let Some((_, rest)) = text.split_once("://") {
        if let Some((userinfo, _)) = rest.rsplit_once('@') {
            add(userinfo.split_once(':').map_or(userinfo, |(_, pw)| pw));
        }
        // The narrowest reading, as the URL parser takes the first node.
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            add(userinfo.split_once(':').map_or(userinfo, |(_, pw)| pw));
        }
    }
    if let Some((_, query)) = text.split_once('?') {
        let mut rest = query;
        while let Some((param, after)) = rest.split_once('=') {
            let key = param.rsplit(['&', '?']).next().unwrap_or(param);
            if SECRET_PARAMS.contains(&decode(key).to_ascii_lowercase().as_str()) {
                add(after);
                add(after.split(['&', '#']).next().unwrap_or(after));
            }
            rest = after;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_the_rest_is_shown() {
        for (given, shown) in [
            ("redis://:TopSecretPW@127.0.0.1:7499", "redis://:***@127.0.0.1:7499"),
            ("rediss://app:pw@h:6380/2", "rediss://app:***@h:6380/2"),
            ("redis://pw@h/0", "redis://***@h/0"),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("REDIS://:pw@H:1", "redis://:***@H:1"),
            ("redis://:pw@[::1]:6379", "redis://:***@[::1]:6379"),
            ("redis://:p%40ss@h", "redis://:***@h"),
            ("redis://:p@ss:w%rd@h:1", "redis://:***@h:1"),
            ("rediss://:pw@h:1#insecure", "rediss://:***@h:1#insecure"),
            ("rediss://h:1#other", "rediss://h:1#***"),
            (
                "redis://h:1/0?protocol=resp3&pass=x&db=1",
                "redis://h:1/0?protocol=resp3&pass=***&db=1",
            ),
            ("redis://h:1/?Password=x&foo=bar", "redis://h:1/?Password=***&***"),
            (
                "unix:///run/redis.sock?pass=S3cretPW",
                "unix:///run/redis.sock?pass=***",
            ),
            (
                "redis+unix:///run/r.sock?user=app&pass=S3cretPW&db=2",
                "redis+unix:///run/r.sock?user=app&pass=***&db=2",
            ),
            (
                "valkey+unix:/run/r.sock?password=S3cretPW",
                "valkey+unix:/run/r.sock?password=***",
            ),
            ("redis+cluster://:pw@h1:1,h2:2", "redis+cluster://:***@h1:1,h2:2"),
            (
                "rediss+cluster://app:s3cr%40t@a:1,b:2/?pass=zz",
                "rediss+cluster://app:***@a:1,b:2/?pass=***",
            ),
            ("redis+cluster://h1:1,h2:2,h3:3", "redis+cluster://h1:1,h2:2,h3:3"),
        ] {
            assert_eq!(url(given), shown, "{given}");
        }
    }

    #[test]
    fn what_does_not_parse_is_never_echoed() {
        for (given, shown) in [
            ("redis://:S3c/retPW@127.0.0.1:6390", "redis://<unparsable>"),
            ("redis://u:1234/5678@h", "redis://<unparsable>"),
            ("redis://u:1234?x@h", "redis://<unparsable>"),
            ("redis://u:1234#x@h", "redis://<unparsable>"),
            ("unix:///run/r@dis.sock?pass=x", "unix://<unparsable>"),
            ("redis://:pw@h:99999", "redis://<unparsable>"),
            ("redis+cluster://:hunter22@a:1,,b:2", "redis+cluster://<unparsable>"),
            ("redis+cluster://:hunter22@a:notaport", "redis+cluster://<unparsable>"),
            ("redis+cluster://:hun/ter22@a:1,b:2", "redis+cluster://<unparsable>"),
            ("redis://:TopSecretPW@[not a url", "redis://<unparsable>"),
            ("http://:TopSecretPW@h", "<unparsable>"),
            ("not a url", "<unparsable>"),
            ("", "<unparsable>"),
            // The password appears elsewhere in the URL: shown as nothing.
            ("redis://:h0st@h0st:1", "redis://<unparsable>"),
        ] {
            assert_eq!(url(given), shown, "{given}");
        }
    }
}
