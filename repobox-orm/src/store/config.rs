//! How a [`Store`](super::Store) connects, retries and times out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long to wait before reconnect attempt `n` (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    step: Duration,
    pub(super) max: Duration,
    jitter: bool,
    pub(super) max_attempts: Option<u32>,
}

impl Default for Backoff {
    /// `min(attempt * 50 ms, 2 s)` with jitter, at most 10 attempts per call.
    fn default() -> Self {
        Backoff {
            step: Duration::from_millis(50),
            max: Duration::from_secs(2),
            jitter: true,
            max_attempts: Some(10),
        }
    }
}

impl Backoff {
    /// The delay grows by `step` per attempt.
    pub fn step(mut self, step: Duration) -> Self {
        self.step = step;
        self
    }

    /// The delay never exceeds `max`.
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// Whether to spread delays randomly over `[delay / 2, delay]` so that many
    /// clients do not reconnect in lockstep.
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// How many connection attempts one call makes before it gives up with the
    /// connection error (`None`: until the server answers or the store closes).
    pub fn max_attempts(mut self, n: Option<u32>) -> Self {
        self.max_attempts = n;
        self
    }

    /// The delay before attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self.step.saturating_mul(attempt).min(self.max);
        if !self.jitter || full.is_zero() {
            return full;
        }
        let half = full / 2;
        half + Duration::from_nanos(random_u64() % (full - half).as_nanos().max(1) as u64)
    }
}

/// `d` in whole milliseconds, for logs (saturating).
pub(super) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// How a [`Store`](crate::Store) connects, retries and times out.
///
/// ```
/// use std::time::Duration;
/// use repobox_orm::{Backoff, StoreConfig};
/// let config = StoreConfig::default()
///     .connect_timeout(Duration::from_secs(1))
///     .response_timeout(Some(Duration::from_millis(500)))
///     .backoff(Backoff::default().max_attempts(Some(5)));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    #[cfg(feature = "tls")]
    pub(super) tls: Option<TlsConfig>,
    pub(super) backoff: Backoff,
    pub(super) connect_timeout: Duration,
    pub(super) response_timeout: Option<Duration>,
    pub(super) retry: bool,
    pub(super) close_timeout: Duration,
    pub(super) cluster_wait: Duration,
    pub(super) repair_on_read: bool,
}

impl Default for StoreConfig {
    /// Seed backoff, 5 s connect timeout, 5 s response timeout, retries on,
    /// 5 s for in-flight commands on close.
    fn default() -> Self {
        StoreConfig {
            #[cfg(feature = "tls")]
            tls: None,
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Some(Duration::from_secs(5)),
            retry: true,
            close_timeout: Duration::from_secs(5),
            cluster_wait: Duration::from_secs(40),
            repair_on_read: true,
        }
    }
}

impl StoreConfig {
    /// The certificates of a `rediss://` connection: the CA to trust instead
    /// of the system's, and a client certificate for mutual TLS.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The reconnect backoff it was built with (the runner paces its own
    /// retries with it too).
    pub fn backoff_policy(&self) -> &Backoff {
        &self.backoff
    }

