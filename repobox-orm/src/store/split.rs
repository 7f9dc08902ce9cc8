//! What a [`Store`](super::Store) adds on a Redis Cluster to what redis-rs
//! leaves to the caller (the `cluster` feature): a pipeline whose commands
//! fall in several slots is split (a read one part per primary, a write one
//! part per slot), the parts sent concurrently and the replies put back in
//! order (a command whose own keys are in several slots goes to its first
//! key's node, which answers it `CROSSSLOT`; the engine routes its writes
//! before sending, so it sends none); a transaction across slots is refused
//! unsent, since `MULTI`/`EXEC` cannot be atomic there; redirects are
//! followed (see `redirect`); and `SCAN` walks every primary (see `scan`).

use std::sync::{Arc, RwLock};

use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::SingleNodeRoutingInfo;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisResult, Value};

use super::backend::Conn;
use super::classify::{command_name, is_read_command};
use super::redirect::{Redirect, follow};
use super::signal::StoreSignal;
use super::slot::{group_by_slot, slot_of};

/// Which primary serves which slot, as `CLUSTER SLOTS` last said; learned
/// on the first read pipeline across slots, forgotten on a redirect.
#[derive(Default)]
pub(super) struct Owners(RwLock<Option<Arc<SlotMap>>>);

/// Slot ranges and their primary: `(first, last, host, port)`.
pub(super) type SlotMap = Vec<(u16, u16, String, u16)>;

impl Owners {
    async fn get(&self, conn: &mut ClusterConnection) -> RedisResult<Arc<SlotMap>> {
        if let Some(map) = self.0.read().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(map);
        }
        let map = Arc::new(super::scan::slot_ranges(conn).await?);
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(map.clone());
        Ok(map)
    }

    fn forget(&self) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).take();
    }
}

fn owner(map: &[(u16, u16, String, u16)], slot: u16) -> Option<(&str, u16)> {
    map.iter()
        .find(|(first, last, _, _)| (*first..=*last).contains(&slot))
        .map(|(_, _, host, port)| (host.as_str(), *port))
}

/// The store's own refusal of a transaction whose keys are in different
/// slots: nothing was sent. A client error, not a made-up server answer.
pub(super) fn transaction_across_slots(slots: (u16, u16)) -> RedisError {
    RedisError::from((
        ErrorKind::Client,
        "store",
        format!(
            "a transaction's keys are in slots {} and {}: MULTI/EXEC is atomic only within one slot, so the store did not send it",
            slots.0, slots.1
        ),
    ))
}

pub(super) fn is_scan(cmd: &Cmd) -> bool {
    matches!(cmd.args_iter().next(), Some(redis::Arg::Simple(name)) if name.eq_ignore_ascii_case(b"SCAN"))
}

/// How often one slot's part of a split pipeline is sent again after the
/// cluster said it did not run it.
const GROUP_RETRIES: u32 = 5;

/// Sends one slot's part of a split pipeline. A `MOVED` applies to every
/// command of the part (they share the slot, and the node does not serve it)
/// and means none of them ran: the part alone goes to the node named, and
/// the slot map is refreshed. A slot in flux (`TRYAGAIN`, `CLUSTERDOWN`,
/// `MASTERDOWN`) also means nothing ran: the part alone goes again after a
/// pause. Resending the whole pipeline instead would run the other slots'
/// parts, which did run, a second time.
///
/// An `ASK` (the slot is migrating and a key has left) answers only the
/// commands whose keys are gone; the others ran. A part of one command goes
/// to the importing node with `ASKING`; a write part of several is reported
/// as [`WriteOutcomeUnknown`](crate::Error::WriteOutcomeUnknown) (redis-rs
/// hands back only the redirect, not which commands ran); a read part is
/// sent again command by command, each following its own redirect.
async fn send_group(conn: &mut ClusterConnection, part: &Pipeline, n: usize) -> RedisResult<Vec<Value>> {
    use redis::ServerErrorKind::{ClusterDown, MasterDown, TryAgain};
    let mut attempt = 0;
    loop {
        let err = match conn.req_packed_commands(part, 0, n).await {
            Err(e) => e,
            ok => return ok,
        };
        match Redirect::of(&err) {
            // Every command of the part was answered MOVED, or the part is
            // one command: none of it ran.
            Some(to) if !to.ask || n == 1 => return follow(conn, part, 0, n, to).await,
            Some(_) if part.cmd_iter().all(|c| is_read_command(command_name(c))) => {
                let mut replies = Vec::with_capacity(n);
                for cmd in part.cmd_iter() {
                    replies.push(Conn::Cluster(conn.clone(), Default::default()).command(cmd).await?);
                }
                return Ok(replies);
            }
            Some(_) => {
                return Err(StoreSignal::WriteOutcomeUnknown(format!(
                    "a slot was migrating and some of {n} pipelined writes were redirected ({err})"
                ))
                .into());
            }
            None => {}
        }
        if attempt < GROUP_RETRIES && matches!(err.kind(), ErrorKind::Server(TryAgain | ClusterDown | MasterDown)) {
            attempt += 1;
            tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(attempt))).await;
            continue;
        }
        return Err(err);
    }
}

