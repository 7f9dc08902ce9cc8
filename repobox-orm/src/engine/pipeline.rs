//! Pipelines of the engine: one round trip for many commands, whatever the
//! connection.
//!
//! A [`Store`](crate::Store) on a cluster splits a pipeline per slot itself
//! and sends the parts concurrently. redis-rs's own cluster connection
//! refuses a pipeline across slots (`CROSSSLOT`, before sending anything);
//! then the engine sends one pipeline per slot, in turn, so that the
//! generated calls work on it too, at one round trip per slot.

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};

use crate::error::{Error, Result};
use crate::scripts;
use crate::store::slot::group_by_slot;

/// Sends `cmds` as one pipeline; a command's error is its reply, not the
/// call's. The replies come in the order of `cmds`.
pub(crate) async fn query<C: ConnectionLike + Send>(conn: &mut C, cmds: &[Cmd]) -> Result<Vec<Value>> {
    let mut pipe = redis::pipe();
    for cmd in cmds {
        pipe.add_command(cmd.clone());
    }
    send(conn, &mut pipe).await
}

/// [`query`] of a pipeline built by the caller (no copy of its commands).
pub(crate) async fn send<C: ConnectionLike + Send>(conn: &mut C, pipe: &mut redis::Pipeline) -> Result<Vec<Value>> {
    if pipe.is_empty() {
        return Ok(Vec::new());
    }
    let replies: Vec<Value> = match pipe.ignore_errors().query_async(conn).await {
        Ok(replies) => replies,
        Err(e) if scripts::is_cross_slot(&e) => {
            let cmds: Vec<Cmd> = pipe.cmd_iter().cloned().collect();
            per_slot(conn, &cmds).await?
        }
        Err(e) => return Err(e.into()),
    };
    if replies.len() != pipe.len() {
        return Err(Error::UnexpectedReply {
            key: String::new(),
            detail: format!("{} replies to {} commands", replies.len(), pipe.len()),
        });
    }
    Ok(replies)
}

async fn per_slot<C: ConnectionLike + Send>(conn: &mut C, cmds: &[Cmd]) -> Result<Vec<Value>> {
    let mut replies: Vec<Option<Value>> = vec![None; cmds.len()];
    for members in group_by_slot(cmds) {
        let mut pipe = redis::pipe();
        for &i in &members {
            pipe.add_command(cmds[i].clone());
        }
        let part: Vec<Value> = pipe.ignore_errors().query_async(conn).await?;
        for (i, reply) in members.into_iter().zip(part) {
            replies[i] = Some(reply);
        }
    }
    Ok(replies.into_iter().map(|r| r.unwrap_or(Value::Nil)).collect())
}
