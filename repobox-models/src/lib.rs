//! The repobox models: the key layout the web app and the runners share, and
//! the domain rules on top of it (a job's status machine, a session's life).
//! Generated functions (`Job::get`, ...) return the ORM's error; the models'
//! own functions return [`Error`], which wraps it.
//!
//! | key | type | TTL |
//! |---|---|---|
//! | `user:<id>` | hash ([`User`]) | none |
//! | `user:email:<email>` | string -> user id | none |
//! | `session:<digest>` | hash ([`Session`]); digest = lowercase hex SHA-256 of the token | 7 days |
//! | `sessions:user:<user_id>` | set of session digests | follows its sessions |
//! | `job:<id>` | hash ([`Job`]) | none |
//! | `jobs:user:<user_id>` | sorted set, score `created_at` | none |
//! | `jobs:status:<status>` | sorted set, score `created_at` | none |
//! | `jobs:delayed` | sorted set of delayed and retrying jobs, score `run_at` | none |
//! | `jobs:stream` | stream, group `runners` (priority `normal`) | none |
//! | `jobs:stream:high`, `jobs:stream:low` | streams, group `runners`: the other priority levels | none |
//! | `jobs:events` | stream: status changes, cancellation requests, progress, output | about 10,000 entries |
//! | `jobs:stream:paused` | string: set while the queue is paused | none |
//! | `jobs:stream:rate` | sorted set: starts granted in the rate limit's window | the window |
//! | `{jobs:stream:tenant:<user_id>}:running`, `:parked` | sorted sets: a user's slots and parked jobs | none |
//! | `jobs:stream:parked` | sorted set: users that parked jobs | none |
//! | `job:<id>:output` | list of output lines | 24 hours |
//! | `git_providers:<user_id>` | set of [`GitProvider`]s | none |
//! | `repo_cache:<user_id>:<provider>` | hash ([`RepoCache`]) | 5 minutes |
//! | `git_credential:<user_id>:<provider>` | hash ([`GitCredential`]), tokens encrypted | none |

#![warn(missing_docs)]

mod error;
mod git;
mod job;
mod migrations;
mod overview;
mod session;
mod user;

pub use error::{Error, Result};
pub use git::{
    GitCredential, GitCredentialField, GitCredentialPatch, GitProvider, GitProviders, RepoCache, RepoCacheField,
    RepoCachePatch, RepoSummary,
};
pub use job::{
    Backoff, BackoffKind, Cancel, DeadLetter, EVENTS_KEPT, EndAndTake, Follow, JOB_EVENTS, JOB_OUTPUT_TTL, JOBS_GROUP,
    JOBS_STREAM, Job, JobEvent, JobField, JobOutcome, JobPatch, JobStart, JobStatus, Lease, Next, OutputRange,
    Priority, Promoted, Purged, RetryPolicy, Start, StatusChange, Update, level_queues,
};
pub use migrations::{JobExitCode, migration, migrations};
pub use overview::{LevelOverview, Overview};
pub use session::{Session, SessionField, SessionPatch, SessionToken};
pub use user::{User, UserDeleted, UserField, UserPatch};

/// Calls the macro `$each` with every model: the one list of the models,
/// so a new model is swept and counted as soon as it is added here.
macro_rules! with_models {
    ($each:ident) => {
        $each!(User, Session, Job, RepoCache, GitCredential)
    };
}

/// Checks (or, with `repair`, repairs) every index of every model, as
/// `(model, report)` pairs. `walk` hears how far it
/// has come and says how fast it may go.
pub async fn sweep_indexes<C: repobox_orm::prelude::ConnectionLike + Send>(
    conn: &mut C,
    repair: bool,
    walk: &repobox_orm::Walk<'_>,
) -> repobox_orm::Result<Vec<(&'static str, repobox_orm::IndexReport)>> {
    macro_rules! each_model {
        ($($model:ty),+ $(,)?) => {{
            let mut reports = Vec::new();
            $(
                let found = if repair {
                    repobox_orm::repair_indexes_with::<$model, C>(conn, walk).await?
                } else {
                    repobox_orm::check_indexes_with::<$model, C>(conn, walk).await?
                };
                reports.extend(found.into_iter().map(|r| (stringify!($model), r)));
            )+
            reports
        }};
    }
    Ok(with_models!(each_model))
}

/// How many entities of each model there are, as `(model, count)` pairs:
/// a walk over the keyspace per model (see
/// [`count_entities_with`](repobox_orm::count_entities_with)).
pub async fn count_entities<C: repobox_orm::prelude::ConnectionLike + Send>(
    conn: &mut C,
    walk: &repobox_orm::Walk<'_>,
) -> repobox_orm::Result<Vec<(&'static str, u64)>> {
    macro_rules! each_model {
        ($($model:ty),+ $(,)?) => {{
            let mut counts = Vec::new();
            $(
                counts.push((stringify!($model), repobox_orm::count_entities_with::<$model, C>(conn, walk).await?));
            )+
            counts
        }};
    }
    Ok(with_models!(each_model))
}

