//! [`ProcessHandler`]: runs a real program per job.
//!
//! - `env`: the process's environment, and which names a job may set;
//! - `lines`: its output, from the pipe to `job:<id>:output`;
//! - `group`: its process group, stopped with SIGTERM then SIGKILL.

mod env;
mod group;
mod lines;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use repobox_models::Job;
use tokio::io::BufReader;
use tokio::sync::mpsc;

pub use self::env::{ALWAYS_DENIED, ALWAYS_DENIED_PREFIXES, EnvRefused};
use self::env::{EnvRules, environment};
use self::group::{ProcessGroup, Stopped, signal_name};
use self::lines::Caps;
use crate::{Failure, HandlerResult, JobHandler, Output, StopReason};

/// How long the output is read after the job's process group is gone: a
/// process that left the group may still hold the pipe open.
const TAIL: Duration = Duration::from_secs(2);

/// What runs: a program with arguments, or a shell command line.
#[derive(Debug, Clone)]
enum Program {
    Exec { program: OsString, args: Vec<OsString> },
    Shell(String),
}

/// Runs one process per job, never through a shell unless made with
/// [`shell`](Self::shell):
///
/// - in a fresh working directory under [`workdir`](Self::workdir) (the
///   system's temp dir), removed afterwards unless [`keep_workdir`](Self::keep_workdir);
/// - with the job's fields as `REPOBOX_JOB_ID`, `REPOBOX_USER_ID`,
///   `REPOBOX_REPO_URL`, `REPOBOX_CREATED_AT`, `REPOBOX_RETRIES`,
///   `REPOBOX_RUN_ID` and `REPOBOX_WORKDIR`, plus the job's own `env` pairs
///   when their names are allowed (see [`EnvRefused`]); over a minimal base
///   environment (`PATH`, `HOME` and `TMPDIR` the working directory, `LANG`)
///   or, with [`inherit_env`](Self::inherit_env), the runner's own without
///   its `REDIS_*` and `REPOBOX_*`;
/// - stdin closed; stdout and stderr into one pipe, in the order the
///   program wrote them, each line capped at [`max_line_bytes`](Self::max_line_bytes),
///   the whole at [`max_output_lines`](Self::max_output_lines);
/// - exit code 0: succeeded; another: failed with it; killed by a signal:
///   failed, the signal in the reason;
/// - past its [`timeout`](Self::timeout), or when its job is cancelled or
///   the runner stops it: SIGTERM to its whole process group, SIGKILL after
///   [`kill_grace`](Self::kill_grace). A timeout fails the job with reason
///   `timeout`. Processes the program leaves behind are stopped the same way
///   when it exits.
///
/// The program and its arguments are the operator's: job data reaches the
/// process only as environment variables, never on its command line.
#[derive(Debug, Clone)]
pub struct ProcessHandler {
    program: Program,
    workdir: PathBuf,
    keep_workdir: bool,
    inherit_env: bool,
    deny_env: Vec<String>,
    caps: Caps,
    timeout: Option<Duration>,
    kill_grace: Duration,
}

impl ProcessHandler {
    fn new(program: Program) -> Self {
        ProcessHandler {
            program,
            workdir: std::env::temp_dir(),
            keep_workdir: false,
            inherit_env: false,
            deny_env: Vec::new(),
            caps: Caps {
                line_bytes: 8 * 1024,
                lines: 100_000,
            },
            timeout: None,
            kill_grace: Duration::from_secs(10),
        }
    }

    /// Runs `program` with `args`, without a shell. A `program` with a `/`
    /// in it is a path (a relative one is taken from the current directory
    /// now, not from each job's working directory); a bare name is looked
    /// up on the `PATH` the jobs get.
    pub fn exec<I, S>(program: impl Into<OsString>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let program: OsString = program.into();
        let program = if program.as_bytes().contains(&b'/') {
            std::path::absolute(&program).map_or(program, PathBuf::into_os_string)
        } else {
            program
        };
        Self::new(Program::Exec {
            program,
            args: args.into_iter().map(Into::into).collect(),
        })
    }

    /// Where the program is, or why it cannot be started (not found, not a
    /// file, not executable): what a runner checks before it takes jobs, so
    /// that a typo is one error at start, not a failure per job.
    pub fn check_program(&self) -> std::io::Result<PathBuf> {
        let program = match &self.program {
            Program::Exec { program, .. } => program.as_os_str(),
            Program::Shell(_) => std::ffi::OsStr::new("/bin/sh"),
        };
        let candidates: Vec<PathBuf> = if program.as_bytes().contains(&b'/') {
            vec![PathBuf::from(program)]
        } else {
            let path = match self.inherit_env {
                true => std::env::var_os("PATH").unwrap_or_default(),
                false => env::MINIMAL_PATH.into(),
            };
            std::env::split_paths(&path).map(|dir| dir.join(program)).collect()
        };
        let mut why = format!("{} is not on the PATH jobs get", program.to_string_lossy());
        for candidate in candidates {
            match std::fs::metadata(&candidate) {
                Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => return Ok(candidate),
                Ok(_) => why = format!("{} is not an executable file", candidate.display()),
                Err(e) if candidate.is_absolute() && program.as_bytes().contains(&b'/') => {
                    why = format!("{}: {e}", candidate.display())
                }
                Err(_) => {}
            }
        }
        Err(std::io::Error::new(std::io::ErrorKind::NotFound, why))
    }

