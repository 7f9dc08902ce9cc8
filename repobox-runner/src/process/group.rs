//! A job's process group: the program runs as the leader of a group of its
//! own, so a signal reaches everything it started (unless a process left the
//! group with `setsid`; a systemd unit's `KillMode=control-group` covers
//! those). The group is killed when its guard is dropped, however the run
//! ends.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How often a stopping group is looked at.
const POLL: Duration = Duration::from_millis(25);
/// How long killed processes get to be gone after SIGKILL.
const AFTER_KILL: Duration = Duration::from_secs(2);

/// How a group was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// Nothing was left to stop.
    Empty,
    /// SIGTERM was enough.
    Terminated,
    /// It outlived the grace and was killed.
    Killed,
}

pub(crate) struct ProcessGroup {
    pgid: Pid,
    armed: bool,
}

impl ProcessGroup {
    /// The group led by `pid` (a child spawned with `process_group(0)`).
    pub(crate) fn led_by(pid: u32) -> Option<Self> {
        let pid = i32::try_from(pid).ok().filter(|p| *p > 0)?;
        Some(ProcessGroup {
            pgid: Pid::from_raw(pid),
            armed: true,
        })
    }

    /// Sends `signal` to every process of the group; `false` if none is left.
    pub(crate) fn signal(&self, signal: Signal) -> bool {
        !matches!(killpg(self.pgid, signal), Err(Errno::ESRCH))
    }

    /// Whether any process of the group is left running. A zombie does not
    /// count: an orphan that died waits for init to reap it, which may take
    /// a while, and runs nothing meanwhile.
    pub(crate) fn is_alive(&self) -> bool {
        if matches!(killpg(self.pgid, None), Err(Errno::ESRCH)) {
            return false;
        }
        live_member(self.pgid.as_raw()).unwrap_or(true)
    }

    /// SIGTERM to the group; SIGKILL to what is left after `grace`. `leader`
    /// is reaped on the way (a zombie leader would keep the group alive).
    pub(crate) async fn stop(&mut self, leader: &mut tokio::process::Child, grace: Duration) -> Stopped {
        if !self.signal(Signal::SIGTERM) {
            self.armed = false;
            return Stopped::Empty;
        }
        if self.gone_within(leader, grace).await {
            return Stopped::Terminated;
        }
        self.signal(Signal::SIGKILL);
        self.gone_within(leader, AFTER_KILL).await;
        Stopped::Killed
    }

    /// Waits up to `wait` for the group to be empty.
    async fn gone_within(&mut self, leader: &mut tokio::process::Child, wait: Duration) -> bool {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let _ = leader.try_wait();
            if !self.is_alive() {
                self.armed = false;
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.armed {
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}

/// Whether `/proc` shows a process of group `pgid` that is not a zombie;
/// `None` where there is no `/proc` to read.
fn live_member(pgid: i32) -> Option<bool> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
        if pgrp == Some(pgid) && state != Some("Z") && state != Some("X") {
            return Some(true);
        }
    }
    Some(false)
}

/// A signal's name, for a failure reason: `SIGKILL`, or its number.
pub(crate) fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned())
}
