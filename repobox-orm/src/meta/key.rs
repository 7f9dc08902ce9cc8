//! Key templates and the key-part rules: what a `#[key("...")]` becomes.

use std::borrow::Cow;

use super::key_part::check_key_part;
use crate::error::{Error, Result, Shown};

/// A parsed key template such as `repo_cache:{<user_id>}:<provider>`.
#[derive(Debug, Clone)]
pub struct KeyTemplate {
    /// The template as written.
    pub source: &'static str,
    /// Literal text and placeholders, in order.
    pub segments: &'static [Segment],
    /// The longest key part it takes, in bytes (`#[key("...", max_part_len = N)]`,
    /// else [`DEFAULT_MAX_KEY_PART_LEN`]).
    pub max_part_len: usize,
    /// Whether its key parts are secrets (`#[key("...", secret)]`, a digest of
    /// a session token, say): messages and logs show only a fingerprint of them.
    pub secret: bool,
}

/// The longest key part an entity takes unless its `#[key]` says otherwise, in bytes.
pub const DEFAULT_MAX_KEY_PART_LEN: usize = 512;

/// A piece of a key template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// Literal text (hash-tag braces included).
    Lit(&'static str),
    /// A `<placeholder>`: the Rust field name and its hash field name.
    Field {
        /// The placeholder as written (the Rust field name).
        placeholder: &'static str,
        /// The hash field that holds the value.
        field: &'static str,
    },
}

impl KeyTemplate {
    /// The placeholders in order, as `(placeholder, hash field)`.
    pub fn placeholders(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.segments.iter().filter_map(|s| match *s {
            Segment::Field { placeholder, field } => Some((placeholder, field)),
            Segment::Lit(_) => None,
        })
    }

    /// Fills the template with parts in placeholder order, validating each.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKeyPart`](crate::Error::InvalidKeyPart) for a part that could address
    /// another key (see [`validate_key_part`](crate::meta::validate_key_part)); no I/O. Also
    /// for a missing part.
    pub fn build<S: AsRef<str>>(&self, parts: &[S]) -> Result<String> {
        let mut parts = parts.iter();
        self.fill(|placeholder, _| {
            parts.next().map(|p| p.as_ref()).ok_or(Error::InvalidKeyPart {
                template: self.source,
                placeholder,
                value: Shown::new(""),
                reason: "is missing",
            })
        })
    }

