//! How one call of a [`Store`](super::Store) runs: within the config's
//! call bound, over as many connection attempts as its backoff allows,
//! reads re-sent and writes never re-sent blindly; and the store as a
//! redis-rs [`ConnectionLike`].

use std::sync::atomic::Ordering;

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::Store;
use super::backend::{Client, Conn};
use super::classify::{Replies, command_name, is_connection_failure, is_read_command, not_run};
use super::config;
use super::connection::InFlight;
use super::signal::StoreSignal;
use crate::error::Error;

impl Store {
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