    /// Runs `sh -c command`. Job fields reach it only as environment
    /// variables: write `"$REPOBOX_REPO_URL"`, quoted, never paste them in.
    pub fn shell(command: impl Into<String>) -> Self {
        Self::new(Program::Shell(command.into()))
    }

    /// Where the jobs' working directories are made (default: the system's
    /// temp dir).
    pub fn workdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.workdir = dir.into();
        self
    }

    /// Keeps each job's working directory after the job, instead of removing it.
    pub fn keep_workdir(mut self, keep: bool) -> Self {
        self.keep_workdir = keep;
        self
    }

    /// Passes the runner's own environment (without its `REDIS_*` and
    /// `REPOBOX_*` variables) instead of a minimal one.
    pub fn inherit_env(mut self, inherit: bool) -> Self {
        self.inherit_env = inherit;
        self
    }

    /// Names a job may not set, besides those always refused; `NAME_*`
    /// refuses a prefix.
    pub fn deny_env<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.deny_env.extend(names.into_iter().map(Into::into));
        self
    }

    /// Bytes kept of one output line (default 8 KiB, at least 1); the rest is
    /// dropped and the line marked.
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.caps.line_bytes = bytes.max(1);
        self
    }

    /// Output lines kept per job (default 100,000); a last line says how
    /// many more were dropped.
    pub fn max_output_lines(mut self, lines: u64) -> Self {
        self.caps.lines = lines;
        self
    }

    /// How long a job may run before it is stopped and fails with reason
    /// `timeout` (default: no limit).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long a job's processes get between SIGTERM and SIGKILL (default 10 s).
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    fn command(&self) -> tokio::process::Command {
        match &self.program {
            Program::Exec { program, args } => {
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args);
                cmd
            }
            Program::Shell(line) => {
                let mut cmd = tokio::process::Command::new("/bin/sh");
                cmd.arg("-c").arg(line);
                cmd
            }
        }
    }

    fn program_name(&self) -> String {
        match &self.program {
            Program::Exec { program, .. } => program.to_string_lossy().into_owned(),
            Program::Shell(_) => "/bin/sh".to_owned(),
        }
    }
}

/// How a job's process ended.
enum Ending {
    Exited(ExitStatus),
    TimedOut(Stopped),
    Stopped(StopReason, Stopped),
    Lost(std::io::Error),
}

impl JobHandler for ProcessHandler {
    async fn run(&self, job: Job, output: Output) -> HandlerResult {
        let dir = tempfile::Builder::new()
            .prefix("repobox-job-")
            .tempdir_in(&self.workdir)
            .map_err(|e| {
                Failure::retry(format!(
                    "cannot make a working directory under {}: {e}",
                    self.workdir.display()
                ))
            })?;
        let rules = EnvRules {
            inherit: self.inherit_env,
            deny: &self.deny_env,
        };
        let result = match environment(&job, dir.path(), &rules) {
            Ok(env) => self.run_in(&output, dir.path(), env).await,
            Err(refused) => {
                let reason = refused.to_string();
                let _ = output.line(format!("[repobox: not started: {reason}]")).await;
                Err(Failure::fatal(reason))
            }
        };
        if self.keep_workdir {
            let kept = dir.keep();
            tracing::info!(job = %job.id, workdir = %kept.display(), "kept the job's working directory");
        } else if let Err(e) = dir.close() {
            tracing::warn!(job = %job.id, error = %e, "could not remove the job's working directory");
        }
        result
    }

    fn stop_grace(&self) -> Duration {
        // SIGTERM, the grace, SIGKILL, and a moment for the output's tail.
        self.kill_grace + TAIL + Duration::from_secs(3)
    }
}