    /// Fills the template by asking `part` for each placeholder (`placeholder`, `field`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKeyPart`](crate::Error::InvalidKeyPart) for a part that could address
    /// another key (see [`validate_key_part`](crate::meta::validate_key_part)); no I/O. Also
    /// any error `part` returns.
    pub fn fill<'v>(&self, mut part: impl FnMut(&'static str, &'static str) -> Result<&'v str>) -> Result<String> {
        let mut key = String::with_capacity(self.source.len() + 16);
        for segment in self.segments {
            match *segment {
                Segment::Lit(text) => key.push_str(text),
                Segment::Field { placeholder, field } => {
                    let value = part(placeholder, field)?;
                    check_key_part(self.source, placeholder, value, self.max_part_len)?;
                    key.push_str(value);
                }
            }
        }
        Ok(key)
    }

    /// `key` as messages and logs may show it: itself, or for a `secret`
    /// template with each key part cut to a fingerprint (its first 8
    /// characters and `…`).
    /// Borrows `key` unless the template is secret, so showing a plain key
    /// costs nothing on the read and write paths.
    pub fn shown<'k>(&self, key: &'k str) -> Cow<'k, str> {
        if !self.secret {
            return Cow::Borrowed(key);
        }
        let Some(parts) = self.parse_key(key) else {
            return Cow::Owned(format!("<a key of `{}`>", self.source));
        };
        let mut parts = parts.into_iter();
        let mut out = String::with_capacity(key.len());
        for segment in self.segments {
            match *segment {
                Segment::Lit(text) => out.push_str(text),
                Segment::Field { .. } => {
                    let part = parts.next().unwrap_or_default();
                    out.extend(part.chars().take(8));
                    out.push('…');
                }
            }
        }
        Cow::Owned(out)
    }

    /// The key parts of `key` when it is exactly a key of this template: the
    /// literal text matches and every part is a valid key part. `None` for
    /// any other key (`jobs:user:alice:archive` is not a `jobs:user:<user_id>`).
    pub fn parse_key<'k>(&self, key: &'k str) -> Option<Vec<&'k str>> {
        let mut parts = Vec::new();
        self.match_from(0, key, &mut parts).then_some(parts)
    }

    fn match_from<'k>(&self, at: usize, rest: &'k str, parts: &mut Vec<&'k str>) -> bool {
        let Some(segment) = self.segments.get(at) else {
            return rest.is_empty();
        };
        match *segment {
            Segment::Lit(text) => rest
                .strip_prefix(text)
                .is_some_and(|rest| self.match_from(at + 1, rest, parts)),
            Segment::Field { placeholder, .. } => {
                // Key parts hold no `:` and no braces, so the candidates are few.
                for (end, _) in rest.char_indices().skip(1).chain([(rest.len(), ' ')]) {
                    let part = &rest[..end];
                    if check_key_part(self.source, placeholder, part, self.max_part_len).is_err() {
                        break;
                    }
                    parts.push(part);
                    if self.match_from(at + 1, &rest[end..], parts) {
                        return true;
                    }
                    parts.pop();
                }
                false
            }
        }
    }

    /// The key of the entity whose id is `id` (its key parts joined by `:`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKeyPart`](crate::Error::InvalidKeyPart) for a part that could address
    /// another key (see [`validate_key_part`](crate::meta::validate_key_part)); no I/O. Also
    /// for an id with fewer or more `:`-separated parts than the template has placeholders.
    pub fn key_from_id(&self, id: &str) -> Result<String> {
        let mut parts = id.split(':');
        let key = self.fill(|placeholder, _| {
            parts.next().ok_or(Error::InvalidKeyPart {
                template: self.source,
                placeholder,
                value: Shown::new(id),
                reason: "is missing from the id",
            })
        })?;
        if parts.next().is_some() {
            return Err(Error::InvalidKeyPart {
                template: self.source,
                placeholder: self.placeholders().last().map_or("", |p| p.0),
                value: Shown::new(id),
                reason: "has more `:`-separated parts than the key has placeholders",
            });
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::super::key_part::{refusal, validate_key_part};
    use super::*;

    #[test]
    fn unassigned_private_and_blank_symbols_are_refused() {
        for c in [
            '\u{2800}',
            '\u{FFFC}',
            '\u{FFFD}',
            '\u{E000}',
            '\u{F8FF}',
            '\u{F0000}',
            '\u{10FFFF}',
            '\u{D7FF}',
        ] {
            assert!(refusal(c, false).is_some(), "{:04X}", u32::from(c));
        }
        for c in ['é', '日', '😀', 'ß'] {
            assert_eq!(refusal(c, false), None, "{c}");
        }
    }

    static REPO_CACHE: KeyTemplate = KeyTemplate {
        source: "repo_cache:{<user_id>}:<provider>",
        segments: &[
            Segment::Lit("repo_cache:{"),
            Segment::Field {
                placeholder: "user_id",
                field: "user_id",
            },
            Segment::Lit("}:"),
            Segment::Field {
                placeholder: "provider",
                field: "provider",
            },
        ],
        max_part_len: 16,
        secret: false,
    };

    #[test]
    fn builds_and_parses_ids() {
        assert_eq!(REPO_CACHE.build(&["u1", "github"]).unwrap(), "repo_cache:{u1}:github");
        assert_eq!(REPO_CACHE.key_from_id("u1:github").unwrap(), "repo_cache:{u1}:github");
        assert!(REPO_CACHE.key_from_id("u1").is_err());
        assert!(REPO_CACHE.key_from_id("u1:github:x").is_err());
    }

    #[test]
    fn refuses_parts_that_address_other_keys() {
        for bad in [
            "", "a:b", "a{b", "}", "a*", "a?", "[a]", "a b", "a\tb", "a\nb", "\u{7f}", "a\u{a0}b",
        ] {
            let err = REPO_CACHE.build(&[bad, "github"]).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidKeyPart {
                        placeholder: "user_id",
                        ..
                    }
                ),
                "{bad:?}: {err}"
            );
        }
        assert!(REPO_CACHE.build(&["ü-ñ.é@x+y", "github"]).is_ok());
    }

    #[test]
    fn secret_keys_are_shown_as_fingerprints() {
        static SESSION: KeyTemplate = KeyTemplate {
            source: "session:<id>",
            segments: &[
                Segment::Lit("session:"),
                Segment::Field {
                    placeholder: "id",
                    field: "id",
                },
            ],
            max_part_len: 512,
            secret: true,
        };
        let digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(SESSION.shown(&format!("session:{digest}")), "session:9f86d081…");
        assert_eq!(REPO_CACHE.shown("repo_cache:{u1}:github"), "repo_cache:{u1}:github");
    }

    #[test]
    fn parses_only_keys_of_its_own_shape() {
        assert_eq!(
            REPO_CACHE.parse_key("repo_cache:{u1}:github"),
            Some(vec!["u1", "github"])
        );
        for other in [
            "repo_cache:{u1}:github:extra",
            "repo_cache:{u1:x}:github",
            "repo_cache:{}:github",
            "repo_cache:u1:github",
            "repo_cache:{u1}:",
            "repo_cache:{u1}:git hub",
            "other:{u1}:github",
            "repo_cache:{u1}:abcdefghijklmnopq",
        ] {
            assert_eq!(REPO_CACHE.parse_key(other), None, "{other}");
        }
    }

    #[test]
    fn refuses_invisible_characters_and_long_parts() {
        for bad in [
            "admin@corp.io\u{200B}",
            "a\u{202E}b",
            "\u{FEFF}a",
            "a\u{200D}b",
            "a\u{00AD}b",
            "a\u{E0041}",
        ] {
            let err = REPO_CACHE.build(&[bad, "github"]).unwrap_err();
            assert!(err.to_string().contains("invisible format character"), "{bad:?}: {err}");
        }
        for (bad, reason) in [
            ("\u{115F}", "default-ignorable"),
            ("a\u{3164}", "default-ignorable"),
            ("a\u{FE0F}", "default-ignorable"),
            ("\u{FFA0}b", "default-ignorable"),
            ("\u{0301}a", "combining mark"),
            ("\u{0903}a", "combining mark"),
            ("\u{20DD}", "combining mark"),
        ] {
            let err = REPO_CACHE.build(&[bad, "github"]).unwrap_err();
            assert!(err.to_string().contains(reason), "{bad:?}: {err}");
        }
        // A mark after a letter is part of the letter (decomposed `é`).
        for good in ["e\u{0301}", "\u{D55C}\u{AD6D}", "\u{1F383}", "\u{0928}\u{093F}"] {
            assert!(REPO_CACHE.build(&[good, "github"]).is_ok(), "{good:?}");
        }
        assert!(REPO_CACHE.build(&["a".repeat(16), "github".into()]).is_ok());
        let err = REPO_CACHE.build(&["a".repeat(17), "github".into()]).unwrap_err();
        assert!(err.to_string().contains("longer than the key allows"), "{err}");
        // The default limit, and a message that shows 64 characters and the length.
        let huge = "x".repeat(1 << 20);
        let err = validate_key_part("t:<p>", "p", &huge).unwrap_err();
        let text = err.to_string();
        assert!(text.len() < 300, "{text}");
        assert!(
            text.contains(&format!("\"{}\"… (1048576 bytes)", "x".repeat(64))),
            "{text}"
        );
        assert!(validate_key_part("t:<p>", "p", &"x".repeat(DEFAULT_MAX_KEY_PART_LEN)).is_ok());
        assert!(validate_key_part("t:<p>", "p", &"x".repeat(DEFAULT_MAX_KEY_PART_LEN + 1)).is_err());
    }
}
