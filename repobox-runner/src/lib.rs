//! The repobox job runner: takes jobs from `jobs:stream`, runs them with a
//! handler, streams their output, records their status, and only then
//! acknowledges.
//!
//! A handler is any [`JobHandler`]; [`ProcessHandler`] runs a real program per
//! job (what `repobox runner --exec` and `--shell` use):
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use repobox_orm::Store;
//! use repobox_runner::{ProcessHandler, Runner, RunnerConfig, RunnerControl};
//!
//! let store = Store::open("redis://127.0.0.1:6379")?;
//! let handler = ProcessHandler::exec("/usr/local/bin/build", ["--ci"])
//!     .timeout(Duration::from_secs(600))
//!     .kill_grace(Duration::from_secs(10));
//! let control = RunnerControl::new();
//! // control.drain() on SIGTERM, control.stop() on a second one.
//! let stats = Runner::new(store, handler, RunnerConfig::new("runner-1"))
//!     .run_with(control)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! - `config`: [`RunnerConfig`] and [`RunStats`];
//! - `control`: [`RunnerControl`], draining and health;
//! - `runner`: [`Runner`]'s loop; `link`: its voice about Redis;
//! - `work`: one delivery's life; `output`: [`Output`];
//! - `process`: [`ProcessHandler`].

#![warn(missing_docs)]

mod cancels;
mod chores;
mod config;
mod control;
mod link;
mod output;
mod process;
mod runner;
mod tally;
mod work;

use std::future::Future;
use std::time::Duration;

use repobox_models::Job;

pub use self::config::{RunStats, RunnerConfig};
pub use self::control::{Health, Phase, RunnerControl};
pub use self::output::{Output, StopReason};
pub use self::process::{ALWAYS_DENIED, ALWAYS_DENIED_PREFIXES, EnvRefused, ProcessHandler};
pub use self::runner::Runner;

/// What a handler says about a job it ran: `Ok(exit code)` ends it (0:
/// succeeded, other: failed); `Err` is a [`Failure`].
pub type HandlerResult = std::result::Result<i32, Failure>;

/// Runs one job.
pub trait JobHandler: Send + Sync + 'static {
    /// Runs `job`, writing its output to `output`.
    fn run(&self, job: Job, output: Output) -> impl Future<Output = HandlerResult> + Send;

    /// How long the handler needs to stop once asked to (its job cancelled,
    /// or the runner stopping) before it is aborted: 5 s unless it says
    /// otherwise. [`ProcessHandler`] says its kill grace and a little more.
    fn stop_grace(&self) -> Duration {
        Duration::from_secs(5)
    }
}

/// Why a handler did not run a job to an exit code.
///
/// A plain reason (`Err("cannot clone".into())`, or any `String` through
/// `?`) is a failure to run the job that another delivery may not have: the
/// job goes back to the queue until the queue's maximum of deliveries, and
/// is then dead-lettered. [`Failure::fatal`] ends the job `failed` at once,
/// with the reason (a timeout, a process killed by a signal, an environment
/// the job may not set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Why, as the job's `error` records it.
    pub reason: String,
    /// The exit code to record with it, if there was one.
    pub exit_code: Option<i32>,
    /// Whether another delivery may run the job again.
    pub retry: bool,
}

impl Failure {
    /// A failure that another delivery may not have: retried.
    pub fn retry(reason: impl Into<String>) -> Self {
        Failure {
            reason: reason.into(),
            exit_code: None,
            retry: true,
        }
    }

    /// A failure that ends the job `failed` now.
    pub fn fatal(reason: impl Into<String>) -> Self {
        Failure {
            reason: reason.into(),
            exit_code: None,
            retry: false,
        }
    }

    /// The same failure, recorded with an exit code.
    pub fn with_exit_code(mut self, code: i32) -> Self {
        self.exit_code = Some(code);
        self
    }
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Failure::retry(reason)
    }
}

impl From<&str> for Failure {
    fn from(reason: &str) -> Self {
        Failure::retry(reason)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}
