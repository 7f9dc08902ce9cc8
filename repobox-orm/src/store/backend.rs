//! The two kinds of connection behind a [`Store`](super::Store): one
//! multiplexed connection to a server, or (with the `cluster` feature) a
//! redis-rs cluster connection that routes each command to its slot's
//! primary, with what the store adds on a cluster in `split`, `redirect`
//! and `scan`.

use redis::aio::{ConnectionLike, MultiplexedConnection};
#[cfg(feature = "cluster")]
use redis::cluster::ClusterClient;
#[cfg(feature = "cluster")]
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisResult, Value};

#[cfg(feature = "cluster")]
use std::sync::Arc;

#[cfg(feature = "cluster")]
use super::classify::{command_name, is_read_command};
#[cfg(feature = "cluster")]
use super::redirect::{Redirect, follow, follow_command};
#[cfg(feature = "cluster")]
use super::scan::{SCANS_EVERY_PRIMARY, is_scan_probe};
#[cfg(feature = "cluster")]
use super::slot::slot_of;
#[cfg(feature = "cluster")]
use super::split::{Owners, is_scan, split_by_node, split_by_slot, transaction_across_slots};

/// The client a store connects with.
#[derive(Clone)]
#[cfg_attr(
    feature = "cluster",
    expect(clippy::large_enum_variant, reason = "one per store, behind its Arc")
)]
pub(super) enum Client {
    Single(redis::Client),
    #[cfg(feature = "cluster")]
    Cluster(ClusterClient),
}

/// A live connection of either kind; cheap to clone.
#[derive(Clone)]
pub(super) enum Conn {
    Single(MultiplexedConnection),
    /// The cluster connection and the store's own view of which primary
    /// serves which slot (for read pipelines grouped per node).
    #[cfg(feature = "cluster")]
    Cluster(ClusterConnection, Arc<Owners>),
}

impl Conn {
    /// Whether this is a cluster connection.
    pub fn is_cluster(&self) -> bool {
        match self {
            Conn::Single(_) => false,
            #[cfg(feature = "cluster")]
            Conn::Cluster(..) => true,
        }
    }

    /// Sends one command; on a cluster a redirect is followed (see [`follow_command`]).
    pub async fn command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd).await,
            #[cfg(feature = "cluster")]
            Conn::Cluster(c, _) => {
                if is_scan(cmd) {
                    return super::scan::cluster_scan(c, cmd).await;
                }
                if is_scan_probe(cmd) {
                    return Ok(Value::BulkString(SCANS_EVERY_PRIMARY.to_vec()));
                }
                match c.req_packed_command(cmd).await {
                    Err(e) => match Redirect::of(&e) {
                        Some(to) => follow_command(c, cmd, to).await,
                        None => Err(e),
                    },
                    ok => ok,
                }
            }
        }
    }

    /// Sends a pipeline; on a cluster, one pipeline per slot, concurrently.
    pub async fn pipeline(&mut self, pipeline: &Pipeline, offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count).await,
            #[cfg(feature = "cluster")]
            Conn::Cluster(c, owners) => {
                if pipeline.is_transaction() {
                    // MULTI/EXEC is atomic only within one slot.
                    let mut slots = pipeline.cmd_iter().filter_map(slot_of);
                    if let Some(first) = slots.next()
                        && let Some(other) = slots.find(|s| *s != first)
                    {
                        return Err(transaction_across_slots((first, other)));
                    }
                    return match c.req_packed_commands(pipeline, offset, count).await {
                        Err(e) => match Redirect::of(&e) {
                            Some(to) => follow(c, pipeline, offset, count, to).await,
                            None => Err(e),
                        },
                        ok => ok,
                    };
                }
                if pipeline.cmd_iter().all(|cmd| is_read_command(command_name(cmd))) {
                    return split_by_node(c, owners, pipeline).await;
                }
                split_by_slot(c, pipeline).await
            }
        }
    }
}
