//! The one redis-server every side runs against, and its INFO readings.

use std::future::Future;
use std::time::Instant;

use redis::aio::MultiplexedConnection;
use repobox_orm::testing::RedisServer;

use crate::model::{BoxError, Measured};

/// The server's counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    /// `used_cpu_sys + used_cpu_user`, in seconds.
    cpu: f64,
    /// `total_commands_processed`.
    commands: u64,
}

/// A redis-server of our own with a connection kept for INFO.
pub struct Server {
    redis: RedisServer,
    probe: MultiplexedConnection,
    /// Commands that a before/after pair of snapshots adds by itself.
    info_overhead: u64,
}

impl Server {
    /// Starts a server on a free loopback port and measures what a snapshot costs.
    pub async fn start() -> Result<Server, BoxError> {
        let redis = RedisServer::try_start(&[])?;
        let probe = redis.client().get_multiplexed_async_connection().await?;
        let mut server = Server {
            redis,
            probe,
            info_overhead: 0,
        };
        let a = server.snapshot().await?;
        let b = server.snapshot().await?;
        server.info_overhead = b.commands - a.commands;
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        self.redis.url()
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.redis.port()
    }

    /// The server's version, from `INFO server`.
    pub async fn version(&self) -> Result<String, BoxError> {
        let text = self.info("server").await?;
        Ok(field(&text, "redis_version").unwrap_or("?").to_owned())
    }

    /// Empties every database (between runs).
    pub async fn flushall(&self) -> Result<(), BoxError> {
        let () = redis::cmd("FLUSHALL").query_async(&mut self.probe.clone()).await?;
        Ok(())
    }

    /// A connection of its own, for a side's untimed checks.
    pub async fn connection(&self) -> Result<MultiplexedConnection, BoxError> {
        Ok(self.redis.client().get_multiplexed_async_connection().await?)
    }

    /// Reads one INFO section.
    async fn info(&self, section: &str) -> Result<String, BoxError> {
        Ok(redis::cmd("INFO")
            .arg(section)
            .query_async(&mut self.probe.clone())
            .await?)
    }

    /// The server's CPU time and command count now (two INFO calls).
    pub async fn snapshot(&self) -> Result<Snapshot, BoxError> {
        let cpu = self.info("cpu").await?;
        let stats = self.info("stats").await?;
        let num = |text: &str, name: &str| -> Result<f64, BoxError> {
            Ok(field(text, name)
                .ok_or_else(|| format!("INFO has no {name}"))?
                .parse()?)
        };
        Ok(Snapshot {
            cpu: num(&cpu, "used_cpu_sys")? + num(&cpu, "used_cpu_user")?,
            commands: num(&stats, "total_commands_processed")? as u64,
        })
    }

    /// Times `section` (which handles `jobs` jobs) between two snapshots.
    pub async fn measure<F>(&self, jobs: usize, section: F) -> Result<Measured, BoxError>
    where
        F: Future<Output = Result<(), BoxError>>,
    {
        let before = self.snapshot().await?;
        let start = Instant::now();
        section.await?;
        let took = start.elapsed();
        let after = self.snapshot().await?;
        let cpu_us = ((after.cpu - before.cpu) * 1e6).round();
        let commands = after.commands.saturating_sub(before.commands + self.info_overhead);
        Ok(Measured::new(jobs, took, cpu_us, commands as f64))
    }
}

/// The value of `name:` in an INFO reply.
fn field<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':').map(str::trim))
}
