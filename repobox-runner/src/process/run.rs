//! One job's run: its working directory, its environment, the process, its
//! output and how it ended.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use repobox_models::Job;
use tokio::io::BufReader;
use tokio::sync::mpsc;

use super::env::{EnvRules, environment};
use super::group::{ProcessGroup, Stopped, signal_name};
use super::{ProcessHandler, Program, TAIL, lines};
use crate::{Failure, HandlerResult, JobHandler, Output, StopReason};

impl ProcessHandler {
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
    /// It exited; `true` if it left processes running, which were stopped.
    Exited(ExitStatus, bool),
    TimedOut(Stopped),
    Stopped(StopReason, Stopped),
    Lost(std::io::Error),
}

impl JobHandler for ProcessHandler {
    async fn run(&self, job: Job, output: Output) -> HandlerResult {
        let dir = tempfile::Builder::new()
            .prefix("repobox-job-")
            .permissions(std::fs::Permissions::from_mode(0o700))
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
            allow: &self.allow_env,
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
        // makes async-signal-safe system calls (close_range, prctl, getppid),
        // allocating nothing.
        unsafe {
            let runner = nix::unistd::getpid();
            cmd.pre_exec(move || {
                // Descriptors the runner inherited (its own are close-on-exec)
                // do not reach the job: every one above stderr closes at exec.
                let marked = nix::libc::syscall(
                    nix::libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    nix::libc::CLOSE_RANGE_CLOEXEC,
                );
                if marked != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                // The runner died before the line above: nothing would kill us.
                if nix::unistd::getppid() != runner {
                    return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
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
        let (ending, ()) = tokio::join!(watch, lines::write(output, queued));
        let grace = self.kill_grace.as_secs_f64();
        let (note, result) = match ending {
            Ending::Exited(status, left) => {
                let note = left.then(|| "stopped the processes the program left running".to_owned());
                match (status.code(), status.signal()) {
                    (Some(code), _) => (note, Ok(code)),
                    (None, Some(signal)) => (note, Err(Failure::fatal(format!("killed by {}", signal_name(signal))))),
                    (None, None) => (note, Err(Failure::fatal("the program ended without an exit code"))),
                }
            }
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
        // After every line of the program's: the writer is done.
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
                let left = group.stop(child, self.kill_grace).await != Stopped::Empty;
                Ending::Exited(status, left)
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
