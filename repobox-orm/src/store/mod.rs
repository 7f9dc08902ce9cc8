//! `Store`: the Redis client that survives faults.
//!
//! A cheap-to-clone handle over one redis-rs multiplexed connection that it
//! re-creates with backoff when the server goes away, drops on `READONLY`
//! (a primary demoted to replica), times out at a configured bound, and
//! closes gracefully. It implements [`ConnectionLike`](redis::aio::ConnectionLike), so every generated
//! call takes it.
//!
//! Retries never apply a write twice: a read whose connection failed is
//! re-sent on a new connection; a write that may have reached the server
//! before the connection failed is reported as
//! [`Error::WriteOutcomeUnknown`](crate::Error::WriteOutcomeUnknown), never
//! re-sent. The connection speaks RESP3 so that redis-rs reports a dropped
//! connection as soon as it happens; a command is then sent on a fresh
//! connection instead of failing on the dead one.
//!
//! On a Redis Cluster (`redis+cluster://host:port,host:port` or
//! [`Store::cluster`]) the same holds per command, with redirects handled:
//! a command answered `MOVED` or `ASK` goes to the node named at once (see
//! `redirect`); one answered `TRYAGAIN`, `CLUSTERDOWN` or `MASTERDOWN`, or
//! that found no connection for its slot, was not run and is sent again,
//! read or write, paced by the backoff for up to
//! [`StoreConfig::cluster_wait`]; see `backend` for pipelines across slots,
//! script calls across slots, and `SCAN`.
//!
//! - `endpoint`: [`Endpoint`], what a store is opened on;
//! - `config`: [`StoreConfig`] and [`Backoff`];
//! - `backend`: a server's or a cluster's connection, pipelines split by slot;
//! - `redirect`: following a cluster's `MOVED` and `ASK`;
//! - `slot`: the cluster key slots; `scan`: `SCAN` over every primary;
//! - `connection`: the live connection and reconnecting;
//! - `classify`: which commands are reads, which errors mean a dead connection;
//! - `signal`: the store's own outcomes, carried typed through `RedisError`.

mod backend;
mod build;
mod call;
mod classify;
mod config;
mod connection;
mod endpoint;
#[cfg(feature = "cluster")]
mod redirect;
pub(crate) mod scan;
pub(crate) mod signal;
pub(crate) mod slot;
#[cfg(feature = "cluster")]
mod split;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[cfg(feature = "cluster")]
use redis::IntoConnectionInfo;

use self::backend::Client;
#[cfg(feature = "cluster")]
use self::build::cluster_client;
use self::build::single_client;
#[cfg(feature = "tls")]
pub use self::config::TlsConfig;
pub use self::config::{Backoff, StoreConfig};
use self::connection::Inner;
pub use self::endpoint::{Endpoint, IntoEndpoint};
use crate::error::Result;

/// The Redis client of repobox: one server (`redis://`), TLS (`rediss://`)
/// or a Redis Cluster (`redis+cluster://`), lazily connected, reconnecting,
/// closable. Every generated call and any redis-rs command runs on it (it
/// is a [`ConnectionLike`](redis::aio::ConnectionLike)).
///
/// What it adds over a redis-rs connection:
///
/// - **Reconnects.** A call that finds the connection gone (a server killed
///   or restarted, a dropped socket, a failover) connects again with
///   [`Backoff`] (jittered, bounded attempts) instead of failing every call
///   until someone rebuilds the client.
/// - **Deadlines.** Every call completes or fails with [`Error::Timeout`](crate::Error::Timeout)
///   within [`StoreConfig::call_bound`]: connect timeout, response timeout
///   and backoff included; a hung server never hangs a caller.
/// - **Honest write outcomes.** A read whose connection failed is sent
///   again; a write whose connection failed *after* it was sent is never
///   re-sent blindly: it is [`Error::WriteOutcomeUnknown`](crate::Error::WriteOutcomeUnknown), so the caller
///   reads before trying again. A write refused by a demoted primary is
///   [`Error::ReadOnly`](crate::Error::ReadOnly), nothing applied.
/// - **Clusters** (feature `cluster`): redirects followed, pipelines split
///   per slot, transactions across slots refused unsent, `SCAN` over every
///   primary, and a call re-sent while the cluster settles after a failover.
/// - **Shutdown.** [`close`](Self::close) waits for calls in flight, then
///   refuses new ones with [`Error::Closed`](crate::Error::Closed).
///
/// Clones share one multiplexed connection; [`dedicated`](Self::dedicated)
/// gives blocking reads a connection of their own. The [failure
/// behaviour](crate::guide::failure_behaviour) says what happens in each case,
/// each tested against real servers.
///
/// ```no_run
/// use repobox_orm::Store;
/// # async fn f() -> repobox_orm::Result<()> {
/// let store = Store::open("redis://:secret@127.0.0.1:6379/2")?;   // no I/O yet
/// let mut conn = store.clone();                                     // cheap
/// let pong: String = repobox_orm::redis::cmd("PING").query_async(&mut conn).await?;
/// store.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

// SAFETY: `Store` has no lifetime parameter, so every `Store` is `'static`:
// the engine may see a generic connection as a `Store` (to ask its topology)
// exactly when it is one.
unsafe impl castaway::LifetimeFree for Store {}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addr = match &self.inner.client {
            Client::Single(client) => client.get_connection_info().addr().to_string(),
            #[cfg(feature = "cluster")]
            Client::Cluster(_) => "cluster".to_owned(),
        };
        f.debug_struct("Store")
            .field("addr", &addr)
            .field("db", &self.inner.db)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

