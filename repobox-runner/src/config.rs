//! How a runner works, and what it did.

use std::time::Duration;

use repobox_models::RetryPolicy;
use repobox_orm::queue::{RateLimit, defaults};

/// How a [`Runner`](crate::Runner) works.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub(crate) consumer: String,
    pub(crate) stream: String,
    pub(crate) group: String,
    pub(crate) concurrency: usize,
    pub(crate) block: Duration,
    pub(crate) claim_interval: Duration,
    pub(crate) min_idle: Duration,
    pub(crate) lease: Option<Duration>,
    pub(crate) max_deliveries: u64,
    pub(crate) shutdown_grace: Duration,
    pub(crate) retention: Duration,
    pub(crate) consumer_idle: Duration,
    pub(crate) housekeeping: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) promote_interval: Duration,
    pub(crate) keep_finished: Option<Duration>,
    pub(crate) keep_failed: Option<Duration>,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) max_running_per_user: Option<u32>,
    pub(crate) fair_every: u64,
}

impl RunnerConfig {
    /// A runner named `consumer` in the `runners` group: 4 jobs at a time,
    /// stalled jobs (idle [`defaults::MIN_IDLE`]) claimed every 5 s,
    /// [`defaults::MAX_DELIVERIES`] deliveries at most, 10 s for running jobs
    /// to finish at shutdown.
    pub fn new(consumer: impl Into<String>) -> Self {
        RunnerConfig {
            consumer: consumer.into(),
            stream: repobox_models::JOBS_STREAM.to_owned(),
            group: repobox_models::JOBS_GROUP.to_owned(),
            concurrency: 4,
            block: Duration::from_secs(1),
            claim_interval: Duration::from_secs(5),
            min_idle: defaults::MIN_IDLE,
            lease: None,
            max_deliveries: defaults::MAX_DELIVERIES,
            shutdown_grace: Duration::from_secs(10),
            retention: Duration::from_secs(7 * 24 * 3600),
            consumer_idle: Duration::from_secs(24 * 3600),
            housekeeping: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            promote_interval: Duration::from_secs(1),
            keep_finished: None,
            keep_failed: None,
            rate_limit: None,
            max_running_per_user: None,
            fair_every: 10,
        }
    }

    /// The stream and consumer group to take jobs from (default `jobs:stream`,
    /// group `runners`); a demo or a test runs in a namespace of its own.
    pub fn queue(mut self, stream: impl Into<String>, group: impl Into<String>) -> Self {
        self.stream = stream.into();
        self.group = group.into();
        self
    }

    /// How many jobs run at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// How long one read waits for new jobs.
    pub fn block(mut self, d: Duration) -> Self {
        self.block = d;
        self
    }

    /// How often to take over jobs of runners that died.
    pub fn claim_interval(mut self, d: Duration) -> Self {
        self.claim_interval = d;
        self
    }

    /// How long a delivery must be idle before another runner takes it over.
    /// A running job's delivery is kept fresh, however long the job takes.
    pub fn min_idle(mut self, d: Duration) -> Self {
        self.min_idle = d;
        self
    }

