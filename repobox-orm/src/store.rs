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

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, IntoConnectionInfo, Pipeline, PushKind, RedisError, RedisFuture, Value};
use tokio::sync::{Mutex, Notify};

use crate::error::{Error, Result, StoreSignal};

/// How long to wait before reconnect attempt `n` (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    step: Duration,
    max: Duration,
    jitter: bool,
    max_attempts: Option<u32>,
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

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// How a [`Store`] connects, retries and times out.
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
    backoff: Backoff,
    connect_timeout: Duration,
    response_timeout: Option<Duration>,
    retry: bool,
    close_timeout: Duration,
}

impl Default for StoreConfig {
    /// Seed backoff, 5 s connect timeout, 5 s response timeout, retries on,
    /// 5 s for in-flight commands on close.
    fn default() -> Self {
        StoreConfig {
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Some(Duration::from_secs(5)),
            retry: true,
            close_timeout: Duration::from_secs(5),
        }
    }
}

impl StoreConfig {
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
    /// that times out fails with [`Error::Timeout`] and the connection is replaced.
    pub fn response_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Whether to reconnect and re-send reads whose connection failed, and to
    /// retry connecting with backoff. Off: one attempt, errors as they come.
    pub fn retry(mut self, on: bool) -> Self {
        self.retry = on;
        self
    }

    /// How long [`Store::close`] waits for commands in flight.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }
}

/// A live connection and the flag its disconnect notification clears.
#[derive(Clone)]
struct Live {
    conn: MultiplexedConnection,
    generation: u64,
    alive: Arc<AtomicBool>,
}

struct Inner {
    client: redis::Client,
    config: StoreConfig,
    db: i64,
    current: RwLock<Option<Live>>,
    connecting: Mutex<()>,
    generation: AtomicU64,
    closed: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// The Redis client of repobox: lazily connected, reconnecting, closable.
///
/// ```no_run
/// use repobox_orm::Store;
/// # async fn f() -> repobox_orm::Result<()> {
/// let store = Store::open("redis://:secret@127.0.0.1:6379/2")?;   // no I/O yet
/// let mut conn = store.clone();                                     // cheap
/// let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
/// store.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("addr", &self.inner.client.get_connection_info().addr())
            .field("db", &self.inner.db)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

/// The default URL when `REDIS_URL` is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

impl Store {
    /// A store for `url` with the default config; connects on the first command.
    pub fn open(url: impl IntoConnectionInfo) -> Result<Store> {
        Store::with_config(url, StoreConfig::default())
    }

