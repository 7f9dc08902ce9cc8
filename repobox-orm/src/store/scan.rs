//! `SCAN` over a whole cluster: the store walks every primary in turn, and
//! the cursor it hands back says which primary and where on it.
//!
//! The cursor is `(node cursor << 8) | primary index`, over the primaries
//! sorted by address, so `0` starts and ends a walk as on one server. Every
//! key that stays on one primary for the whole walk is returned, as `SCAN`
//! promises; a failover or resharding during the walk may skip or repeat the
//! keys of the slots that moved.

use redis::Value;
use redis::aio::ConnectionLike;
#[cfg(feature = "cluster")]
use redis::cluster_async::ClusterConnection;
#[cfg(feature = "cluster")]
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
#[cfg(feature = "cluster")]
use redis::{Cmd, ErrorKind, RedisError, RedisResult};

#[cfg(feature = "cluster")]
/// The bits of the cursor that name the primary.
const NODE_BITS: u32 = 8;

#[cfg(feature = "cluster")]
fn client_error(detail: String) -> RedisError {
    RedisError::from((ErrorKind::Client, "cluster scan", detail))
}

#[cfg(feature = "cluster")]
/// Each slot range's primary, from `CLUSTER SLOTS`: `(first, last, host, port)`.
pub(super) async fn slot_ranges(conn: &mut ClusterConnection) -> RedisResult<Vec<(u16, u16, String, u16)>> {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("SLOTS");
    let reply = conn.req_packed_command(&cmd).await?;
    let Value::Array(ranges) = reply else {
        return Err(client_error(format!("CLUSTER SLOTS answered {reply:?}")));
    };
    let mut out = Vec::new();
    for range in ranges {
        let Value::Array(items) = range else { continue };
        let slot = |i: usize| match items.get(i) {
            Some(Value::Int(n)) => u16::try_from(*n).ok(),
            _ => None,
        };
        let (Some(first), Some(last)) = (slot(0), slot(1)) else {
            continue;
        };
        let Some(Value::Array(primary)) = items.get(2) else {
            continue;
        };
        let host = match primary.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            _ => continue,
        };
        let Some(Value::Int(port)) = primary.get(1) else {
            continue;
        };
        let Ok(port) = u16::try_from(*port) else { continue };
        out.push((first, last, host, port));
    }
    Ok(out)
}

#[cfg(feature = "cluster")]
/// The primaries' addresses, sorted.
async fn primaries(conn: &mut ClusterConnection) -> RedisResult<Vec<(String, u16)>> {
    let mut nodes: Vec<(String, u16)> = slot_ranges(conn)
        .await?
        .into_iter()
        .map(|(_, _, host, port)| (host, port))
        .collect();
    nodes.sort();
    nodes.dedup();
    if nodes.is_empty() || nodes.len() > 1 << NODE_BITS {
        return Err(client_error(format!("{} primaries", nodes.len())));
    }
    Ok(nodes)
}

#[cfg(feature = "cluster")]
/// Runs one `SCAN <cursor> [options]` step of a walk over every primary.
pub(super) async fn cluster_scan(conn: &mut ClusterConnection, cmd: &Cmd) -> RedisResult<Value> {
    let args: Vec<Vec<u8>> = cmd
        .args_iter()
        .filter_map(|a| match a {
            redis::Arg::Simple(b) => Some(b.to_vec()),
            _ => None,
        })
        .collect();
    let cursor: u64 = args
        .get(1)
        .and_then(|c| std::str::from_utf8(c).ok()?.parse().ok())
        .ok_or_else(|| client_error("SCAN needs a numeric cursor".into()))?;
    let nodes = primaries(conn).await?;
    let mut node = usize::try_from(cursor & ((1 << NODE_BITS) - 1)).unwrap_or(usize::MAX);
    let mut at = cursor >> NODE_BITS;
    loop {
        let Some((host, port)) = nodes.get(node) else {
            // The walk's primary is gone (fewer primaries now): it ends here.
            return Ok(reply(0, Vec::new()));
        };
        let mut step = redis::cmd("SCAN");
        step.arg(at).arg(&args[2..]);
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.clone(),
            port: *port,
        });
        let answer = conn.route_command(step, route).await?;
        let (next, keys) = match answer {
            Value::Array(mut parts) if parts.len() == 2 => {
                let keys = parts.pop().unwrap_or(Value::Nil);
                let next = match parts.pop() {
                    Some(Value::BulkString(b)) => std::str::from_utf8(&b).ok().and_then(|s| s.parse::<u64>().ok()),
                    Some(Value::SimpleString(s)) => s.parse().ok(),
                    Some(Value::Int(i)) => u64::try_from(i).ok(),
                    _ => None,
                };
                let keys = match keys {
                    Value::Array(keys) => keys,
                    _ => Vec::new(),
                };
                (
                    next.ok_or_else(|| client_error("SCAN answered no cursor".into()))?,
                    keys,
                )
            }
            other => return Err(client_error(format!("SCAN answered {other:?}"))),
        };
        if next >> (64 - NODE_BITS) != 0 {
            return Err(client_error(format!("node cursor {next} is too large to combine")));
        }
        if next != 0 {
            return Ok(reply((next << NODE_BITS) | index(node), keys));
        }
        node += 1;
        at = 0;
        if node == nodes.len() {
            return Ok(reply(0, keys));
        }
        if !keys.is_empty() {
            return Ok(reply(index(node), keys));
        }
    }
}

