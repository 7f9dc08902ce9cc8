//! `Store`: the Redis client that survives faults.
//!
//! A cheap-to-clone handle over one redis-rs multiplexed connection that it
//! re-creates with backoff when the server goes away, drops on `READONLY`
//! (a primary demoted to replica), times out at a configured bound, and
//! closes gracefully. It implements [`ConnectionLike`], so every generated
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
use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use self::backend::{Client, Conn};
use self::classify::{Replies, command_name, is_connection_failure, is_read_command, not_run};
#[cfg(feature = "tls")]
pub use self::config::TlsConfig;
pub use self::config::{Backoff, StoreConfig};
use self::connection::{InFlight, Inner};
pub use self::endpoint::{Endpoint, IntoEndpoint};
use self::signal::StoreSignal;
use crate::error::{Error, Result};

/// The Redis client of repobox: one server (`redis://`), TLS (`rediss://`)
/// or a Redis Cluster (`redis+cluster://`), lazily connected, reconnecting,
/// closable. Every generated call and any redis-rs command runs on it (it
/// is a [`ConnectionLike`]).
///
/// What it adds over a redis-rs connection:
///
/// - **Reconnects.** A call that finds the connection gone (a server killed
///   or restarted, a dropped socket, a failover) connects again with
///   [`Backoff`] (jittered, bounded attempts) instead of failing every call
///   until someone rebuilds the client.
/// - **Deadlines.** Every call completes or fails with [`Error::Timeout`]
///   within [`StoreConfig::call_bound`]: connect timeout, response timeout
///   and backoff included; a hung server never hangs a caller.
/// - **Honest write outcomes.** A read whose connection failed is sent
///   again; a write whose connection failed *after* it was sent is never
///   re-sent blindly: it is [`Error::WriteOutcomeUnknown`], so the caller
///   reads before trying again. A write refused by a demoted primary is
///   [`Error::ReadOnly`], nothing applied.
/// - **Clusters** (feature `cluster`): redirects followed, pipelines split
///   per slot, transactions across slots refused unsent, `SCAN` over every
///   primary, and a call re-sent while the cluster settles after a failover.
/// - **Shutdown.** [`close`](Self::close) waits for calls in flight, then
///   refuses new ones with [`Error::Closed`].
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
                return Err(Error::InvalidArgument {
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

    /// Closes the store: later calls fail with [`Error::Closed`] without
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

    /// Runs one call within the config's [`call_bound`](StoreConfig::call_bound).
    async fn run<'a, T: Replies, F>(&'a self, read_only: bool, resend_on_ask: bool, op: F) -> redis::RedisResult<T>
    where
        F: Fn(Conn) -> RedisFuture<'a, T>,
    {
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(StoreSignal::Closed.into());
        }
        let _guard = InFlight::enter(inner);
        let bound = inner.config.call_bound().map(|b| match inner.client {
            #[cfg(feature = "cluster")]
            Client::Cluster(_) => b.saturating_add(inner.config.cluster_wait),
            Client::Single(_) => b,
        });
        match bound {
            None => self.attempts(read_only, resend_on_ask, op).await,
            Some(bound) => match tokio::time::timeout(bound, self.attempts(read_only, resend_on_ask, op)).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(target: "repobox::store", bound_ms = config::ms(bound), "a call ran out of its time");
                    Err(StoreSignal::Timeout(bound).into())
                }
            },
        }
    }

    async fn attempts<'a, T: Replies, F>(&'a self, read_only: bool, resend_on_ask: bool, op: F) -> redis::RedisResult<T>
    where
        F: Fn(Conn) -> RedisFuture<'a, T>,
    {
        let inner = &self.inner;
        let mut attempt = 0;
        // When the cluster first said it did not run the command.
        let mut refused_since: Option<tokio::time::Instant> = None;
        loop {
            let live = inner.connection().await.map_err(into_redis_error)?;
            let reply = match inner.config.response_timeout {
                Some(limit) => match tokio::time::timeout(limit, op(live.conn.clone())).await {
                    Ok(reply) => reply,
                    Err(_) => {
                        inner.invalidate(live.generation, "response timeout");
                        return Err(StoreSignal::Timeout(limit).into());
                    }
                },
                None => op(live.conn.clone()).await,
            };
            let err = match reply {
                // Server errors arrive as values; READONLY among them means a failover.
                Ok(value) => match value.read_only_error() {
                    Some(detail) => {
                        inner.invalidate(live.generation, "READONLY: the server is a replica");
                        return Err(StoreSignal::ReadOnly(detail).into());
                    }
                    None => return Ok(value),
                },
                Err(err) => err,
            };
            // The store's own verdict (an outcome a redirect left unknown).
            if StoreSignal::of(&err).is_some() {
                return Err(err);
            }
            if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) {
                inner.invalidate(live.generation, "READONLY: the server is a replica");
                return Err(StoreSignal::ReadOnly(err.to_string()).into());
            }
            // A cluster's redirect, or a node that refused the connection:
            // the command did not run, so it goes again once the client has
            // had time to learn the new slot map.
            // The budget is time: long enough for a failover or a young
            // cluster to settle (`cluster_wait`).
            if live.conn.is_cluster() && not_run(&err, resend_on_ask) {
                attempt += 1;
                let since = *refused_since.get_or_insert_with(tokio::time::Instant::now);
                if !inner.config.retry || since.elapsed() >= inner.config.cluster_wait {
                    return Err(err);
                }
                if err.is_connection_refusal() {
                    inner.invalidate(live.generation, "a cluster node refused the connection");
                }
                let delay = inner.config.backoff.delay(attempt);
                tracing::info!(target: "repobox::store", error = %err, attempt, delay_ms = config::ms(delay), "sending again after a cluster redirect");
                tokio::time::sleep(delay).await;
                continue;
            }
            if !is_connection_failure(&err) {
                return Err(err);
            }
            inner.invalidate(live.generation, "connection failed");
            tracing::warn!(target: "repobox::store", error = %err, "connection failed");
            attempt += 1;
            let may_retry = inner.config.retry && inner.config.backoff.max_attempts.is_none_or(|max| attempt < max);
            if !read_only {
                return Err(StoreSignal::WriteOutcomeUnknown(err.to_string()).into());
            }
            if !may_retry {
                return Err(err);
            }
            tracing::info!(target: "repobox::store", attempt, "re-sending a read on a new connection");
        }
    }
}

