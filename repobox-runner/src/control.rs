//! [`RunnerControl`]: how a supervisor drains or stops a runner, and what it
//! can ask of the runner's health.

use std::sync::Arc;

use tokio::sync::watch;

/// Where a runner is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Taking and running jobs.
    Running,
    /// Taking no new deliveries; running jobs may finish, up to the drain time.
    Draining,
    /// Stopping the jobs still running: each is asked to stop (a process gets
    /// SIGTERM, then SIGKILL after its grace) and goes back to `queued`.
    Stopping,
}

/// What a runner knows of itself, for `/healthz` and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Its last call to Redis succeeded.
    pub redis: bool,
    /// Its last read from the stream succeeded: its consumer is in the group.
    pub consumer: bool,
    /// Where it is.
    pub phase: Phase,
}

impl Health {
    /// It can reach Redis and holds its consumer.
    pub fn is_healthy(&self) -> bool {
        self.redis && self.consumer
    }

    /// It is healthy and takes new jobs (not draining or stopping).
    pub fn is_ready(&self) -> bool {
        self.is_healthy() && self.phase == Phase::Running
    }
}

/// A handle on a running [`Runner`](crate::Runner): drain it, stop it, read
/// its health. Cheap to clone; give one to [`Runner::run_with`](crate::Runner::run_with).
#[derive(Clone)]
pub struct RunnerControl {
    state: Arc<watch::Sender<Health>>,
}

impl Default for RunnerControl {
    fn default() -> Self {
        Self::new()
    }
}

impl RunnerControl {
    /// A control for a runner that has not reached Redis yet.
    pub fn new() -> Self {
        let (state, _) = watch::channel(Health {
            redis: false,
            consumer: false,
            phase: Phase::Running,
        });
        RunnerControl { state: Arc::new(state) }
    }

    /// Stops taking new deliveries; running jobs get the runner's drain time
    /// ([`RunnerConfig::shutdown_grace`](crate::RunnerConfig::shutdown_grace))
    /// to finish, then are stopped as by [`stop`](Self::stop).
    pub fn drain(&self) {
        self.state.send_if_modified(|h| {
            let drain = h.phase == Phase::Running;
            if drain {
                h.phase = Phase::Draining;
            }
            drain
        });
    }

    /// Stops at once: no new deliveries, and every running job is asked to
    /// stop and goes back to `queued`, its delivery left pending.
    pub fn stop(&self) {
        self.state.send_if_modified(|h| {
            let stop = h.phase != Phase::Stopping;
            h.phase = Phase::Stopping;
            stop
        });
    }

    /// The runner's health now.
    pub fn health(&self) -> Health {
        *self.state.borrow()
    }

    /// Where the runner is.
    pub fn phase(&self) -> Phase {
        self.state.borrow().phase
    }

    /// Resolves once the phase is `phase` or later.
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.state.subscribe();
        // The sender lives in `self`: the wait cannot fail.
        let _ = rx.wait_for(|h| h.phase >= phase).await;
    }

    pub(crate) fn set_link(&self, redis: bool, consumer: Option<bool>) {
        self.state.send_if_modified(|h| {
            let before = *h;
            h.redis = redis;
            if let Some(consumer) = consumer {
                h.consumer = consumer;
            }
            *h != before
        });
    }
}
