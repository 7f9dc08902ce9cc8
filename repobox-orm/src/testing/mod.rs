//! The test kit: a real `redis-server` child process on a free loopback port.
//!
//! Every test (or test binary) starts its own server, so tests never depend
//! on, or disturb, a server that happens to run on 6379. The server keeps
//! nothing on disk unless asked to, and is killed when the handle drops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod alloc;
mod cluster;
mod tls;

/// Injected faults: the engine's hook that stops an ordered write after one
/// of its steps, as a crash of the writer would.
pub mod faults {
    pub use crate::engine::write::faults::{OrderedStep, fail_after};
}

pub use alloc::PeakAlloc;
pub use cluster::RedisCluster;
pub use tls::TlsFiles;

/// Runs each named test twice, as one parameterised suite: once on a
/// single server of its own, once on a 3-primary [`RedisCluster`] of its
/// own. Each name is an `async fn name(conn: Store)` in scope; the macro
/// makes a module `name` with the tests `standalone` and `cluster`.
///
/// `multi_thread:` before the names runs them on a 2-thread runtime.
///
/// ```ignore
/// async fn crud(mut conn: Store) { /* ... */ }
/// repobox_orm::on_both_backends!(crud);
/// repobox_orm::on_both_backends!(multi_thread: runners_share_work);
/// ```
#[macro_export]
macro_rules! on_both_backends {
    (multi_thread: $($name:ident),* $(,)?) => {
        $crate::on_both_backends!(@each (flavor = "multi_thread", worker_threads = 2) $($name),*);
    };
    ($($name:ident),* $(,)?) => {
        $crate::on_both_backends!(@each () $($name),*);
    };
    (@each $flavor:tt $($name:ident),*) => {$(
        mod $name {
            #[tokio::test $flavor]
            async fn standalone() {
                let server = $crate::testing::RedisServer::start();
                super::$name($crate::Store::open(server.url()).unwrap()).await;
            }

            #[tokio::test $flavor]
            async fn cluster() {
                let cluster = $crate::testing::RedisCluster::start(3, 0);
                super::$name(cluster.store()).await;
            }
        }
    )*};
}

/// A running `redis-server` owned by the test.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    tls_port: Option<u16>,
    child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
}

/// Why the test kit could not start a server.
#[derive(Debug, thiserror::Error)]
pub enum TestKitError {
    /// `redis-server` is not installed.
    #[error(
        "`redis-server` was not found on PATH; install it (Debian/Ubuntu: `apt-get install redis-server`, \
         macOS: `brew install redis`) to run repobox's tests"
    )]
    NotInstalled,
    /// The server did not come up.
    #[error("redis-server did not start: {0}")]
    Start(String),
}

