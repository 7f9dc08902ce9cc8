//! A Redis Cluster fixture built from [`RedisServer`]s.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::RedisServer;

/// A Redis Cluster of real `redis-server` processes on free loopback ports:
/// `masters` primaries with `replicas` replicas each, created with
/// `redis-cli --cluster create` and ready (`cluster_state:ok` on every node)
/// when [`start`](Self::start) returns. Every process stops when it drops.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    masters: usize,
}

impl RedisCluster {
    /// Starts and creates the cluster; panics (it is a test kit) if it cannot.
    pub fn start(masters: usize, replicas: usize) -> Self {
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
            // Replicas sync at once (the default waits 5 s for more replicas).
            "--repl-diskless-sync-delay",
            "0",
        ];
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| RedisServer::start_with(&args))
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli --cluster create: {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes, masters };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster.nodes.iter().all(|n| cluster_ok(n.addr()) && synced(n.addr())) {
            assert!(
                Instant::now() < deadline,
                "the cluster did not become ready within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// One cluster of 3 primaries shared by every test of a test binary.
    ///
    /// A static is never dropped, so a reaper process (`sh`) watches the test
    /// binary and kills the nodes and removes their directories when it
    /// exits, however it exits: shared clusters leave no process behind.
    pub fn shared() -> &'static RedisCluster {
        static SHARED: std::sync::OnceLock<RedisCluster> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            let cluster = RedisCluster::start(3, 0);
            cluster.reap_on_exit();
            cluster
        })
    }

    #[expect(
        clippy::zombie_processes,
        reason = "the reaper outlives the test binary on purpose; init reaps it"
    )]
    fn reap_on_exit(&self) {
        let pids: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| n.pid())
            .map(|p| p.to_string())
            .collect();
        let dirs: Vec<String> = self.nodes.iter().map(|n| format!("'{}'", n.dir().display())).collect();
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.2; done; kill -9 {pids} 2>/dev/null; rm -rf {dirs}",
            me = std::process::id(),
            pids = pids.join(" "),
            dirs = dirs.join(" "),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the cluster reaper: {e}"));
    }

    /// Every node, primaries first as `redis-cli` assigned them.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// A node, to kill or restart it.
    pub fn node_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.nodes[i]
    }

    /// How many primaries the cluster was created with.
    pub fn masters(&self) -> usize {
        self.masters
    }

    /// `redis+cluster://127.0.0.1:<port>,...` over every node, for
    /// [`Store::open`](crate::Store::open) and `--redis-url`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())).collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// A [`Store`](crate::Store) on the cluster whose retries span a
    /// failover (the nodes' timeout is 2 s): up to 40 attempts, 100 ms apart
    /// and growing to 500 ms.
    pub fn store(&self) -> crate::Store {
        let backoff = crate::Backoff::default()
            .step(Duration::from_millis(100))
            .max(Duration::from_millis(500))
            .max_attempts(Some(40));
        crate::Store::with_config(self.url(), crate::StoreConfig::default().backoff(backoff))
            .expect("the cluster URL parses")
    }

    /// `redis://127.0.0.1:<port>/` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// Whether the node at `addr` is a primary or a replica whose link is up.
fn synced(addr: SocketAddr) -> bool {
    let info = ask(addr, b"INFO replication\r\n");
    info.contains("role:master") || info.contains("master_link_status:up")
}

/// Whether the node at `addr` says `cluster_state:ok`.
fn cluster_ok(addr: SocketAddr) -> bool {
    ask(addr, b"CLUSTER INFO\r\n").contains("cluster_state:ok")
}

/// The node's answer to one inline command, as text ("" when it fails).
fn ask(addr: SocketAddr, command: &[u8]) -> String {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(command).is_err() {
        return String::new();
    }
    let mut reply = vec![0u8; 8192];
    let n = stream.read(&mut reply).unwrap_or(0);
    String::from_utf8_lossy(&reply[..n]).into_owned()
}
