//! Following a Redis Cluster's redirects, which the store does itself
//! (redis-rs's own retries are off: they would re-send a write whose
//! connection dropped). A command, a transaction or one slot's part of a
//! pipeline that was answered `MOVED` or `ASK` did not run: it goes to the
//! node named, after `ASKING` for an `ASK` (before `MULTI` for a
//! transaction), and after a `MOVED` redis-rs is made to learn the new slot
//! map.

use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::SingleNodeRoutingInfo;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisResult, Value};

/// Where a cluster sent a command or a transaction that it did not run:
/// `MOVED` (the slot is served there now) or `ASK` (the slot is migrating
/// there and the key has left; the next command must be `ASKING`).
#[derive(Debug, Clone)]
pub(super) struct Redirect {
    host: String,
    port: u16,
    pub(super) ask: bool,
}

/// How many redirects one command or transaction follows.
const REDIRECTS: u32 = 5;

impl Redirect {
    /// The redirect an error carries: a command's `MOVED`/`ASK`, or a
    /// transaction aborted (`EXECABORT`) because a command was redirected.
    pub(super) fn of(err: &RedisError) -> Option<Redirect> {
        use redis::ServerErrorKind::{Ask, ExecAbort, Moved};
        let (detail, ask) = match err.kind() {
            ErrorKind::Server(Moved) => (err.detail()?.to_owned(), false),
            ErrorKind::Server(Ask) => (err.detail()?.to_owned(), true),
            ErrorKind::Server(ExecAbort) => {
                let errors = err.clone().into_server_errors()?;
                let (_, inner) = errors.iter().find(|(_, e)| matches!(e.kind(), Some(Moved | Ask)))?;
                (inner.details()?.to_owned(), inner.kind() == Some(Ask))
            }
            _ => return None,
        };
        // "<slot> <host>:<port>"
        let addr = detail.split_ascii_whitespace().nth(1)?;
        let (host, port) = addr.rsplit_once(':')?;
        Some(Redirect {
            host: host.to_owned(),
            port: port.parse().ok()?,
            ask,
        })
    }

    fn route(&self) -> SingleNodeRoutingInfo {
        SingleNodeRoutingInfo::ByAddress {
            host: self.host.clone(),
            port: self.port,
        }
    }

    /// Sends `pipeline` (its replies `offset..offset + count`) to this node,
    /// after `ASKING` when it is an `ASK`.
    async fn send_pipeline(
        &self,
        conn: &mut ClusterConnection,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        if !self.ask {
            return conn.route_pipeline(pipeline.clone(), offset, count, self.route()).await;
        }
        // `ASKING` holds for the next command, or for a whole MULTI block.
        let mut asking = redis::pipe();
        asking.cmd("ASKING");
        if pipeline.is_transaction() {
            asking.cmd("MULTI");
        }
        for cmd in pipeline.cmd_iter() {
            asking.add_command(cmd.clone());
        }
        if pipeline.is_transaction() {
            asking.cmd("EXEC");
            // ASKING, MULTI and a QUEUED per command come before EXEC's reply.
            let n = pipeline.cmd_iter().count();
            let replies = conn.route_pipeline(asking, n + 2, 1, self.route()).await?;
            return exec_reply(replies);
        }
        conn.route_pipeline(asking, offset + 1, count, self.route()).await
    }
}

/// EXEC's reply, sent by hand: an aborted transaction is an error, as
/// redis-rs reports it.
fn exec_reply(replies: Vec<Value>) -> RedisResult<Vec<Value>> {
    match replies.into_iter().next() {
        Some(Value::ServerError(e)) => Err(e.into()),
        Some(Value::Nil) => Err(RedisError::from((
            ErrorKind::Server(redis::ServerErrorKind::ExecAbort),
            "EXECABORT",
            "the transaction was aborted".to_owned(),
        ))),
        Some(value) => Ok(vec![value]),
        None => Err(RedisError::from((
            ErrorKind::Client,
            "store",
            "a transaction got no reply".to_owned(),
        ))),
    }
}

/// Follows a redirect of one command: to the node named, with `ASKING` for
/// an `ASK` (see [`follow`]).
pub(super) async fn follow_command(conn: &mut ClusterConnection, cmd: &Cmd, to: Redirect) -> RedisResult<Value> {
    let mut alone = redis::pipe();
    alone.add_command(cmd.clone());
    match follow(conn, &alone, 0, 1, to).await?.pop() {
        Some(Value::ServerError(e)) => Err(e.into()),
        Some(value) => Ok(value),
        None => Err(no_reply()),
    }
}

/// Follows a redirect of a pipeline that did not run (one command, a
/// transaction aborted by `EXECABORT`, or a part of one slot): to the node
/// named, after `ASKING` for an `ASK`, up to [`REDIRECTS`] times (a slot can
/// move on while we follow). After a `MOVED`, redis-rs is made to learn the
/// new slot map.
pub(super) async fn follow(
    conn: &mut ClusterConnection,
    pipeline: &Pipeline,
    offset: usize,
    count: usize,
    mut to: Redirect,
) -> RedisResult<Vec<Value>> {
    for _ in 0..REDIRECTS {
        let reply = to.send_pipeline(conn, pipeline, offset, count).await;
        if !to.ask {
            refresh_slots(conn, pipeline).await;
        }
        match reply {
            Err(e) => match Redirect::of(&e) {
                Some(next) => to = next,
                None => return Err(e),
            },
            ok => return ok,
        }
    }
    Err(RedisError::from((
        ErrorKind::Server(redis::ServerErrorKind::TryAgain),
        "TRYAGAIN",
        "the slot kept moving while the call followed it".to_owned(),
    )))
}

fn no_reply() -> RedisError {
    RedisError::from((ErrorKind::Client, "store", "a command got no reply".to_owned()))
}

/// Makes redis-rs learn that a slot moved: a read of the pipeline's first
/// key through its own routing, whose `MOVED` makes it rebuild its slot map
/// (a redirect inside a transaction or a routed call does not).
pub(super) async fn refresh_slots(conn: &mut ClusterConnection, pipeline: &Pipeline) {
    if let Some(key) = pipeline.cmd_iter().find_map(super::slot::first_key) {
        let _ = conn.req_packed_command(redis::cmd("EXISTS").arg(key)).await;
    }
}