    /// How long a run's lease on its job lasts without a renewal (default:
    /// the [`min_idle`](Self::min_idle)); the runner renews it three times
    /// per period while the job runs. Another delivery of the job takes it
    /// over only once the lease has passed; a run that cannot renew it in
    /// time stops its handler. At most a day.
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = Some(d.clamp(Duration::from_millis(1), Duration::from_secs(24 * 3600)));
        self
    }

    /// The lease a run takes on its job.
    pub fn lease_duration(&self) -> Duration {
        self.lease.unwrap_or(self.min_idle)
    }

    /// Deliveries before a job is dead-lettered.
    pub fn max_deliveries(mut self, n: u64) -> Self {
        self.max_deliveries = n.max(1);
        self
    }

    /// How long running jobs get to finish once the runner drains (10 s);
    /// those still running then are asked to stop and go back to `queued`
    /// (see [`Runner::run_with`](crate::Runner::run_with)).
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.shutdown_grace = d;
        self
    }

    /// How long acknowledged entries stay on the stream (7 days): the runner
    /// trims older ones on its housekeeping schedule, never one that is
    /// pending or not yet delivered.
    pub fn retention(mut self, d: Duration) -> Self {
        self.retention = d;
        self
    }

    /// How long a consumer with nothing pending may stay idle before the
    /// runner's housekeeping removes it from the group (1 day).
    pub fn consumer_idle(mut self, d: Duration) -> Self {
        self.consumer_idle = d;
        self
    }

    /// How often the runner trims the stream and removes idle consumers (60 s).
    pub fn housekeeping_interval(mut self, d: Duration) -> Self {
        self.housekeeping = d;
        self
    }

    /// How failed runs of jobs without a policy of their own are retried
    /// (default [`RetryPolicy::default`]: 5 attempts, exponential backoff
    /// from 1 s to 5 minutes). A job's own `retry` wins.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How often the runner looks for delayed and retrying jobs that are due
    /// (1 s): a due job waits at most this long to be queued.
    pub fn promote_interval(mut self, d: Duration) -> Self {
        self.promote_interval = d.max(Duration::from_millis(10));
        self
    }

    /// How long succeeded and cancelled jobs are kept after they finished;
    /// the runner's housekeeping then removes each with its output and index
    /// entries. `None` (the default): kept.
    pub fn keep_finished(mut self, d: Option<Duration>) -> Self {
        self.keep_finished = d;
        self
    }

    /// How long failed jobs are kept after they failed (see
    /// [`keep_finished`](Self::keep_finished)). `None` (the default): kept.
    pub fn keep_failed(mut self, d: Option<Duration>) -> Self {
        self.keep_failed = d;
        self
    }

    /// At most `limit.max` starts per `limit.per` across every runner of the
    /// queue, by Redis's clock (`<stream>:rate`); give every runner the same.
    /// Deliveries of jobs whose runner died (taken over) are not counted.
    /// `None` (the default): no limit.
    pub fn rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.rate_limit = limit;
        self
    }

    /// At most `n` jobs of one user run at once, across every runner of the
    /// queue (give every runner the same). A job whose user has every slot
    /// taken is parked (its delivery acknowledged, its status `queued`) and
    /// put back on the stream when one of the user's runs ends, so it never
    /// holds up other users' jobs. Slots are leases: a runner that dies
    /// gives its slots back when their leases pass, and the runners' sweep
    /// then puts parked jobs back. `None` (the default): no limit.
    pub fn max_running_per_user(mut self, n: Option<u32>) -> Self {
        self.max_running_per_user = n.map(|n| n.max(1));
        self
    }

    /// Every `n`th read (10) takes the low priority level first instead of
    /// the high one: a waiting job of a lower level is taken within `n`
    /// reads of this runner however busy the higher levels are (at least 2).
    pub fn fair_every(mut self, n: u64) -> Self {
        self.fair_every = n.max(2);
        self
    }

    /// The consumer name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }
}

/// What a runner did before it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Jobs that ended succeeded.
    pub succeeded: u64,
    /// Jobs that ended failed (non-zero exit, or dead-lettered).
    pub failed: u64,
    /// Failed runs to be run again: attempts waiting for their backoff
    /// (`retrying`), and deliveries left pending for another delivery.
    pub retried: u64,
    /// Deliveries moved to the dead-letter stream.
    pub dead_lettered: u64,
    /// Deliveries acknowledged without a run (job deleted or already over).
    pub skipped: u64,
    /// Jobs stopped at shutdown, put back to queued for another runner.
    pub released: u64,
    /// Jobs stopped at shutdown that Redis did not take back in time (it
    /// was down or hung): another runner takes each over once its lease passes.
    pub unreleased: u64,
    /// Running jobs cancelled on request.
    pub cancelled: u64,
    /// Runs stopped because they lost their lease to another run.
    pub lease_lost: u64,
    /// Jobs parked because their user had every slot taken.
    pub parked: u64,
}