#[cfg(feature = "cluster")]
/// A primary's index as the cursor's low bits (fewer than `1 << NODE_BITS`
/// primaries, checked when the list is read).
fn index(node: usize) -> u64 {
    u64::try_from(node).unwrap_or(0)
}

#[cfg(feature = "cluster")]
fn reply(cursor: u64, keys: Vec<Value>) -> Value {
    Value::Array(vec![
        Value::BulkString(cursor.to_string().into_bytes()),
        Value::Array(keys),
    ])
}

/// What a store on a cluster answers to [`SCAN_PROBE`] (without sending it):
/// its `SCAN` walks every primary. A server, or another cluster client,
/// echoes the probe back instead.
pub(crate) const SCANS_EVERY_PRIMARY: &[u8] = b"repobox: SCAN walks every primary";

/// The `ECHO` argument that asks a connection whether its `SCAN` sees the
/// whole keyspace of a cluster.
pub(crate) const SCAN_PROBE: &[u8] = b"repobox: does SCAN walk every primary?";

#[cfg(feature = "cluster")]
pub(super) fn is_scan_probe(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter();
    matches!(args.next(), Some(redis::Arg::Simple(name)) if name.eq_ignore_ascii_case(b"ECHO"))
        && matches!(args.next(), Some(redis::Arg::Simple(arg)) if arg == SCAN_PROBE)
        && args.next().is_none()
}

/// Refuses a sweep that would see part of the keys: on a Redis Cluster, a
/// `SCAN` reaches one node unless the connection walks every primary, as a
/// [`Store`](crate::Store) does (it says so to [`SCAN_PROBE`] without a
/// round trip). Anything else on a cluster (redis-rs's own cluster
/// connection, a connection to one node) is `Err(InvalidArgument)` before
/// anything is read. One round trip on a single server (`INFO cluster`).
pub(crate) async fn ensure_whole_keyspace<C: ConnectionLike + Send>(conn: &mut C) -> crate::Result<()> {
    // One server's text, or (redis-rs's cluster client) a map of every node's.
    let info: Value = redis::cmd("INFO").arg("cluster").query_async(conn).await?;
    if !says_cluster_enabled(&info) {
        return Ok(());
    }
    let answer: Vec<u8> = redis::cmd("ECHO").arg(SCAN_PROBE).query_async(conn).await?;
    if answer == SCANS_EVERY_PRIMARY {
        return Ok(());
    }
    Err(crate::Error::InvalidArgument {
        name: "connection",
        reason: "this is a Redis Cluster and a SCAN on this connection reaches one node, so a sweep would \
                 see part of the keys: sweep through a repobox Store, whose SCAN walks every primary"
            .into(),
    })
}

fn says_cluster_enabled(info: &Value) -> bool {
    let text_says = |text: &str| text.lines().any(|l| l.trim() == "cluster_enabled:1");
    match info {
        Value::BulkString(text) => text_says(&String::from_utf8_lossy(text)),
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => text_says(text),
        Value::Map(pairs) => pairs.iter().any(|(_, v)| says_cluster_enabled(v)),
        Value::Array(items) => items.iter().any(says_cluster_enabled),
        _ => false,
    }
}