impl ProcessHandler {
    async fn run_in(&self, output: &Output, dir: &std::path::Path, env: Vec<(OsString, OsString)>) -> HandlerResult {
        let io = |what: &str, e: std::io::Error| Failure::retry(format!("{what}: {e}"));
        let (sender, receiver) = tokio::net::unix::pipe::pipe().map_err(|e| io("cannot make a pipe", e))?;
        let stdout = sender.into_blocking_fd().map_err(|e| io("cannot make a pipe", e))?;
        let stderr = stdout.try_clone().map_err(|e| io("cannot make a pipe", e))?;
        let mut cmd = self.command();
        cmd.current_dir(dir)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .kill_on_drop(true);
        // A runner killed with SIGKILL cannot stop its jobs: the kernel
        // kills the program when the runner dies.
        #[cfg(target_os = "linux")]
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls (prctl, getppid), allocating
        // nothing.
        unsafe {
            let runner = nix::unistd::getpid();
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                // The runner died before the line above: nothing would kill us.
                if nix::unistd::getppid() != runner {
                    return Err(std::io::Error::other("the runner is gone"));
                }
                Ok(())
            });
        }
        let spawned = cmd.spawn();
        // The parent's copies of the pipe's write end: the output ends when
        // the job's processes have closed theirs.
        drop(cmd);
        let mut child = spawned.map_err(|e| io(&format!("cannot start {}", self.program_name()), e))?;
        let mut group = child
            .id()
            .and_then(ProcessGroup::led_by)
            .ok_or_else(|| Failure::retry("the program ended before it could be watched"))?;

        let (lines, queued) = mpsc::channel(lines::QUEUED_LINES);
        let reader = BufReader::with_capacity(64 * 1024, receiver);
        let mut pump = crate::work::AbortOnDrop(tokio::spawn(lines::pump(reader, self.caps, lines)));
        let watch = async {
            let ending = self.watch(&mut child, &mut group, output).await;
            if tokio::time::timeout(TAIL, &mut pump.0).await.is_err() {
                pump.0.abort();
                tracing::warn!(job = %output.job_id(), "a process outside the job's group holds its output open; stopped reading it");
            }
            ending
        };
        let (ending, _) = tokio::join!(watch, lines::write(output, queued));
        let grace = self.kill_grace.as_secs_f64();
        let (note, result) = match ending {
            Ending::Exited(status) => match (status.code(), status.signal()) {
                (Some(code), _) => (None, Ok(code)),
                (None, Some(signal)) => {
                    let reason = format!("killed by {}", signal_name(signal));
                    (None, Err(Failure::fatal(reason)))
                }
                (None, None) => (None, Err(Failure::fatal("the program ended without an exit code"))),
            },
            Ending::TimedOut(stopped) => {
                let secs = self.timeout.unwrap_or_default().as_secs_f64();
                (
                    Some(format!("timed out after {secs} s; {}", said(stopped, grace))),
                    Err(Failure::fatal("timeout")),
                )
            }
            Ending::Stopped(StopReason::Cancelled, stopped) => (
                Some(format!("cancelled; {}", said(stopped, grace))),
                Err(Failure::fatal("cancelled")),
            ),
            Ending::Stopped(StopReason::Shutdown, stopped) => (
                Some(format!("the runner is shutting down; {}", said(stopped, grace))),
                Err(Failure::retry("stopped: the runner shut down")),
            ),
            Ending::Lost(e) => (None, Err(Failure::retry(format!("lost the program: {e}")))),
        };
        if let Some(note) = note {
            let _ = output.line(format!("[repobox: {note}]")).await;
        }
        result
    }

    /// Waits for the program to exit, its timeout or a stop request; then
    /// stops whatever is left of its process group.
    async fn watch(&self, child: &mut tokio::process::Child, group: &mut ProcessGroup, output: &Output) -> Ending {
        enum Woke {
            Exited(std::io::Result<ExitStatus>),
            TimedOut,
            Stop(StopReason),
        }
        let timeout = async {
            match self.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let woke = tokio::select! {
            status = child.wait() => Woke::Exited(status),
            _ = timeout => Woke::TimedOut,
            reason = output.cancelled() => Woke::Stop(reason),
        };
        match woke {
            Woke::Exited(Ok(status)) => {
                if group.stop(child, self.kill_grace).await != Stopped::Empty {
                    let _ = output
                        .line("[repobox: stopped the processes the program left running]")
                        .await;
                }
                Ending::Exited(status)
            }
            Woke::Exited(Err(e)) => {
                group.stop(child, self.kill_grace).await;
                Ending::Lost(e)
            }
            Woke::TimedOut => Ending::TimedOut(group.stop(child, self.kill_grace).await),
            Woke::Stop(reason) => Ending::Stopped(reason, group.stop(child, self.kill_grace).await),
        }
    }
}

/// What stopping a group took, for the job's output.
fn said(stopped: Stopped, grace: f64) -> String {
    match stopped {
        Stopped::Empty => "nothing was left running".to_owned(),
        Stopped::Terminated => "its processes ended on SIGTERM".to_owned(),
        Stopped::Killed => format!("its processes got SIGKILL after the {grace} s grace"),
    }
}

use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
