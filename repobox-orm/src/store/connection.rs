//! The store's shared state: the live connection, reconnecting with backoff,
//! and the count of commands in flight.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use redis::{PushKind, RedisError};
use tokio::sync::Notify;

use super::backend::{Client, Conn};
use super::classify::is_auth_failure;
use super::config::{StoreConfig, ms};
use crate::error::{Error, Result};

/// A connect under way, as every caller waiting for it sees it.
type Connecting = Shared<BoxFuture<'static, std::result::Result<Live, Failure>>>;

/// Why a connect gave up, once for every caller that waited on it.
#[derive(Clone)]
enum Failure {
    /// The store was closed.
    Closed,
    /// Redis refused, or could not be reached within the backoff.
    Redis(RedisError),
}

impl From<Failure> for Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Closed => Error::Closed,
            Failure::Redis(e) => e.into(),
        }
    }
}

/// A live connection and the flag its disconnect notification clears.
#[derive(Clone)]
pub(super) struct Live {
    pub conn: Conn,
    pub generation: u64,
    alive: Arc<AtomicBool>,
}

pub(super) struct Inner {
    pub client: Client,
    pub config: StoreConfig,
    pub db: i64,
    current: RwLock<Option<Live>>,
    /// The connect under way, if any: every caller that finds no live
    /// connection waits on this one.
    connecting: Mutex<Option<Connecting>>,
    generation: AtomicU64,
    pub closed: AtomicBool,
    pub in_flight: AtomicUsize,
    pub idle: Notify,
    /// A cluster's first node, when the cluster is reached over TLS.
    pub cluster_tls_node: Option<String>,
}

impl Inner {
    pub fn new(client: Client, config: StoreConfig, db: i64, closed: bool) -> Self {
        Inner {
            client,
            config,
            db,
            current: RwLock::new(None),
            connecting: Mutex::new(None),
            generation: AtomicU64::new(0),
            closed: AtomicBool::new(closed),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            cluster_tls_node: None,
        }
    }

    fn live(&self) -> Option<Live> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.as_ref().filter(|l| l.alive.load(Ordering::SeqCst)).cloned()
    }

    /// Drops the current connection, whatever its generation (on close).
    pub fn drop_connection(&self) {
        self.current.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Drops the connection of `generation` (if it is still the current one).
    pub fn invalidate(&self, generation: u64, why: &str) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|l| l.generation == generation) {
            tracing::info!(target: "repobox::store", reason = why, "dropping the connection");
            *current = None;
        }
    }

    /// The live connection, connecting (with backoff) when there is none.
    ///
    /// The connect is one future shared by every caller that waits for it,
    /// and each of them drives it: it goes on whether or not the caller that
    /// began it is still polled, so a call parked in one arm of a `select!`
    /// while another arm awaits a second call does not hold that second
    /// call up. (Not a task of its own: with the connect spawned, the
    /// cluster failover test saw a write time out in 2 runs of 13, against
    /// none in 28 runs without; the cause was not found.)
    pub async fn connection(self: &Arc<Self>) -> Result<Live> {
        if let Some(live) = self.live() {
            return Ok(live);
        }
        let attempt = {
            let mut connecting = self.connecting.lock().unwrap_or_else(|e| e.into_inner());
            // Connected while this caller took the lock.
            if let Some(live) = self.live() {
                return Ok(live);
            }
            match connecting.as_ref() {
                Some(attempt) => attempt.clone(),
                None => {
                    let attempt = connect_until_done(Arc::downgrade(self)).boxed().shared();
                    *connecting = Some(attempt.clone());
                    attempt
                }
            }
        };
        attempt.await.map_err(Error::from)
    }

    /// What one connect attempt needs, apart from the store: a connect
    /// that no one polls any more must not keep the store alive.
    fn connector(&self) -> Connector {
        Connector {
            client: self.client.clone(),
            timeout: self.config.connect_timeout,
            cluster_tls_node: self.cluster_tls_node.clone(),
        }
    }

    /// The attempt is over: the next caller begins a new one.
    fn attempt_over(&self) {
        self.connecting.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Connects `inner`'s store, with backoff, until connected or told to give
/// up. Holds the store only between awaits (its `Inner` holds this future
/// while it runs): a store dropped meanwhile ends it as closed.
async fn connect_until_done(inner: Weak<Inner>) -> std::result::Result<Live, Failure> {
    let mut attempt = 0u32;
    loop {
        let (connector, config) = match inner.upgrade() {
            Some(store) if store.closed.load(Ordering::SeqCst) => {
                store.attempt_over();
                return Err(Failure::Closed);
            }
            Some(store) => (store.connector(), store.config.clone()),
            None => return Err(Failure::Closed),
        };
        attempt += 1;
        let err = match connector.connect_once().await {
            Ok((conn, alive)) => {
                let Some(store) = inner.upgrade() else {
                    return Err(Failure::Closed);
                };
                let live = Live {
                    conn,
                    generation: store.generation.fetch_add(1, Ordering::SeqCst) + 1,
                    alive,
                };
                tracing::info!(target: "repobox::store", generation = live.generation, attempt, "connected");
                crate::observe::connected(live.generation);
                *store.current.write().unwrap_or_else(|e| e.into_inner()) = Some(live.clone());
                store.attempt_over();
                return Ok(live);
            }
            Err(err) => err,
        };
        let give_up = !config.retry
            || is_auth_failure(&err)
            || is_tls_handshake_failure(&err)
            || config.backoff.max_attempts.is_some_and(|max| attempt >= max);
        tracing::warn!(target: "repobox::store", error = %err, attempt, "connect failed");
        crate::observe::connect_failed();
        if give_up {
            if let Some(store) = inner.upgrade() {
                store.attempt_over();
            }
            return Err(Failure::Redis(err));
        }
        let delay = config.backoff.delay(attempt);
        tracing::info!(target: "repobox::store", attempt = attempt + 1, delay_ms = ms(delay), "reconnecting");
        tokio::time::sleep(delay).await;
    }
}

/// A store's client and what connecting with it takes.
struct Connector {
    client: Client,
    timeout: std::time::Duration,
    /// A cluster's first node, when the cluster is reached over TLS.
    #[cfg_attr(
        not(feature = "cluster"),
        expect(dead_code, reason = "read by the cluster client only")
    )]
    cluster_tls_node: Option<String>,
}

