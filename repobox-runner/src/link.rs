//! The runner's link to Redis as an operator hears of it: one line when it
//! connects, one when it loses Redis (then one every
//! [`STILL_DOWN_EVERY`] while the outage lasts), one when it is back, with
//! how long the outage lasted. It also keeps the runner's [`Health`](crate::Health).

use std::time::Duration;

use tokio::time::Instant;

use crate::RunnerControl;

/// How often an outage that goes on is reported again.
pub(crate) const STILL_DOWN_EVERY: Duration = Duration::from_secs(30);

pub(crate) struct Link {
    control: RunnerControl,
    connected: bool,
    /// When the outage began, and when it was last reported.
    down: Option<(Instant, Instant)>,
}

impl Link {
    pub(crate) fn new(control: RunnerControl) -> Self {
        Link {
            control,
            connected: false,
            down: None,
        }
    }

    /// A call to Redis succeeded; `read`: a read from the stream, which
    /// proves the consumer is in the group.
    pub(crate) fn up(&mut self, read: bool) {
        if let Some((since, _)) = self.down.take() {
            let outage = since.elapsed();
            tracing::info!(
                outage_secs = outage.as_secs_f64(),
                "reconnected to Redis after {:.1} s",
                outage.as_secs_f64()
            );
        } else if !self.connected {
            tracing::info!("connected to Redis");
        }
        self.connected = true;
        self.control.set_link(true, read.then_some(true));
    }

    /// A call to Redis failed. An unreachable Redis is an outage: said once,
    /// then every [`STILL_DOWN_EVERY`]; any other error is said each time.
    pub(crate) fn down(&mut self, e: &repobox_orm::Error) {
        if e.is_missing_group() {
            self.control.set_link(true, Some(false));
            tracing::warn!(error = %e, "the stream or its consumer group is gone; creating it again");
            return;
        }
        if !e.is_unreachable() {
            self.control.set_link(true, None);
            tracing::warn!(error = %e, "a queue call failed; retrying");
            return;
        }
        self.control.set_link(false, Some(false));
        let now = Instant::now();
        match &mut self.down {
            None => {
                tracing::warn!(error = %e, "lost Redis; retrying until it is back");
                self.down = Some((now, now));
            }
            Some((since, said)) if now.duration_since(*said) >= STILL_DOWN_EVERY => {
                let secs = now.duration_since(*since).as_secs();
                tracing::warn!(error = %e, down_secs = secs, "Redis is still unreachable after {secs} s");
                *said = now;
            }
            Some(_) => tracing::debug!(error = %e, "Redis is still unreachable"),
        }
    }
}
