//! The command line: what `repobox` accepts.

use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

mod runner;

pub use self::runner::{BackoffArg, RunnerArgs};

#[derive(Parser)]
#[command(
    name = "repobox",
    version,
    about = "The repobox data layer: demo, job runner and inspection"
)]
pub struct Cli {
    /// Redis to use (default: $REDIS_URL, else redis://127.0.0.1:6379).
    // `--help` never shows the value: it may hold a password.
    #[arg(long, global = true, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// For `rediss://`: a CA certificate (PEM) to trust instead of the system's.
    #[arg(long, global = true, env = "REDIS_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// For mutual TLS: the client certificate (PEM).
    #[arg(long, global = true, env = "REDIS_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<std::path::PathBuf>,
    /// For mutual TLS: the client certificate's key (PEM).
    #[arg(long, global = true, env = "REDIS_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<std::path::PathBuf>,
    /// Print JSON: the result on stdout, an error as one object on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// How log lines look on stderr: `text`, or `json` (one object per line,
    /// for log shippers; the default with `--json`). Which lines:
    /// `REPOBOX_LOG` (default `info` for `runner`, `off` for the other commands).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The whole flow: a user logs in, enqueues jobs, a runner runs them. On a
    /// throw-away redis-server of its own unless a Redis is given; on a given
    /// one it works in a namespace of its own and touches nothing else.
    Demo(DemoArgs),
    /// Runs jobs from `jobs:stream` with a program (`--exec`, `--shell`) or
    /// the built-in demo handler (`--demo`) until SIGTERM or Ctrl-C, then
    /// drains. See "Running jobs" in docs/GUIDE.md.
    Runner(Box<RunnerArgs>),
    /// Reads jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Inspects the job queue.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Checks (the default) or repairs every index of every model.
    Index(IndexArgs),
    /// Prints the wire schema (models, fields, indexes, streams) as JSON, or
    /// with `--check FILE` compares it with a committed one: each change is
    /// compatible or breaking, and a breaking one exits with code 4.
    Schema(SchemaArgs),
    /// Lists the models' migrations with their state, or runs one online:
    /// resumable (Ctrl-C stops it after the batch in progress, the next run
    /// goes on from there), with a dry run, a rate and a check of the
    /// changed entities' indexes at the end. See "Changing your data".
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Serves the web UI (overview, jobs, dead letters, data) and `/metrics`
    /// until SIGTERM or Ctrl-C. See "Web UI and metrics" in docs/GUIDE.md.
    Web(WebArgs),
}

#[derive(Args)]
pub struct SchemaArgs {
    /// A committed schema (`repobox schema > schema.json` of an earlier
    /// version) to compare the current one with.
    #[arg(long, value_name = "FILE")]
    pub check: Option<std::path::PathBuf>,
}

#[derive(Args)]
pub struct WebArgs {
    /// Where to listen. Any address but a loopback one requires a token.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// The token every request must carry (a bearer header, or the cookie
    /// the login form sets), at least 16 characters. Required unless
    /// listening on loopback. Prefer the variable: a command line is
    /// visible to every user of the machine.
    #[arg(long, env = "REPOBOX_WEB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Show, never change: every action is hidden and refused.
    #[arg(long)]
    pub read_only: bool,
    /// Another `Host` the server answers to (its name behind a proxy); on
    /// loopback without a token, only the listening address, `localhost`
    /// and these are answered, which stops DNS rebinding.
    #[arg(long = "allow-host", value_name = "HOST[:PORT]")]
    pub allow_hosts: Vec<String>,
}

#[derive(Args)]
pub struct DemoArgs {
    /// How many jobs to enqueue (every third one fails).
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Keep what the demo wrote (its user, session, jobs and stream) instead
    /// of removing it at the end.
    #[arg(long)]
    pub keep: bool,
}

/// How log lines look.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// A duration: seconds (`90`), or with a unit (`90s`, `15m`, `2h`, `500ms`),
/// at most a year.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    let d = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(text).map_err(|e| format!("{e} (write 90, 90s, 15m or 2h)"))?,
    };
    if d > YEAR {
        return Err("at most a year".to_owned());
    }
    Ok(d)
}

