//! `repobox runner`'s arguments.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args};

use super::{duration, positive_duration};

#[derive(Args)]
#[command(group(ArgGroup::new("mode").required(true).args(["exec", "shell", "demo"])))]
pub struct RunnerArgs {
    /// Runs PROGRAM [ARGS...] for each job, without a shell. Arguments that
    /// start with `-` go after `--`: `--exec make -- -j4 test`.
    #[arg(long, num_args = 1.., value_name = "PROGRAM")]
    pub exec: Vec<String>,
    /// Arguments for `--exec` that start with `-`.
    #[arg(last = true, requires = "exec", value_name = "ARGS")]
    pub exec_args: Vec<String>,
    /// Runs `sh -c COMMAND` for each job. Job fields reach it only as
    /// environment variables (`"$REPOBOX_REPO_URL"`), never in the line.
    #[arg(long, value_name = "COMMAND")]
    pub shell: Option<String>,
    /// Runs the built-in demo handler, which only pretends: it writes made-up
    /// build lines and fails repositories whose URL contains `fail`.
    #[arg(long)]
    pub demo: bool,
    /// Where each job's working directory is made (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Keep each job's working directory instead of removing it.
    #[arg(long)]
    pub keep_workdir: bool,
    /// Pass the runner's environment to jobs (without `REDIS_*` and
    /// `REPOBOX_*`) instead of a minimal one.
    #[arg(long)]
    pub inherit_env: bool,
    /// Environment names a job may not set, besides the ones always refused
    /// (`PATH`, `HOME`, `LD_*`, `DYLD_*`, `REPOBOX_*`, ...); `NAME_*` refuses
    /// a prefix. Repeat, or separate with commas.
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub deny_env: Vec<String>,
    /// The only environment names a job may set (`NAME_*`: a prefix); the
    /// ones always refused stay refused. Default: any name not refused.
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub allow_env: Vec<String>,
    /// Bytes kept of one output line; longer lines are cut and marked.
    #[arg(long, default_value_t = 8 * 1024, value_parser = clap::value_parser!(u64).range(1..=16 * 1024 * 1024))]
    pub max_line_bytes: u64,
    /// Output lines kept per job; a last line says how many more were dropped.
    #[arg(long, default_value_t = 100_000)]
    pub max_output_lines: u64,
    /// How long a job may run (`90`, `90s`, `15m`, `2h`); then its process
    /// group gets SIGTERM, SIGKILL after `--kill-grace`, and it fails with
    /// reason `timeout`. Default: no limit.
    #[arg(long, value_parser = positive_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when a job is stopped.
    #[arg(long, value_parser = duration, default_value = "10s", value_name = "DURATION")]
    pub kill_grace: Duration,
    /// Seconds running jobs get to finish after SIGTERM or Ctrl-C; the rest
    /// are then stopped and go back to the queue. A second signal stops them at once.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub drain_secs: u64,
    /// Serve `GET /healthz` and `GET /readyz` on this address (`127.0.0.1:9090`).
    #[arg(long, value_name = "HOST:PORT")]
    pub health_addr: Option<SocketAddr>,
    /// Serve `GET /metrics` (Prometheus' text format: this runner's jobs,
    /// the library's operations, the queue's gauges) on this address
    /// (`127.0.0.1:9091`). See "Metrics" in docs/GUIDE.md.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<SocketAddr>,
    /// This runner's consumer name (default: runner-HOSTNAME-PID).
    #[arg(long)]
    pub consumer: Option<String>,
    /// Jobs run at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub concurrency: u64,
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
    /// Runs a job gets in all when its runs fail retryably (an error, a
    /// timeout, an exit code of `--retry-exit-code`); 1 never retries. A job's
    /// own `retry` policy wins.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_attempts: u32,
    /// How the wait between attempts grows: `exponential` (doubling, with
    /// jitter) or `fixed`.
    #[arg(long, value_enum, default_value_t = BackoffArg::Exponential)]
    pub backoff: BackoffArg,
    /// The first wait before a retry (`1s`, `500ms`, `2m`).
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub backoff_base: Duration,
    /// The longest wait before a retry.
    #[arg(long, default_value = "5m", value_parser = duration)]
    pub backoff_max: Duration,
    /// A non-zero exit code that is retried instead of final. Repeat, or
    /// separate with commas.
    #[arg(long, value_delimiter = ',')]
    pub retry_exit_code: Vec<i32>,
    /// Remove succeeded and cancelled jobs (hash, output, index entries)
    /// this long after they finished (`7d`, `12h`). Default: kept.
    #[arg(long, value_parser = positive_duration)]
    pub keep_finished: Option<Duration>,
    /// Remove failed jobs this long after they failed. Default: kept.
    #[arg(long, value_parser = positive_duration)]
    pub keep_failed: Option<Duration>,
    /// At most N job starts per interval across every runner of the queue,
    /// by Redis's clock (`100/1m`, `5/1s`, `10/500ms`); give every runner
    /// the same. Default: no limit.
    #[arg(long, value_parser = clap::value_parser!(repobox_orm::queue::RateLimit))]
    pub rate_limit: Option<repobox_orm::queue::RateLimit>,
    /// At most N jobs of one user run at once, across every runner of the
    /// queue (give every runner the same); a user's jobs over it wait
    /// without holding up other users' jobs. Default: no limit.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_running_per_user: Option<u32>,
    /// Stop (draining, exit 0) once nothing is left to do now: nothing
    /// waiting or in flight, no job retrying or parked, no delayed job due.
    #[arg(long)]
    pub until_empty: bool,
}

/// How the wait between attempts grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackoffArg {
    /// Doubling from the base up to the maximum, with jitter.
    Exponential,
    /// The base each time.
    Fixed,
}
