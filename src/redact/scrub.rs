//! The second net: every URL the process was given, and every secret in
//! them, replaced in whatever text leaves the process.

use std::borrow::Cow;

use super::{MASK, MIN_SEARCHED_SECRET, scheme_of, secrets_of, url};

/// Replaces, in any text, the URLs the process was given with their
/// rendering by [`url()`](fn@url), then every secret they hold with `***`.
#[derive(Clone, Debug, Default)]
pub struct Scrubber {
    /// Each given URL and its rendering, longest first.
    urls: Vec<(String, String)>,
    /// Secrets of those URLs, longest first.
    secrets: Vec<String>,
}

impl Scrubber {
    /// A scrubber for every URL in the process's arguments (`--redis-url`'s
    /// value, in either form, and anything that looks like a URL) and in
    /// `REDIS_URL`.
    pub fn from_process() -> Self {
        let args: Vec<String> = std::env::args_os()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut given: Vec<String> = std::env::var("REDIS_URL").ok().into_iter().collect();
        let mut after_flag = false;
        for arg in &args {
            if after_flag {
                given.push(arg.clone());
            } else if let Some(value) = arg.strip_prefix("--redis-url=") {
                given.push(value.to_owned());
            } else if arg.contains("://") || scheme_of(arg).is_some() {
                given.push(arg.clone());
            }
            after_flag = arg == "--redis-url";
        }
        let mut scrubber = Scrubber::new(given.iter().map(String::as_str));
        // The web UI's token, from its variable or its flag.
        let mut tokens: Vec<String> = std::env::var("REPOBOX_WEB_TOKEN").ok().into_iter().collect();
        for pair in args.windows(2) {
            if pair[0] == "--token" {
                tokens.push(pair[1].clone());
            }
        }
        tokens.extend(
            args.iter()
                .filter_map(|a| a.strip_prefix("--token="))
                .map(str::to_owned),
        );
        // A shorter token is refused before it is used: masking it would
        // mask ordinary words (the refusal's own "too short").
        for token in tokens.into_iter().filter(|t| t.chars().count() >= 16) {
            scrubber.add_secret(token);
        }
        scrubber
    }

    /// Masks `secret` wherever it appears (when it is long enough to be
    /// searched for without masking ordinary words).
    pub fn add_secret(&mut self, secret: String) {
        if secret.len() >= MIN_SEARCHED_SECRET && !self.secrets.contains(&secret) {
            self.secrets.push(secret);
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// A scrubber for these URLs.
    pub fn new<'a>(urls: impl IntoIterator<Item = &'a str>) -> Self {
        let mut scrubber = Scrubber::default();
        for given in urls {
            if given.is_empty() {
                continue;
            }
            scrubber.urls.push((given.to_owned(), url(given)));
            for secret in secrets_of(given) {
                if secret.len() >= MIN_SEARCHED_SECRET && !scrubber.secrets.contains(&secret) {
                    scrubber.secrets.push(secret);
                }
            }
        }
        scrubber.urls.sort_by_key(|(given, _)| std::cmp::Reverse(given.len()));
        scrubber.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        scrubber
    }

    /// `text` with the given URLs rendered and their secrets masked.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for (given, shown) in &self.urls {
            if out.contains(given.as_str()) {
                out = Cow::Owned(out.replace(given.as_str(), shown));
            }
        }
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
        out
    }
}

/// Log lines through a [`Scrubber`]: each event is buffered whole and
/// scrubbed before it reaches stderr.
pub struct ScrubbedStderr {
    scrubber: Scrubber,
}

impl ScrubbedStderr {
    pub fn new(scrubber: Scrubber) -> Self {
        ScrubbedStderr { scrubber }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ScrubbedStderr {
    type Writer = ScrubbedEvent<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbedEvent {
            scrubber: &self.scrubber,
            buffer: Vec::new(),
        }
    }
}

/// One log event on its way to stderr.
pub struct ScrubbedEvent<'a> {
    scrubber: &'a Scrubber,
    buffer: Vec<u8>,
}

impl std::io::Write for ScrubbedEvent<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buffer);
        let scrubbed = self.scrubber.scrub(&text);
        let result = std::io::stderr().write_all(scrubbed.as_bytes());
        self.buffer.clear();
        result
    }
}

impl Drop for ScrubbedEvent<'_> {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scrubber_masks_given_urls_and_their_secrets_anywhere() {
        let scrubber = Scrubber::new(["redis://:S3c/retPW@127.0.0.1:6390", "unix:///s?pass=An0ther&db=1"]);
        assert_eq!(
            scrubber.scrub("bad redis://:S3c/retPW@127.0.0.1:6390 and S3c/retPW"),
            "bad redis://<unparsable> and ***"
        );
        assert_eq!(scrubber.scrub("pass An0ther"), "pass ***");
        assert!(matches!(scrubber.scrub("nothing here"), Cow::Borrowed(_)));
    }
}