/// A [`duration`] above zero.
pub(crate) fn positive_duration(text: &str) -> Result<Duration, String> {
    duration(text).and_then(|d| {
        if d.is_zero() {
            Err("must be above zero".to_owned())
        } else {
            Ok(d)
        }
    })
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Jobs newest first: a user's (`--user`) or, across users, those in a
    /// status (`--status`).
    #[command(group(ArgGroup::new("which").required(true).args(["user", "status"])))]
    List {
        /// The user's id.
        #[arg(long)]
        user: Option<String>,
        /// Only jobs in this status.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// Page size.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Jobs to skip.
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// One job and the end of its output.
    Show {
        /// The job's id.
        id: String,
    },
    /// Prints a job's output; with `-f`, follows it until the job ends.
    Tail {
        /// The job's id.
        id: String,
        /// Keep printing new lines until the job is over.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Puts a failed (or dead-lettered) job back on the queue.
    Retry {
        /// The job's id.
        id: String,
    },
    /// Cancels a job: a queued, delayed or retrying one at once, a running
    /// one through its runner.
    Cancel {
        /// The job's id.
        id: String,
    },
    /// Queues a delayed or retrying job now instead of at its `run_at`.
    RunNow {
        /// The job's id.
        id: String,
    },
    /// Removes jobs with their output and index entries (not running ones:
    /// cancel those first).
    Delete {
        /// The jobs' ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// A job status, as `--status` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusArg {
    /// Waiting for its time.
    Delayed,
    /// Waiting on the stream.
    Queued,
    /// A runner has it.
    Running,
    /// Waiting for its backoff after a failed run.
    Retrying,
    /// Finished with exit code 0.
    Succeeded,
    /// Finished otherwise.
    Failed,
    /// Stopped before it finished.
    Cancelled,
}

impl From<StatusArg> for repobox_models::JobStatus {
    fn from(s: StatusArg) -> Self {
        use repobox_models::JobStatus as S;
        match s {
            StatusArg::Delayed => S::Delayed,
            StatusArg::Queued => S::Queued,
            StatusArg::Running => S::Running,
            StatusArg::Retrying => S::Retrying,
            StatusArg::Succeeded => S::Succeeded,
            StatusArg::Failed => S::Failed,
            StatusArg::Cancelled => S::Cancelled,
        }
    }
}

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Jobs by status (waiting, running, delayed, retrying, ...), whether the
    /// queue is paused, pending deliveries, consumers and dead letters.
    Stats,
    /// Pauses the queue: runners take no new jobs (within a second) and say
    /// so; running jobs finish; new jobs keep arriving.
    Pause,
    /// Resumes a paused queue.
    Resume,
    /// Removes finished jobs in a status that finished before a time, with
    /// their output and index entries; `--dry-run` only counts them.
    Purge {
        /// `succeeded`, `failed` or `cancelled`.
        #[arg(long, value_enum)]
        status: StatusArg,
        /// Jobs that finished at least this long ago (`30d`, `12h`).
        #[arg(long, value_parser = duration)]
        older_than: Duration,
        /// Count and list them; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Remove at most this many.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
        /// Look at no more than about this many jobs a second (default: as
        /// fast as Redis answers). Progress goes to stderr: a bar on a
        /// terminal, a line every 2 s otherwise.
        #[arg(long)]
        rate: Option<std::num::NonZeroU32>,
    },
    /// Lists pending deliveries of every priority level: consumer, idle time, delivery count.
    Pending {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Puts dead letters back on their level's stream (and their jobs back to queued).
    RequeueDead {
        /// The dead letters' ids.
        ids: Vec<String>,
        /// Every dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Trims every priority level's stream, never removing entries still pending or not yet delivered.
    Trim {
        /// Remove entries older than this many seconds.
        #[arg(long, conflicts_with = "max_len")]
        older_than_secs: Option<u64>,
        /// Keep about this many entries.
        #[arg(long)]
        max_len: Option<u64>,
    },
    /// Lists dead letters of every priority level.
    Dead {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Subcommand)]
pub enum MigrateCommand {
    /// Every migration, oldest first: its name, state (`not_started`,
    /// `in_progress`, `done`), the step a run is at, what it does.
    List,
    /// Runs the migration NAME from its checkpoint (or its start) to its end.
    /// Exits with 5 when stopped before it (run it again to resume), 3 when
    /// a step left problems or the final index check found any.
    Run(MigrateRunArgs),
}

#[derive(Args)]
pub struct MigrateRunArgs {
    /// The migration's name (`repobox migrate list`).
    pub name: String,
    /// Counts what each step would change; changes nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Look at no more than about this many keys a second (default: as fast
    /// as Redis answers). Progress goes to stderr.
    #[arg(long)]
    pub rate: Option<std::num::NonZeroU32>,
    /// Forgets the checkpoint and runs from the first step, even a finished
    /// migration (every step changes only what still needs it).
    #[arg(long)]
    pub restart: bool,
    /// Skips the index check of the changed entities at the end.
    #[arg(long)]
    pub no_verify: bool,
}

#[derive(Args)]
pub struct IndexArgs {
    #[command(subcommand)]
    pub action: Option<IndexCommand>,
    /// Look at no more than about this many keys a second, to leave a busy
    /// Redis room (default: as fast as it answers). Progress goes to stderr:
    /// a bar on a terminal, a line per pass and every 2 s otherwise.
    #[arg(long, global = true)]
    pub rate: Option<std::num::NonZeroU32>,
}

#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
pub enum IndexCommand {
    /// Reports, per index, members whose entity is gone or no longer belongs,
    /// wrong scores, unreadable members and skipped keys; changes nothing.
    Check,
    /// Does what `check` does and repairs: removes what is gone or no longer
    /// belongs, corrects scores. Touches only keys of an index's exact shape.
    Repair,
}
