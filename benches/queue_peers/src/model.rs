//! What is measured: the scenarios, the sides, and what one run yields.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// Jobs per add call in the bulk scenarios (and in the untimed fill of the worker ones).
pub const BULK: usize = 100;

/// The error of a run, a side or the harness.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A scenario a side cannot run, and why: reported as `n/a`, not as a failure.
#[derive(Debug)]
pub struct NotApplicable(pub String);

impl fmt::Display for NotApplicable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotApplicable {}

/// One of BullMQ's benchmark scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Single adds, each awaited before the next.
    QueueAdd,
    /// Adds in calls of [`BULK`].
    QueueAddBulk,
    /// Jobs already enqueued, one worker at this concurrency, until all are completed.
    Worker(usize),
}

impl Scenario {
    /// The default scenarios, in the order they run.
    pub const DEFAULT: [Scenario; 5] = [
        Scenario::QueueAdd,
        Scenario::QueueAddBulk,
        Scenario::Worker(1),
        Scenario::Worker(10),
        Scenario::Worker(100),
    ];

    /// Parses a scenario name (`worker-concurrent-<n>` for any n >= 1).
    pub fn parse(name: &str) -> Option<Scenario> {
        match name {
            "queue-add" => Some(Scenario::QueueAdd),
            "queue-add-bulk" => Some(Scenario::QueueAddBulk),
            "worker-generic" => Some(Scenario::Worker(1)),
            _ => {
                let n: usize = name.strip_prefix("worker-concurrent-")?.parse().ok()?;
                (n >= 1).then_some(Scenario::Worker(n))
            }
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scenario::QueueAdd => f.write_str("queue-add"),
            Scenario::QueueAddBulk => f.write_str("queue-add-bulk"),
            Scenario::Worker(1) => f.write_str("worker-generic"),
            Scenario::Worker(n) => write!(f, "worker-concurrent-{n}"),
        }
    }
}

/// A queue under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// repobox's queue and runner.
    Repobox,
    /// BullMQ on Node.
    Bullmq,
    /// apalis with apalis-redis.
    Apalis,
}

impl Side {
    /// Every side, in the order each round runs them.
    pub const ALL: [Side; 3] = [Side::Repobox, Side::Bullmq, Side::Apalis];

    /// Parses `repobox`, `bullmq` or `apalis`.
    pub fn parse(name: &str) -> Option<Side> {
        Side::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The side's name on the command line and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Side::Repobox => "repobox",
            Side::Bullmq => "bullmq",
            Side::Apalis => "apalis",
        }
    }
}

/// What one timed section cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Measured {
    /// Jobs the section handled.
    pub jobs: usize,
    /// Wall time of the section, in seconds.
    pub seconds: f64,
    /// The server's CPU time (user + sys) over the section, in microseconds.
    pub cpu_us: f64,
    /// Commands the server processed over the section (those run inside Lua scripts
    /// included), less the INFO calls of the measurement.
    pub commands: f64,
}

impl Measured {
    /// A section of `jobs` jobs that took `took`, with the server deltas.
    pub fn new(jobs: usize, took: Duration, cpu_us: f64, commands: f64) -> Self {
        Measured {
            jobs,
            seconds: took.as_secs_f64(),
            cpu_us,
            commands,
        }
    }

    /// Jobs per second.
    pub fn jobs_per_sec(&self) -> f64 {
        self.jobs as f64 / self.seconds
    }

    /// Server CPU microseconds per job.
    pub fn cpu_us_per_job(&self) -> f64 {
        self.cpu_us / self.jobs as f64
    }

    /// Server commands per job.
    pub fn commands_per_job(&self) -> f64 {
        self.commands / self.jobs as f64
    }
}