fn into_redis_error(e: Error) -> redis::RedisError {
    match e {
        Error::Redis(e) => e,
        Error::Closed => StoreSignal::Closed.into(),
        other => redis::RedisError::from((redis::ErrorKind::Client, "store", other.to_string())),
    }
}

impl ConnectionLike for Store {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let read_only = is_read_command(command_name(cmd));
            self.run(read_only, true, |mut conn| {
                Box::pin(async move { conn.command(cmd).await })
            })
            .await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let read_only = !pipeline.is_transaction() && pipeline.cmd_iter().all(|c| is_read_command(command_name(c)));
            self.run(read_only, read_only, |mut conn| {
                Box::pin(async move { conn.pipeline(pipeline, offset, count).await })
            })
            .await
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.db
    }
}

fn single_client(info: redis::ConnectionInfo, config: &StoreConfig) -> Result<redis::Client> {
    let redis = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    let info = info.set_redis_settings(redis);
    #[cfg(feature = "tls")]
    if let Some(tls) = &config.tls {
        return Ok(redis::Client::build_with_tls(info, tls.certificates())?);
    }
    #[cfg(not(feature = "tls"))]
    let _ = config;
    Ok(redis::Client::open(info)?)
}

#[cfg(feature = "cluster")]
fn cluster_client(nodes: Vec<redis::ConnectionInfo>, config: &StoreConfig) -> Result<redis::cluster::ClusterClient> {
    if nodes.is_empty() {
        return Err(Error::InvalidArgument {
            name: "cluster nodes",
            reason: "no node to start from".into(),
        });
    }
    // Redirects are followed by the store, which knows whether a command ran;
    // redis-rs would also re-send a write whose connection dropped.
    let builder = redis::cluster::ClusterClientBuilder::new(nodes)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .retries(0)
        .connection_timeout(config.connect_timeout);
    #[cfg(feature = "tls")]
    let builder = match &config.tls {
        Some(tls) => builder.certs(tls.certificates()),
        None => builder,
    };
    Ok(builder.build()?)
}
