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
    /// Starts and creates the cluster, with a node timeout of 2 s (failovers
    /// in about 3 s); panics (it is a test kit) if it cannot.
    pub fn start(masters: usize, replicas: usize) -> Self {
        RedisCluster::start_with(masters, replicas, Duration::from_secs(2), true)
    }

    /// [`start`](Self::start) with Redis's default `cluster-node-timeout`
    /// (15 s): a killed primary is replaced as it would be in production.
    pub fn start_with_default_node_timeout(masters: usize, replicas: usize) -> Self {
        RedisCluster::start_with(masters, replicas, Duration::from_secs(15), true)
    }

    /// A cluster returned as soon as `redis-cli --cluster create` has
    /// finished, before every node reports `cluster_state:ok`: a client's
    /// first commands meet a cluster that is still converging.
    pub fn start_unsettled(masters: usize) -> Self {
        RedisCluster::start_with(masters, 0, Duration::from_secs(2), false)
    }

    fn start_with(masters: usize, replicas: usize, node_timeout: Duration, wait_ready: bool) -> Self {
        let node_timeout = node_timeout.as_millis().to_string();
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            node_timeout.as_str(),
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
        if !wait_ready {
            return cluster;
        }
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

    /// The slot of `key`, as the cluster computes it.
    pub fn slot_of(&self, key: &str) -> u16 {
        let mut c = self.sync_conn(0);
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut c)
            .expect("CLUSTER KEYSLOT")
    }

    /// The index (in [`nodes`](Self::nodes)) of the primary that serves
    /// `slot`, as node 0's `CLUSTER SLOTS` says.
    pub fn owner_of(&self, slot: u16) -> usize {
        let mut c = self.sync_conn(0);
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).expect("CLUSTER SLOTS");
        for range in ranges {
            let redis::Value::Array(items) = range else { continue };
            let (Some(redis::Value::Int(first)), Some(redis::Value::Int(last)), Some(redis::Value::Array(primary))) =
                (items.first(), items.get(1), items.get(2))
            else {
                continue;
            };
            if (*first..=*last).contains(&i64::from(slot))
                && let Some(redis::Value::Int(port)) = primary.get(1)
            {
                return self
                    .nodes
                    .iter()
                    .position(|n| i64::from(n.port()) == *port)
                    .expect("a node of the cluster");
            }
        }
        panic!("no primary serves slot {slot}");
    }

    /// The node's id (`CLUSTER MYID`).
    pub fn node_id(&self, i: usize) -> String {
        let mut c = self.sync_conn(i);
        redis::cmd("CLUSTER").arg("MYID").query(&mut c).expect("CLUSTER MYID")
    }

    fn sync_conn(&self, i: usize) -> redis::Connection {
        self.nodes[i]
            .client()
            .get_connection()
            .expect("a connection to a cluster node")
    }

    /// Opens a migration of `slot` from its primary to primary `to`, as
    /// `redis-cli --cluster reshard` does, and moves `keys` (keys of that
    /// slot) there: the slot stays `MIGRATING` on its owner and `IMPORTING`
    /// on `to`, so the owner answers `ASK` for the keys that left. Returns
    /// the owner's index.
    pub fn open_migration(&self, slot: u16, to: usize, keys: &[&str]) -> usize {
        let from = self.owner_of(slot);
        assert_ne!(from, to, "slot {slot} is already served by node {to}");
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&from_id)
            .query(&mut self.sync_conn(to))
            .expect("SETSLOT IMPORTING");
        let () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&to_id)
            .query(&mut self.sync_conn(from))
            .expect("SETSLOT MIGRATING");
        self.migrate_keys(from, to, keys);
        from
    }

    fn migrate_keys(&self, from: usize, to: usize, keys: &[&str]) {
        if keys.is_empty() {
            return;
        }
        let _: redis::Value = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(self.nodes[to].port())
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(keys)
            .query(&mut self.sync_conn(from))
            .expect("MIGRATE");
    }

    /// Finishes a migration that [`open_migration`](Self::open_migration)
    /// opened: moves the slot's remaining keys and gives the slot to `to` on
    /// every primary.
    pub fn finish_migration(&self, slot: u16, from: usize, to: usize) {
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query(&mut self.sync_conn(from))
                .expect("GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            self.migrate_keys(from, to, &keys);
        }
        let to_id = self.node_id(to);
        // The new owner first, then the old one, then the others.
        let mut order = vec![to, from];
        order.extend((0..self.masters).filter(|i| *i != to && *i != from));
        for i in order {
            let () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&to_id)
                .query(&mut self.sync_conn(i))
                .expect("SETSLOT NODE");
        }
    }

    /// Moves `slot` with all its keys to primary `to`, behind the back of
    /// every client (a live reshard of one slot).
    pub fn move_slot(&self, slot: u16, to: usize) {
        let from = self.open_migration(slot, to, &[]);
        self.finish_migration(slot, from, to);
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