pub(super) async fn split_by_slot(conn: &mut ClusterConnection, pipeline: &Pipeline) -> RedisResult<Vec<Value>> {
    let cmds: Vec<&Cmd> = pipeline.cmd_iter().collect();
    let mut ordered: Vec<Option<Value>> = vec![None; cmds.len()];
    let groups = group_by_slot(cmds.iter().copied());
    if groups.len() <= 1 {
        return send_group(conn, pipeline, cmds.len()).await;
    }
    let sends = groups.iter().map(|members| {
        let mut part = redis::pipe();
        for &i in members {
            part.add_command(cmds[i].clone());
        }
        let mut conn = conn.clone();
        async move { send_group(&mut conn, &part, members.len()).await }
    });
    let replies = futures_util::future::try_join_all(sends).await?;
    for (members, values) in groups.iter().zip(replies) {
        for (&i, value) in members.iter().zip(values) {
            ordered[i] = Some(value);
        }
    }
    in_order(ordered)
}

/// A read pipeline across slots, one part per primary (not per slot): a page
/// of 50 entities spread over 50 slots is three requests on three primaries,
/// not fifty. Reads only: a primary that answers one command `MOVED` (its
/// slot moved) may have run the others, which a read may run again but a
/// write may not; on a redirect the store forgets its slot map and the whole
/// read is sent again.
pub(super) async fn split_by_node(
    conn: &mut ClusterConnection,
    owners: &Owners,
    pipeline: &Pipeline,
) -> RedisResult<Vec<Value>> {
    let cmds: Vec<&Cmd> = pipeline.cmd_iter().collect();
    if group_by_slot(cmds.iter().copied()).len() <= 1 {
        return split_by_slot(conn, pipeline).await;
    }
    let map = owners.get(conn).await?;
    let first = cmds.iter().find_map(|c| slot_of(c));
    let mut groups: Vec<((&str, u16), Vec<usize>)> = Vec::new();
    for (i, cmd) in cmds.iter().enumerate() {
        let Some(node) = slot_of(cmd).or(first).and_then(|slot| owner(&map, slot)) else {
            // A slot no primary serves (the cluster is changing): per slot.
            return split_by_slot(conn, pipeline).await;
        };
        match groups.iter_mut().find(|(n, _)| *n == node) {
            Some((_, members)) => members.push(i),
            None => groups.push((node, vec![i])),
        }
    }
    let sends = groups.iter().map(|((host, port), members)| {
        let mut part = redis::pipe();
        for &i in members {
            part.add_command(cmds[i].clone());
        }
        let route = SingleNodeRoutingInfo::ByAddress {
            host: (*host).to_owned(),
            port: *port,
        };
        let mut conn = conn.clone();
        async move { conn.route_pipeline(part, 0, members.len(), route).await }
    });
    let replies = match futures_util::future::try_join_all(sends).await {
        Ok(replies) => replies,
        // A slot moved or is migrating: per slot, each part following its
        // redirect (reads may run again).
        Err(e) if Redirect::of(&e).is_some() => {
            owners.forget();
            return split_by_slot(conn, pipeline).await;
        }
        Err(e) => {
            if e.is_io_error() {
                owners.forget();
            }
            return Err(e);
        }
    };
    if replies
        .iter()
        .flatten()
        .any(|v| matches!(v, Value::ServerError(e) if e.kind() == Some(redis::ServerErrorKind::Moved)))
    {
        owners.forget();
    }
    let mut ordered: Vec<Option<Value>> = vec![None; cmds.len()];
    for ((_, members), values) in groups.iter().zip(replies) {
        for (&i, value) in members.iter().zip(values) {
            ordered[i] = Some(value);
        }
    }
    in_order(ordered)
}

/// The replies of a split pipeline, every command's in its place.
fn in_order(replies: Vec<Option<Value>>) -> RedisResult<Vec<Value>> {
    replies
        .into_iter()
        .map(|v| {
            v.ok_or_else(|| {
                RedisError::from((ErrorKind::Client, "store", "a pipeline command got no reply".to_owned()))
            })
        })
        .collect()
}