    /// A store for `url` with `config`; connects on the first command.
    pub fn with_config(url: impl IntoConnectionInfo, config: StoreConfig) -> Result<Store> {
        let info = url.into_connection_info()?;
        let redis = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let db = redis.db();
        let client = redis::Client::open(info.set_redis_settings(redis))?;
        Ok(Store {
            inner: Arc::new(Inner {
                client,
                config,
                db,
                current: RwLock::new(None),
                connecting: Mutex::new(()),
                generation: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        })
    }

    /// A store for `url` that has connected (or failed to, after the backoff).
    pub async fn connect(url: impl IntoConnectionInfo) -> Result<Store> {
        let store = Store::open(url)?;
        store.inner.connection().await?;
        Ok(store)
    }

    /// A store for `$REDIS_URL`, or [`DEFAULT_URL`] when it is not set.
    pub fn from_env() -> Result<Store> {
        Store::open(
            std::env::var("REDIS_URL")
                .unwrap_or_else(|_| DEFAULT_URL.to_owned())
                .as_str(),
        )
    }

    /// The process-wide store, built from the environment on first use.
    ///
    /// Panics if `REDIS_URL` is not a valid Redis URL: that is a deployment error.
    pub fn global() -> &'static Store {
        static GLOBAL: OnceLock<Store> = OnceLock::new();
        GLOBAL.get_or_init(|| Store::from_env().unwrap_or_else(|e| panic!("REDIS_URL is not a valid Redis URL: {e}")))
    }

    /// A second store on the same server with its own connection and no
    /// response timeout, for blocking commands (`XREADGROUP ... BLOCK`) that
    /// must not hold up, or be timed out like, ordinary commands.
    pub fn dedicated(&self) -> Store {
        let config = self.inner.config.clone().response_timeout(None);
        Store {
            inner: Arc::new(Inner {
                client: self.inner.client.clone(),
                config,
                db: self.inner.db,
                current: RwLock::new(None),
                connecting: Mutex::new(()),
                generation: AtomicU64::new(0),
                closed: AtomicBool::new(self.is_closed()),
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
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
        inner.current.write().unwrap_or_else(|e| e.into_inner()).take();
        tracing::info!(target: "repobox::store", "closed");
    }

    async fn run<'a, T: Replies, F>(&'a self, read_only: bool, op: F) -> redis::RedisResult<T>
    where
        F: Fn(MultiplexedConnection) -> RedisFuture<'a, T>,
    {
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(StoreSignal::Closed.into());
        }
        let _guard = InFlight::enter(inner);
        let mut attempt = 0;
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
            if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) {
                inner.invalidate(live.generation, "READONLY: the server is a replica");
                return Err(StoreSignal::ReadOnly(err.to_string()).into());
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

/// Replies that may carry a server error.
trait Replies {
    /// The detail of a `READONLY` error among the replies.
    fn read_only_error(&self) -> Option<String>;
}

fn read_only(value: &Value) -> Option<String> {
    match value {
        Value::ServerError(e) if e.kind() == Some(redis::ServerErrorKind::ReadOnly) => {
            Some(e.details().unwrap_or("READONLY").to_owned())
        }
        _ => None,
    }
}

impl Replies for Value {
    fn read_only_error(&self) -> Option<String> {
        read_only(self)
    }
}

impl Replies for Vec<Value> {
    fn read_only_error(&self) -> Option<String> {
        self.iter().find_map(read_only)
    }
}

fn into_redis_error(e: Error) -> RedisError {
    match e {
        Error::Redis(e) => e,
        Error::Closed => StoreSignal::Closed.into(),
        other => RedisError::from((redis::ErrorKind::Client, "store", other.to_string())),
    }
}

fn is_connection_failure(err: &RedisError) -> bool {
    err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() || err.is_unrecoverable_error()
}

struct InFlight<'a>(&'a Inner);

impl<'a> InFlight<'a> {
    fn enter(inner: &'a Inner) -> Self {
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

impl Inner {
    fn live(&self) -> Option<Live> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.as_ref().filter(|l| l.alive.load(Ordering::SeqCst)).cloned()
    }

    /// Drops the connection of `generation` (if it is still the current one).
    fn invalidate(&self, generation: u64, why: &str) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|l| l.generation == generation) {
            tracing::info!(target: "repobox::store", reason = why, "dropping the connection");
            *current = None;
        }
    }

    /// The live connection, connecting (with backoff) when there is none.
    async fn connection(&self) -> Result<Live> {
        if let Some(live) = self.live() {
            return Ok(live);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(live) = self.live() {
            return Ok(live);
        }
        let mut attempt = 0u32;
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return Err(Error::Closed);
            }
            attempt += 1;
            match self.connect_once().await {
                Ok(live) => {
                    tracing::info!(target: "repobox::store", generation = live.generation, attempt, "connected");
                    *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(live.clone());
                    return Ok(live);
                }
                Err(err) => {
                    let give_up =
                        !self.config.retry || self.config.backoff.max_attempts.is_some_and(|max| attempt >= max);
                    tracing::warn!(target: "repobox::store", error = %err, attempt, "connect failed");
                    if give_up {
                        return Err(err.into());
                    }
                    let delay = self.config.backoff.delay(attempt);
                    tracing::info!(target: "repobox::store", attempt = attempt + 1, delay_ms = delay.as_millis() as u64, "reconnecting");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn connect_once(&self) -> redis::RedisResult<Live> {
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(None)
            .set_push_sender(move |info: redis::PushInfo| {
                if info.kind == PushKind::Disconnection {
                    flag.store(false, Ordering::SeqCst);
                }
                Ok::<(), std::convert::Infallible>(())
            });
        let conn = match tokio::time::timeout(
            self.config.connect_timeout,
            self.client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        {
            Ok(conn) => conn?,
            Err(_) => {
                return Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect timed out after {:?}", self.config.connect_timeout),
                )));
            }
        };
        Ok(Live {
            conn,
            generation: self.generation.fetch_add(1, Ordering::SeqCst) + 1,
            alive,
        })
    }
}

/// Commands that only read, and so can be re-sent after a connection failure.
fn is_read_command(name: &[u8]) -> bool {
    const READS: &[&str] = &[
        "GET",
        "MGET",
        "EXISTS",
        "TYPE",
        "TTL",
        "PTTL",
        "STRLEN",
        "HGET",
        "HGETALL",
        "HMGET",
        "HEXISTS",
        "HLEN",
        "HKEYS",
        "HVALS",
        "HSCAN",
        "SMEMBERS",
        "SISMEMBER",
        "SMISMEMBER",
        "SCARD",
        "SSCAN",
        "ZRANGE",
        "ZRANGEBYSCORE",
        "ZREVRANGE",
        "ZREVRANGEBYSCORE",
        "ZCARD",
        "ZCOUNT",
        "ZSCORE",
        "ZRANK",
        "ZREVRANK",
        "ZSCAN",
        "LRANGE",
        "LLEN",
        "LINDEX",
        "XRANGE",
        "XREVRANGE",
        "XLEN",
        "XPENDING",
        "XINFO",
        "PING",
        "ECHO",
        "INFO",
        "DBSIZE",
        "KEYS",
        "SCAN",
        "TIME",
        "SCRIPT",
    ];
    READS.iter().any(|r| r.as_bytes().eq_ignore_ascii_case(name))
}

fn command_name(cmd: &Cmd) -> &[u8] {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => name,
        _ => b"",
    }
}

impl ConnectionLike for Store {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let read_only = is_read_command(command_name(cmd));
            self.run(read_only, |mut conn| {
                Box::pin(async move { conn.req_packed_command(cmd).await })
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
            self.run(read_only, |mut conn| {
                Box::pin(async move { conn.req_packed_commands(pipeline, offset, count).await })
            })
            .await
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.db
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

    #[test]
    fn reads_are_told_from_writes() {
        assert!(is_read_command(b"hgetall"));
        assert!(is_read_command(b"ZRANGE"));
        for w in [
            "EVALSHA",
            "HSET",
            "XADD",
            "RPUSH",
            "DEL",
            "XACK",
            "XREADGROUP",
            "XAUTOCLAIM",
            "MULTI",
        ] {
            assert!(!is_read_command(w.as_bytes()), "{w}");
        }
    }
}
