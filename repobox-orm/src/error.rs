//! The one error type of repobox.

use std::fmt;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in repobox.
///
/// Messages name the Redis key (and field, where there is one) so that a log
/// line is enough to find the bad data.
///
/// # Errors of every call
///
/// Besides what each call documents, every call that talks to Redis can
/// fail with [`Error::Timeout`] (no answer within the store's call bound),
/// [`Error::Closed`] (the store was closed) or [`Error::Redis`] (the
/// connection failed, or the server answered with an error). A write can
/// also fail with [`Error::WriteOutcomeUnknown`] when its connection failed
/// after the command was sent (it may have run: read before trying again),
/// and with [`Error::ReadOnly`] or [`Error::OutOfMemory`] when the server
/// refused it (it did not run).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The entity does not exist (an `update`, or an `expire_in` of a missing key).
    #[error("`{key}` not found")]
    NotFound {
        /// The entity's key.
        key: String,
    },
    /// `create` found the key already present.
    #[error("`{key}` already exists")]
    AlreadyExists {
        /// The entity's key.
        key: String,
    },
    /// A unique index already maps the value to another entity.
    #[error("unique index `{index}` already holds `{index_key}` for another entity (`{owner}`)")]
    UniqueViolation {
        /// The name of the unique index (`by_email`).
        index: &'static str,
        /// The index key (`user:email:a@b.c`).
        index_key: String,
        /// The id of the entity that holds the value.
        owner: String,
    },
    /// A key part (a placeholder value) that would address another key, or is too long.
    #[error("invalid key part for `<{placeholder}>` in `{template}`: {value} {reason}")]
    InvalidKeyPart {
        /// The key or index template.
        template: &'static str,
        /// The placeholder the part was meant for.
        placeholder: &'static str,
        /// The refused value: at most its first 64 characters, and its length.
        value: Shown,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An argument out of the range Redis or repobox can take (a TTL beyond
    /// what Redis keeps, an offset past `i64::MAX`, a timestamp that overflows).
    /// Refused before any I/O.
    #[error("invalid {name}: {reason}")]
    InvalidArgument {
        /// The argument.
        name: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A hash field could not be decoded into its Rust type.
    #[error("cannot decode field `{field}` of `{key}`: {value} is not {expected}")]
    Decode {
        /// The entity's key.
        key: String,
        /// The hash field.
        field: &'static str,
        /// What Redis held, quoted and shortened (`missing` when absent).
        value: DecodeValue,
        /// What was expected (`an integer`, `one of "queued", "running"`).
        expected: &'static str,
    },
    /// An index member that no entity can have: not UTF-8, or not an id of
    /// the entity (written by hand or by another client). Reported, never
    /// fatal to the rest of the read, and left in place.
    #[error("index `{index_key}` holds a member that is not an entity id: {member} {reason}")]
    BadIndexMember {
        /// The index key.
        index_key: String,
        /// The member (at most its first 64 characters, lossily decoded).
        member: Shown,
        /// Why it is not an id.
        reason: String,
    },
    /// An encrypted field that does not open: sealed with a key the ring does
    /// not hold, with another key, or copied from another entity or field.
    #[error("cannot decrypt field `{field}` of `{key}`: {reason}")]
    Decrypt {
        /// The entity's key.
        key: String,
        /// The hash field.
        field: &'static str,
        /// Why not (never the value).
        reason: String,
    },
    /// A value that cannot be written (JSON serialization failed, a NaN score).
    #[error("cannot encode field `{field}`: {message}")]
    Encode {
        /// The field.
        field: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A conditional update found a field changed since it was read.
    #[error("`{key}`: field `{field}` changed since it was read")]
    Conflict {
        /// The entity's key.
        key: String,
        /// The first field whose value differed.
        field: String,
    },
    /// A write raced with other writers more often than it retries.
    #[error("`{key}` kept changing under a write; gave up after {attempts} attempts")]
    Contention {
        /// The entity's key.
        key: String,
        /// How often the write was tried.
        attempts: u32,
    },
    /// Redis answered with something repobox does not expect (a key of the wrong type, say).
    #[error("unexpected reply for `{key}`: {detail}")]
    UnexpectedReply {
        /// The key the command was about.
        key: String,
        /// What was wrong with the reply.
        detail: String,
    },
    /// A key holds another kind of value than repobox keeps there (another
    /// client wrote it): the write refused it before writing anything.
    #[error("`{key}` holds the wrong kind of value; nothing was written")]
    WrongType {
        /// The key (as messages show it).
        key: String,
    },
    /// A write was sent but the connection died before its reply: it may or may not
    /// have been applied. It was not re-sent; read before you retry it.
    #[error("the outcome of a write is unknown (the connection failed after it was sent): {0}")]
    WriteOutcomeUnknown(String),
    /// The server refused a write because it is a read-only replica (a failover
    /// demoted it). The store drops the connection and connects again on the next call.
    #[error("the server is a read-only replica; the write was not applied: {0}")]
    ReadOnly(String),
    /// The server refused a write for lack of memory (`OOM`: it is at its
    /// `maxmemory` and evicts nothing): the write was not applied. Reads go on.
    #[error("the server is out of memory (maxmemory); the write was not applied: {0}")]
    OutOfMemory(String),
    /// A command did not get a reply within the configured response timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The [`Store`](crate::Store) was closed.
    #[error("the store is closed")]
    Closed,
    /// Any other error reported by redis-rs or the server.
    #[error(transparent)]
    Redis(redis::RedisError),
}

impl Error {
    /// This error as the outcome of a script call that failed part-way
    /// through several writes: the writes before the failure may have been
    /// applied, so the outcome is unknown, except for a refusal that comes
    /// before any write (`OOM`).
    /// This error as the outcome of a write some of whose steps were applied
    /// before it (an ordered write on a cluster past its first write): the
    /// outcome is unknown, whatever refused the later step (an `OOM` there
    /// does not mean that nothing was written).
    pub(crate) fn after_writes(self) -> Error {
        match self {
            Error::WriteOutcomeUnknown(detail) => Error::WriteOutcomeUnknown(detail),
            other => Error::WriteOutcomeUnknown(format!("after part of the write was applied: {other}")),
        }
    }

    pub(crate) fn part_way(&self) -> Error {
        match self {
            Error::OutOfMemory(detail) => Error::OutOfMemory(detail.clone()),
            Error::WriteOutcomeUnknown(detail) => Error::WriteOutcomeUnknown(detail.clone()),
            other => Error::WriteOutcomeUnknown(other.to_string()),
        }
    }

    /// Whether this error says that the entity is absent.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

/// A refused text value as messages show it: at most its first 64
/// characters, quoted and escaped, with its length when it was longer.
#[derive(Clone, PartialEq, Eq)]
pub struct Shown {
    head: String,
    len: usize,
}

impl Shown {
    const CHARS: usize = 64;

    /// Keeps the first 64 characters of `value` and its length in bytes.
    pub fn new(value: &str) -> Self {
        Shown {
            head: value.chars().take(Self::CHARS).collect(),
            len: value.len(),
        }
    }

    /// The shown characters (at most 64).
    pub fn head(&self) -> &str {
        &self.head
    }

    /// The length of the whole value, in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the value was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.head)?;
        if self.head.len() < self.len {
            write!(f, "… ({} bytes)", self.len)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The raw value of a field that failed to decode, kept short for messages.
/// The value of a `#[redis(json)]` field is never shown, only its length:
/// structured values hold what a secret would be kept in (a job's
/// environment, tokens in a payload), and a message may reach a log or a
/// page.
#[derive(Clone, PartialEq, Eq)]
pub struct DecodeValue(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Missing,
    Shown(Vec<u8>),
    Withheld(usize),
}

impl DecodeValue {
    const SHOWN: usize = 64;

    pub(crate) fn new(raw: Option<&[u8]>) -> Self {
        DecodeValue(match raw {
            None => Repr::Missing,
            Some(r) => Repr::Shown(r[..r.len().min(Self::SHOWN + 1)].to_vec()),
        })
    }

    /// A value the message names by its length only.
    pub(crate) fn withheld(raw: Option<&[u8]>) -> Self {
        DecodeValue(match raw {
            None => Repr::Missing,
            Some(r) => Repr::Withheld(r.len()),
        })
    }

    /// The raw bytes Redis held (at most the first 65); `None` when the
    /// field was absent, or its value is withheld.
    pub fn raw(&self) -> Option<&[u8]> {
        match &self.0 {
            Repr::Shown(raw) => Some(raw),
            Repr::Missing | Repr::Withheld(_) => None,
        }
    }

    /// Whether the message withholds the value (a JSON field's).
    pub fn is_withheld(&self) -> bool {
        matches!(self.0, Repr::Withheld(_))
    }
}

impl fmt::Display for DecodeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Missing => f.write_str("missing"),
            Repr::Withheld(len) => write!(f, "a value of {len} bytes (not shown)"),
            Repr::Shown(raw) => {
                let shown = &raw[..raw.len().min(Self::SHOWN)];
                write!(f, "{:?}", String::from_utf8_lossy(shown))?;
                if raw.len() > Self::SHOWN {
                    f.write_str("…")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for DecodeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
