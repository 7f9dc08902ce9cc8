//! Trimming a stream without dropping what a consumer group still needs
//! (`trim.lua`, protocol in `scripts/trim.rs`).

use std::time::Duration;

use redis::aio::ConnectionLike;

use super::Queue;
use crate::engine::pipeline;
use crate::error::Result;
use crate::scripts::TRIM;
use crate::scripts::trim::Trim;

impl Queue {
    /// Trims the stream to about `max_len` entries, keeping every entry that a
    /// consumer group has not acknowledged or not yet read; returns how many went.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn trim<C: ConnectionLike + Send>(&self, conn: &mut C, max_len: u64) -> Result<u64> {
        self.run_trim(conn, Trim::MaxLen(max_len)).await
    }

    /// Removes the entries older than `age` (by Redis's clock, `XTRIM MINID`),
    /// never one that a consumer group has not acknowledged or not yet read;
    /// returns how many went.
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn trim_older_than<C: ConnectionLike + Send>(&self, conn: &mut C, age: Duration) -> Result<u64> {
        let age = u64::try_from(age.as_millis())
            .unwrap_or(u64::MAX)
            .min(i64::MAX.unsigned_abs());
        self.run_trim(conn, Trim::Age(age)).await
    }

    async fn run_trim<C: ConnectionLike + Send>(&self, conn: &mut C, trim: Trim) -> Result<u64> {
        let reply = pipeline::send_loading(
            conn,
            &TRIM,
            &trim.command(&self.stream),
            &mut pipeline::Reloads::default(),
        )
        .await?;
        Trim::parse(&self.stream, reply)
    }
}