impl Connector {
    /// `host:port` of a single server reached over TLS (`rediss://`).
    /// (A cluster's: the first node it was given.)
    fn tls_address(&self) -> Option<String> {
        match &self.client {
            Client::Single(client) => tls_address(client.get_connection_info()),
            #[cfg(feature = "cluster")]
            Client::Cluster(_) => self.cluster_tls_node.clone(),
        }
    }

    /// One connection, with the flag its disconnect notification clears.
    async fn connect_once(&self) -> redis::RedisResult<(Conn, Arc<AtomicBool>)> {
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(None)
            .set_push_sender(move |info: redis::PushInfo| {
                if info.kind == PushKind::Disconnection {
                    flag.store(false, Ordering::SeqCst);
                }
                Ok::<(), std::convert::Infallible>(())
            });
        let connecting = async {
            match &self.client {
                Client::Single(client) => client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Conn::Single),
                // The cluster connection reconnects to its nodes by itself;
                // the store replaces it only when a command finds it broken.
                #[cfg(feature = "cluster")]
                Client::Cluster(client) => {
                    let config = redis::cluster::ClusterConfig::new().set_connection_timeout(self.timeout);
                    client
                        .get_async_connection_with_config(config)
                        .await
                        .map(|c| Conn::Cluster(c, Default::default()))
                }
            }
        };
        let conn = match tokio::time::timeout(self.timeout, connecting).await {
            // redis-rs's own connect timeout may fire first.
            Ok(Err(e))
                if e.is_timeout()
                    && let Some(addr) = self.tls_address() =>
            {
                return Err(tls_handshake_failure(&addr, self.timeout).await);
            }
            Ok(conn) => conn?,
            Err(_) => {
                if let Some(addr) = self.tls_address() {
                    return Err(tls_handshake_failure(&addr, self.timeout).await);
                }
                return Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect timed out after {:?}", self.timeout),
                )));
            }
        };
        Ok((conn, alive))
    }
}

/// What a TLS handshake that got no answer within `limit` says: a plain
/// Redis server on a `rediss://` port reads the handshake as the start of a
/// command and waits for the rest. One plain `PING` on a new connection
/// tells which it is; the answer is never retried (the port will not learn
/// TLS by itself).
async fn tls_handshake_failure(addr: &str, limit: std::time::Duration) -> RedisError {
    let plain = probe_plain(addr).await;
    let detail = if plain {
        format!("{addr} answered a plain-text PING: it speaks plain Redis, not TLS (use redis://, not rediss://)")
    } else {
        format!("{addr} did not complete a TLS handshake within {limit:?}")
    };
    RedisError::from((redis::ErrorKind::InvalidClientConfig, "TLS handshake failed", detail))
}

/// Whether `addr` answers a plain `PING` as Redis does (`+PONG`, or an error
/// such as `-NOAUTH`), within half a second.
async fn probe_plain(addr: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut first = [0u8; 1];
        stream.read_exact(&mut first).await.ok()?;
        Some(matches!(first[0], b'+' | b'-'))
    };
    matches!(
        tokio::time::timeout(std::time::Duration::from_millis(500), probe).await,
        Ok(Some(true))
    )
}

/// Whether the error says the client's configuration cannot work (a TLS
/// handshake that failed, see [`tls_handshake_failure`]): trying again
/// cannot help.
pub(super) fn is_tls_handshake_failure(err: &RedisError) -> bool {
    err.kind() == redis::ErrorKind::InvalidClientConfig
}

/// `host:port` of a node reached over TLS.
pub(super) fn tls_address(info: &redis::ConnectionInfo) -> Option<String> {
    match info.addr() {
        redis::ConnectionAddr::TcpTls { host, port, .. } => Some(format!("{host}:{port}")),
        _ => None,
    }
}

/// Counts a command in flight for as long as it lives.
pub(super) struct InFlight<'a>(&'a Inner);

impl<'a> InFlight<'a> {
    pub fn enter(inner: &'a Inner) -> Self {
        inner.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(inner)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;
    use crate::store::Store;

    /// A call polled once (its connect begun, against a port where nothing
    /// listens) and then dropped, with its store: the connect left behind
    /// holds only a weak reference, so the store goes.
    #[tokio::test]
    async fn a_connect_no_one_polls_does_not_keep_its_store_alive() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let store = Store::open(format!("redis://127.0.0.1:{port}/").as_str()).unwrap();
        let weak = Arc::downgrade(&store.inner);
        let mut conn = store.clone();
        {
            let ping = redis::cmd("PING");
            let call = ping.query_async::<String>(&mut conn);
            tokio::pin!(call);
            let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx))).await;
            assert!(polled.is_pending());
            assert!(store.inner.connecting.lock().unwrap().is_some(), "the connect began");
        }
        drop(conn);
        drop(store);
        assert!(weak.upgrade().is_none(), "the store outlived every handle to it");
    }
}