impl RedisServer {
    /// Starts a server with no persistence on a free port and waits until it answers.
    ///
    /// Panics with the install hint when `redis-server` is missing: it is a test kit.
    pub fn start() -> Self {
        Self::try_start(&[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a server with extra `redis-server` arguments (`["--appendonly", "yes"]`).
    pub fn start_with(args: &[&str]) -> Self {
        Self::try_start(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a server on `port` (for tests that need a server to appear where a
    /// client already points).
    pub fn start_on(port: u16, args: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("repobox-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let mut server = RedisServer {
            port,
            tls_port: None,
            child: None,
            dir,
            extra: args.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn().unwrap_or_else(|e| panic!("{e}"));
        server
    }

    /// Starts a server that also speaks TLS on a port of its own, with the
    /// certificates in `tls`; `require_client_certs` makes it refuse clients
    /// without a certificate signed by the CA (mutual TLS). The plain port
    /// stays, for the kit's own readiness check and for admin connections.
    pub fn start_tls(tls: &TlsFiles, require_client_certs: bool) -> Self {
        let tls_port = free_port().expect("a free loopback port");
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        let args = [
            "--tls-port".to_owned(),
            tls_port.to_string(),
            "--tls-cert-file".to_owned(),
            path(&tls.server_cert),
            "--tls-key-file".to_owned(),
            path(&tls.server_key),
            "--tls-ca-cert-file".to_owned(),
            path(&tls.ca_cert),
            "--tls-auth-clients".to_owned(),
            (if require_client_certs { "yes" } else { "optional" }).to_owned(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut server = Self::start_with(&args);
        server.tls_port = Some(tls_port);
        server
    }

    /// A loopback port that nothing listens on right now.
    pub fn free_port() -> u16 {
        free_port().expect("a free loopback port")
    }

    /// Starts a server, reporting failures as errors.
    pub fn try_start(args: &[&str]) -> Result<Self, TestKitError> {
        let mut last = None;
        // A free port can be taken by someone else between our probe and the
        // server's bind; try a few.
        for _ in 0..5 {
            let port = free_port().map_err(|e| TestKitError::Start(e.to_string()))?;
            let dir = std::env::temp_dir().join(format!("repobox-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| TestKitError::Start(e.to_string()))?;
            let mut server = RedisServer {
                port,
                tls_port: None,
                child: None,
                dir,
                extra: args.iter().map(|s| s.to_string()).collect(),
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e @ TestKitError::NotInstalled) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(TestKitError::Start("no free port".into())))
    }

    fn spawn(&mut self) -> Result<(), TestKitError> {
        let port = self.port.to_string();
        let dir = self.dir.to_string_lossy().into_owned();
        let mut args: Vec<&str> = vec![
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir,
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            "",
        ];
        args.extend(self.extra.iter().map(String::as_str));
        let mut child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => TestKitError::NotInstalled,
                _ => TestKitError::Start(e.to_string()),
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().map_err(|e| TestKitError::Start(e.to_string()))? {
                let mut out = String::new();
                if let Some(mut s) = child.stdout.take() {
                    let _ = s.read_to_string(&mut out);
                }
                return Err(TestKitError::Start(format!("exited with {status}: {}", out.trim())));
            }
            if ping(self.addr()) {
                self.child = Some(child);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(TestKitError::Start("no answer to PING within 10 s".into()))
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// `rediss://127.0.0.1:<tls port>/` of a [`start_tls`](Self::start_tls) server.
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("a server started with start_tls");
        format!("rediss://127.0.0.1:{port}/")
    }

    /// A redis-rs client for the server.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("valid test-kit url")
    }

    /// A new multiplexed connection to the server.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.client()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test-kit redis-server")
    }

    /// Kills the server with SIGKILL (as a crash would) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same arguments and directory.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// The server's working directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && (line.starts_with("+PONG") || line.starts_with("-NOAUTH"))
}

/// A connection wrapper that counts round trips (a command or a pipeline is one).
///
/// ```no_run
/// # async fn f(conn: redis::aio::MultiplexedConnection) {
/// let mut conn = repobox_orm::testing::CountingConnection::new(conn);
/// // ... calls ...
/// assert_eq!(conn.round_trips(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct CountingConnection<C> {
    inner: C,
    round_trips: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

// SAFETY: a `CountingConnection<C>` holds a `C` and an `Arc` of an atomic:
// it has no lifetime of its own, so it is `'static` whenever `C` is.
unsafe impl<C: castaway::LifetimeFree> castaway::LifetimeFree for CountingConnection<C> {}

impl<C> CountingConnection<C> {
    /// Wraps `inner`.
    pub fn new(inner: C) -> Self {
        CountingConnection {
            inner,
            round_trips: Default::default(),
        }
    }

    /// The wrapped connection.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// The wrapped connection, to send commands that are not counted.
    pub fn inner_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// Round trips so far.
    pub fn round_trips(&self) -> usize {
        self.round_trips.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Round trips so far, and starts counting from zero.
    pub fn take(&self) -> usize {
        self.round_trips.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

impl<C: redis::aio::ConnectionLike + Send> redis::aio::ConnectionLike for CountingConnection<C> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        self.round_trips.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.round_trips.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}