    /// The reconnect backoff.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How long one connection attempt may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a command may wait for its reply (`None`: forever). A command
    /// that times out fails with [`Error::Timeout`](crate::Error::Timeout) and the connection is replaced.
    /// It is part of every call's deadline: see [`call_bound`](Self::call_bound).
    pub fn response_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Whether an index read repairs the index on the side (removes the
    /// members whose entity is gone or moved, re-scores, then reads on to
    /// fill the page): on by default. Off, a read never writes: it skips
    /// what it finds wrong (a page may then hold fewer items than asked)
    /// and leaves the repair to writers and `index repair`. For a viewer
    /// that must not change data (`repobox web --read-only`), or a replica.
    pub fn repair_on_read(mut self, on: bool) -> Self {
        self.repair_on_read = on;
        self
    }

    /// Whether index reads repair on the side (see [`repair_on_read`](Self::repair_on_read)).
    pub fn repairs_on_read(&self) -> bool {
        self.repair_on_read
    }

    /// Whether to reconnect and re-send reads whose connection failed, and to
    /// retry connecting with backoff. Off: one attempt, errors as they come.
    pub fn retry(mut self, on: bool) -> Self {
        self.retry = on;
        self
    }

    /// The longest a call takes, whatever the server does: the response
    /// timeout, plus the connect timeout (when it must reconnect), plus the
    /// longest backoff delay; on a Redis Cluster, plus the
    /// [`cluster_wait`](Self::cluster_wait). A call still running then fails
    /// with [`Error::Timeout`](crate::Error::Timeout). `None` when there is no
    /// response timeout (a [`dedicated(None)`](crate::Store::dedicated) store for blocking reads).
    pub fn call_bound(&self) -> Option<Duration> {
        self.response_timeout
            .map(|r| r.saturating_add(self.connect_timeout).saturating_add(self.backoff.max))
    }

    /// How long a call on a Redis Cluster keeps sending again a command that
    /// the cluster did not run (`CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`, a
    /// redirect to a node that is down, no connection for the slot yet)
    /// before it gives up with the cluster's error: 40 s by default, longer
    /// than an automatic failover takes with Redis's default
    /// `cluster-node-timeout` of 15 s, and than a new cluster takes to
    /// converge. The [`Backoff`] paces the attempts; its `max_attempts` does
    /// not cut this short.
    pub fn cluster_wait(mut self, wait: Duration) -> Self {
        self.cluster_wait = wait;
        self
    }

    /// The configured [`cluster_wait`](Self::cluster_wait).
    pub fn cluster_wait_value(&self) -> Duration {
        self.cluster_wait
    }

    /// How long [`Store::close`](crate::Store::close) waits for commands in flight.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }
}

/// Certificates for `rediss://`, in PEM. Without a CA the system's trust
/// store is used; with a client certificate and key the server can require
/// mutual TLS. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq, Default)]
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub struct TlsConfig {
    pub(super) ca: Option<Vec<u8>>,
    pub(super) client: Option<(Vec<u8>, Vec<u8>)>,
}

#[cfg(feature = "tls")]
impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca", &self.ca.is_some())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

#[cfg(feature = "tls")]
fn read_pem(what: &'static str, path: &std::path::Path) -> crate::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| crate::Error::InvalidArgument {
        name: what,
        reason: format!("cannot read {}: {e}", path.display()),
    })
}

#[cfg(feature = "tls")]
impl TlsConfig {
    /// The certificates in redis-rs's form.
    pub(super) fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self.client.as_ref().map(|(cert, key)| redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            root_cert: self.ca.clone(),
        }
    }

    /// Trusts the CA certificate(s) in `pem` (instead of the system's).
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca = Some(pem.into());
        self
    }

    /// Trusts the CA certificate(s) in the PEM file at `path`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) when the file cannot be
    /// read.
    pub fn ca_file(self, path: impl AsRef<std::path::Path>) -> crate::Result<Self> {
        Ok(self.ca_pem(read_pem("CA file", path.as_ref())?))
    }

    /// Presents this client certificate and key (PEM) for mutual TLS.
    pub fn client_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.client = Some((cert.into(), key.into()));
        self
    }

    /// Presents the client certificate and key in these PEM files.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) when a file cannot be read.
    pub fn client_files(
        self,
        cert: impl AsRef<std::path::Path>,
        key: impl AsRef<std::path::Path>,
    ) -> crate::Result<Self> {
        let cert = read_pem("client certificate", cert.as_ref())?;
        let key = read_pem("client key", key.as_ref())?;
        Ok(self.client_pem(cert, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_seed_formula() {
        let b = Backoff::default().jitter(false);
        assert_eq!(b.delay(1), Duration::from_millis(50));
        assert_eq!(b.delay(7), Duration::from_millis(350));
        assert_eq!(b.delay(40), Duration::from_secs(2));
        assert_eq!(b.delay(1000), Duration::from_secs(2));
        let j = Backoff::default();
        for attempt in 1..50 {
            let d = j.delay(attempt);
            let full = b.delay(attempt);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
    }
}
