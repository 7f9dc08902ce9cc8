//! [`ProcessHandler`]: runs a real program per job.
//!
//! - `env`: the process's environment, and which names a job may set;
//! - `lines`: its output, from the pipe to `job:<id>:output`;
//! - `group`: its process group, stopped with SIGTERM then SIGKILL;
//! - `run`: one job's run, from the working directory to the outcome.

mod env;
mod group;
mod lines;
mod run;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::Duration;

pub use self::env::{ALWAYS_DENIED, ALWAYS_DENIED_PREFIXES, EnvRefused};
use self::lines::Caps;

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
    allow_env: Vec<String>,
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
            allow_env: Vec::new(),
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

    /// Where the program is, or why jobs cannot run: the program is not
    /// found, not a file or not executable, or no working directory can be
    /// made under [`workdir`](Self::workdir). What a runner checks before it
    /// takes jobs, so that a typo is one error at start, not a failure per job.
    pub fn check(&self) -> std::io::Result<PathBuf> {
        tempfile::Builder::new()
            .prefix("repobox-check-")
            .tempdir_in(&self.workdir)
            .and_then(tempfile::TempDir::close)
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot make working directories under {}: {e}", self.workdir.display()),
                )
            })?;
        self.find_program()
    }

    fn find_program(&self) -> std::io::Result<PathBuf> {
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

    /// The only names a job may set (besides those always refused, which
    /// it may never set); `NAME_*` allows a prefix. Empty (the default):
    /// any name that is not refused.
    pub fn allow_env<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allow_env.extend(names.into_iter().map(Into::into));
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
}