/// The wire schema the web app and the Go runner follow: every model's key
/// template, fields (wire type, optionality), TTL and indexes, and the job
/// stream's entries. What `repobox schema` prints; `schema.json` at the
/// repository's root is this, and a test keeps the two the same.
pub fn schema() -> serde_json::Value {
    use repobox_orm::{RedisEntity, RedisValue};
    serde_json::json!({
        "models": [
            <User as RedisEntity>::META.schema(),
            <Session as RedisEntity>::META.schema(),
            <Job as RedisEntity>::META.schema(),
            <RepoCache as RedisEntity>::META.schema(),
            <GitCredential as RedisEntity>::META.schema(),
        ],
        "priority_levels": {
            "field": "priority",
            "streams": Priority::LEVELS.iter().map(|p| serde_json::json!({ "priority": p.to_string(), "key": p.stream(JOBS_STREAM) })).collect::<Vec<_>>(),
            "meaning": "a job waits on the stream of its priority (absent: normal, jobs:stream); each stream has the group runners, its own :dead and :outbox; runners read high, normal, low, and every tenth read low first",
        },
        "streams": [{
            "key": JOBS_STREAM,
            "group": JOBS_GROUP,
            "fields": ["job_id", "user_id", "enqueued_at"],
            "dead_letters": {
                "key": format!("{JOBS_STREAM}:dead"),
                "fields": ["original_id", "reason", "deliveries", "consumer", "dead_at", "job_id", "user_id", "enqueued_at"],
            },
        }],
        "lists": [{ "key": Job::OUTPUT_KEY.source, "ttl_ms": job::JOB_OUTPUT_TTL_MS }],
        "job_lease": {
            "fields": ["run_id", "run_entry", "lease_until"],
            "clock": "Redis TIME, unix millis",
            "start": "a queued job, or a running one whose lease_until is absent or not after Redis's clock, becomes running with a fresh random run_id, run_entry = the stream entry id, lease_until = clock + lease, in one compare-and-set on status, started_at, run_id and lease_until",
            "live_lease": "a running job whose lease_until is after Redis's clock is not started: a delivery of another entry is acknowledged as a duplicate, a delivery of run_entry is left pending",
            "renew": "while running, set lease_until = clock + lease if status is running and run_id is unchanged; a run that cannot renew before its lease passes stops its work",
            "status_writes": "every status write of a run is a compare-and-set that requires status running and its own run_id; leaving running removes lease_until",
        },
        "sets": [{ "key": GitProviders::KEY.source, "values": <GitProvider as RedisValue>::NAMES }],
        "events": {
            "key": JOB_EVENTS,
            "kept": EVENTS_KEPT,
            "fields": ["job_id", "kind", "at", "status", "progress", "message", "lines"],
            "kinds": {
                "status": "the job entered `status`; appended in the same write as the status (atomic on one server, through the stream's outbox on a cluster); a promotion to queued appends to jobs:stream instead and has no event",
                "cancel": "someone asked to cancel the running job; runners wake its run on it (a client that sets cancel_requested_at without this event is seen within 5 s)",
                "progress": "the run reported `progress` (0-100) and maybe `message`, also stored on the job as progress and progress_message",
                "output": "the job's output list has `lines` lines now",
            },
        },
        "job_schedule": {
            "fields": ["run_at", "retry"],
            "delayed_set": "jobs:delayed holds exactly the jobs that have run_at (status delayed or retrying), scored by run_at; it is an index of Job and moves with the job's hash",
            "promote": "a job in jobs:delayed whose run_at is not after Redis's clock becomes queued: one compare-and-set on status, run_at and started_at that removes run_at and appends its jobs:stream entry",
            "retry": "JSON {max_attempts, backoff: {kind: exponential|fixed, base_ms, max_ms, jitter}, retry_exit_codes}; absent: the runner's policy. A run that fails retryably with attempts left (retries + 1 < max_attempts) becomes retrying with run_at = clock + backoff and a history entry with attempt and run_at; otherwise failed",
            "status_index": "jobs:status:<status> holds every job under its current status, scored by created_at",
            "paused": { "key": format!("{JOBS_STREAM}:paused"), "meaning": "while this key exists, runners take no new deliveries; its value is the unix millis of the pause" },
            "metrics": {
                "counts": format!("{JOBS_STREAM}:metrics:<outcome>"),
                "outcomes": repobox_orm::queue::OUTCOMES,
                "durations": format!("{JOBS_STREAM}:durations"),
                "meaning": "counts: hash, unix minute (runner's clock) -> deliveries that ended so, the last hour kept, expires 2 h after its last count; durations: list of the last 1,000 run times in ms, newest first",
            },
            "rate_limit": { "key": format!("{JOBS_STREAM}:rate"), "meaning": "sorted set of the starts granted in the current window (member: a unique name, score: when, unix millis by Redis's clock)" },
            "user_slots": {
                "running": format!("{{{JOBS_STREAM}:tenant:<user_id>}}:running"),
                "parked": format!("{{{JOBS_STREAM}:tenant:<user_id>}}:parked"),
                "users": format!("{JOBS_STREAM}:parked"),
                "meaning": "running: job id -> lease expiry (a slot); parked: job id -> when parked (its delivery acknowledged, status queued, put back on jobs:stream when a slot frees); users: user id -> when it last parked a job",
            },
        },
    })
}

/// Redis's clock (`TIME`), in unix millis: what sessions and job leases are
/// dated by, so that every client judges them by the same clock.
pub async fn redis_now<C: repobox_orm::prelude::ConnectionLike + Send>(conn: &mut C) -> Result<i64> {
    let (secs, micros): (i64, i64) = repobox_orm::redis::cmd("TIME").query_async(conn).await?;
    Ok(secs.saturating_mul(1000).saturating_add(micros / 1000))
}

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

/// The application guide's Rust snippets, compiled as doc tests too.
#[cfg(doctest)]
#[doc = include_str!("../../docs/GUIDE.md")]
pub struct GuideDoctests;