/// The default URL when `REDIS_URL` is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

impl Store {
    /// A store for `url` with the default config; connects on the first command.
    ///
    /// `url` is a server's (`redis://`, `rediss://`) or a cluster's
    /// (`redis+cluster://host:port,host:port`, `rediss+cluster://`): see
    /// [`IntoEndpoint`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) or
    /// [`Error::Redis`](crate::Error::Redis) for a URL that does not parse (the message never
    /// shows its password), a cluster URL without the `cluster` feature, or a `rediss://` URL
    /// without the `tls` feature. No I/O: an unreachable server fails the first command.
    pub fn open(url: impl IntoEndpoint) -> Result<Store> {
        Store::with_config(url, StoreConfig::default())
    }

    /// A store for `url` with `config`; connects on the first command.
    ///
    /// # Errors
    ///
    /// As [`Store::open`].
    pub fn with_config(url: impl IntoEndpoint, config: StoreConfig) -> Result<Store> {
        let (client, db, tls_node) = match url.into_endpoint()? {
            Endpoint::Server(info) => {
                let db = info.redis_settings().db();
                (Client::Single(single_client(info, &config)?), db, None)
            }
            #[cfg(feature = "cluster")]
            Endpoint::Cluster(nodes) => {
                let tls_node = nodes.first().and_then(connection::tls_address);
                (Client::Cluster(cluster_client(nodes, &config)?), 0, tls_node)
            }
            #[cfg(not(feature = "cluster"))]
            Endpoint::Cluster(_) => {
                return Err(crate::Error::InvalidArgument {
                    name: "cluster URL",
                    reason: "a Redis Cluster needs repobox-orm's `cluster` feature".into(),
                });
            }
        };
        let mut inner = Inner::new(client, config, db, false);
        inner.cluster_tls_node = tls_node;
        Ok(Store { inner: Arc::new(inner) })
    }

    /// A store for the Redis Cluster that `nodes` belong to (any reachable
    /// node will do; the client learns the others from it), with `config`.
    /// All nodes must share credentials and TLS settings.
    ///
    /// # Errors
    ///
    /// As [`Store::open`], and [`Error::InvalidArgument`](crate::Error::InvalidArgument) for
    /// no node.
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn cluster<I, N>(nodes: I, config: StoreConfig) -> Result<Store>
    where
        I: IntoIterator<Item = N>,
        N: IntoConnectionInfo,
    {
        let nodes = nodes
            .into_iter()
            .map(IntoConnectionInfo::into_connection_info)
            .collect::<redis::RedisResult<Vec<_>>>()?;
        Store::with_config(Endpoint::Cluster(nodes), config)
    }

    /// Whether the store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        match self.inner.client {
            Client::Single(_) => false,
            #[cfg(feature = "cluster")]
            Client::Cluster(_) => true,
        }
    }

    /// A store for `url` that has connected (or failed to, after the backoff).
    ///
    /// # Errors
    ///
    /// As [`Store::open`], and as every call when the first connection fails (after the
    /// configured backoff).
    pub async fn connect(url: impl IntoEndpoint) -> Result<Store> {
        let store = Store::open(url)?;
        store.inner.connection().await?;
        Ok(store)
    }

    /// A store for `$REDIS_URL`, or [`DEFAULT_URL`] when it is not set.
    ///
    /// # Errors
    ///
    /// As [`Store::open`] for the URL in `REDIS_URL`.
    pub fn from_env() -> Result<Store> {
        Store::open(
            std::env::var("REDIS_URL")
                .unwrap_or_else(|_| DEFAULT_URL.to_owned())
                .as_str(),
        )
    }

    /// A second store on the same server with its own connection, for
    /// blocking commands (`XREADGROUP ... BLOCK`) that must not hold up
    /// ordinary commands. `block`: the longest such a command blocks; a reply
    /// that takes longer than that plus this store's response timeout (5 s by
    /// default) is a timeout and the connection is dropped, so a server that
    /// hangs (a partition, a stopped process) is noticed as one that is down.
    /// `None`: no response timeout at all (`BLOCK 0`).
    pub fn dedicated(&self, block: Option<Duration>) -> Store {
        let margin = self.inner.config.response_timeout.unwrap_or(Duration::from_secs(5));
        let config = self
            .inner
            .config
            .clone()
            .response_timeout(block.map(|b| b.saturating_add(margin)));
        Store {
            inner: Arc::new({
                let mut inner = Inner::new(self.inner.client.clone(), config, self.inner.db, self.is_closed());
                inner.cluster_tls_node = self.inner.cluster_tls_node.clone();
                inner
            }),
        }
    }

    /// The config the store was built with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// How many commands are waiting for their reply right now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Whether [`close`](Store::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Closes the store: later calls fail with [`Error::Closed`](crate::Error::Closed) without
    /// touching the network; commands in flight get up to the configured
    /// close timeout to finish, then the connection is dropped.
    pub async fn close(&self) {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let deadline = tokio::time::Instant::now() + inner.config.close_timeout;
        loop {
            let idle = inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let n = inner.in_flight.load(Ordering::SeqCst);
            if n == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                tracing::warn!(target: "repobox::store", in_flight = n, "closing with commands still in flight");
                break;
            }
        }
        inner.drop_connection();
        tracing::info!(target: "repobox::store", "closed");
    }
}
