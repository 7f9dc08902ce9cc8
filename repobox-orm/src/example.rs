//! An example entity, compiled for the documentation only, so that every
//! item `#[derive(RedisEntity)]` and `#[derive(RedisValue)]` generate is on
//! this page with its documentation (as bitflags shows `example_generated`).
//! Nothing here is part of the API.
//!
//! ```text
//! #[derive(RedisValue)]
//! pub enum Status { Queued, Running, #[redis(alias = "completed")] Done }
//!
//! #[derive(RedisEntity)]
//! #[key("job:<id>")]
//! #[ttl(days = 7)]
//! #[index(sorted = "jobs:user:<user_id>", score = created_at)]
//! #[index(set = "jobs:status:<status>")]
//! #[index(unique = "job:slug:<slug>")]
//! pub struct Job { .. }
//! ```

use std::collections::BTreeMap;

use crate::{RedisEntity, RedisValue};

/// A job's status, stored as `"queued"`, `"running"` or `"done"` (and
/// `"completed"`, an old name, read as `Done`).
#[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq)]
#[redis(crate = "crate")]
pub enum Status {
    /// `"queued"`.
    Queued,
    /// `"running"`.
    Running,
    /// `"done"`; `"completed"` reads as it too.
    #[redis(alias = "completed")]
    Done,
}

/// A job: the struct the derive reads. Its generated calls are below,
/// after the trait implementations' list; [`JobPatch`] and [`JobField`] are
/// generated too.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(crate = "crate")]
#[key("job:<id>")]
#[ttl(days = 7)]
#[index(sorted = "jobs:user:<user_id>", score = created_at)]
#[index(set = "jobs:status:<status>")]
#[index(unique = "job:slug:<slug>")]
pub struct Job {
    /// The key part: `job:<id>`.
    pub id: String,
    /// The owner: the sorted index `jobs:user:<user_id>` lists a user's jobs.
    pub user_id: String,
    /// Unique among jobs: `Job::by_slug` finds its owner.
    pub slug: String,
    /// The set index `jobs:status:<status>`.
    pub status: Status,
    /// Unix milliseconds: the sorted index's score.
    pub created_at: i64,
    /// `None`: the hash field is absent. Hashes written before the rename
    /// hold `exit`, which reads as this.
    #[redis(alias = "exit")]
    pub exit_code: Option<i32>,
    /// Absent on read: 0.
    #[redis(default)]
    pub retries: u32,
    /// Stored as JSON text.
    #[redis(json, default)]
    pub env: BTreeMap<String, String>,
}
