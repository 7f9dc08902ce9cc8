//! The repobox models: the key layout the web app and the runners share.
//!
//! | key | type | TTL |
//! |---|---|---|
//! | `user:<id>` | hash ([`User`]) | none |
//! | `user:email:<email>` | string -> user id | none |
//! | `session:<id>` | hash ([`Session`]) | 7 days |
//! | `sessions:user:<user_id>` | set of session ids | follows its sessions |
//! | `job:<id>` | hash ([`Job`]) | none |
//! | `jobs:user:<user_id>` | sorted set, score `created_at` | none |
//! | `jobs:stream` | stream, group `runners` | none |
//! | `job:<id>:output` | list of output lines | 24 hours |
//! | `git_providers:<user_id>` | set of [`GitProvider`]s | none |
//! | `repo_cache:<user_id>:<provider>` | hash ([`RepoCache`]) | 5 minutes |

#![warn(missing_docs)]

mod git;
mod job;
pub mod runner;
mod session;
mod user;

pub use git::{GitProvider, GitProviders, RepoCache, RepoSummary};
pub use job::{
    JOB_OUTPUT_TTL, JOBS_GROUP, JOBS_STREAM, Job, JobOutcome, JobPatch, JobStatus, OutputRange, StatusChange,
};
pub use session::{SESSION_TTL, Session, SessionPatch};
pub use user::{User, UserPatch};

/// Milliseconds since the Unix epoch, as every timestamp field holds them.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The README's Rust snippets, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
