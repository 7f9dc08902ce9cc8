//! The command line: what `repobox` accepts.

use clap::{Args, Parser, Subcommand};

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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The whole flow: a user logs in, enqueues jobs, a runner runs them. On a
    /// throw-away redis-server of its own unless a Redis is given; on a given
    /// one it works in a namespace of its own and touches nothing else.
    Demo(DemoArgs),
    /// Runs jobs from `jobs:stream` until Ctrl-C or SIGTERM.
    Runner(RunnerArgs),
    /// Reads jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Inspects the job queue.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Checks (the default) or repairs every index of every model.
    Index(IndexArgs),
    /// Prints the wire schema (models, fields, indexes, streams) as JSON.
    Schema,
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

#[derive(Args)]
pub struct RunnerArgs {
    /// This runner's consumer name (default: runner-HOSTNAME-PID).
    #[arg(long)]
    pub consumer: Option<String>,
    /// Jobs run at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Seconds a delivery must be idle before another runner takes it over.
    #[arg(long, default_value_t = repobox_orm::queue::defaults::MIN_IDLE.as_secs())]
    pub min_idle_secs: u64,
    /// Seconds a run's lease on its job lasts without a renewal (default: the
    /// min idle). Another delivery of a running job takes it over only once
    /// its lease has passed.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub lease_secs: Option<u64>,
    /// Deliveries before a job is dead-lettered.
    #[arg(long, default_value_t = repobox_orm::queue::defaults::MAX_DELIVERIES)]
    pub max_deliveries: u64,
    /// Seconds acknowledged entries stay on the stream before the runner trims them.
    #[arg(long, default_value_t = 7 * 24 * 3600)]
    pub retention_secs: u64,
    /// Seconds a consumer with nothing pending may stay idle before it is removed.
    #[arg(long, default_value_t = 24 * 3600)]
    pub consumer_idle_secs: u64,
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// A user's jobs, newest first.
    List {
        /// The user's id.
        #[arg(long)]
        user: String,
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
    /// Cancels a job: a queued one at once, a running one through its runner.
    Cancel {
        /// The job's id.
        id: String,
    },
}

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Length, pending deliveries, consumers and dead letters.
    Stats,
    /// Lists pending deliveries: consumer, idle time, delivery count.
    Pending {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Puts dead letters back on the stream (and their jobs back to queued).
    RequeueDead {
        /// The dead letters' ids.
        ids: Vec<String>,
        /// Every dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Trims the stream, never removing entries still pending or not yet delivered.
    Trim {
        /// Remove entries older than this many seconds.
        #[arg(long, conflicts_with = "max_len")]
        older_than_secs: Option<u64>,
        /// Keep about this many entries.
        #[arg(long)]
        max_len: Option<u64>,
    },
    /// Lists dead letters.
    Dead {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Args)]
pub struct IndexArgs {
    #[command(subcommand)]
    pub action: Option<IndexCommand>,
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
