//! How the engine sends commands: one round trip for one command or many,
//! whatever the connection.
//!
//! One command goes as a command, so that a [`Store`](crate::Store) gives it
//! a command's patience on a cluster (redirects and a failover are waited
//! out); several go as one pipeline. Either way a command's error is its
//! reply, not the call's: the caller reads each reply on its own.
//!
//! A [`Store`](crate::Store) on a cluster splits a pipeline per slot itself
//! and sends the parts concurrently. redis-rs's own cluster connection
//! refuses a pipeline across slots (`CROSSSLOT`, before sending anything);
//! then the engine sends one pipeline per slot, in turn, so that the
//! generated calls work on it too, at one round trip per slot.

use redis::aio::ConnectionLike;
use redis::{Cmd, ServerError, Value};

use crate::engine::write::route::is_refused_across_slots;
use crate::error::{Error, Result};
use crate::store::slot::group_by_slot;

/// Sends `cmds`; the replies come in the order of `cmds`.
pub(crate) async fn query<C: ConnectionLike + Send>(conn: &mut C, cmds: &[Cmd]) -> Result<Vec<Value>> {
    match cmds {
        [] => Ok(Vec::new()),
        [one] => Ok(vec![command(conn, one).await?]),
        many => {
            let mut pipe = redis::pipe();
            for cmd in many {
                pipe.add_command(cmd.clone());
            }
            send(conn, &mut pipe).await
        }
    }
}

/// Sends one command; a server's error answer comes back as its reply.
pub(crate) async fn command<C: ConnectionLike + Send>(conn: &mut C, cmd: &Cmd) -> Result<Value> {
    match conn.req_packed_command(cmd).await {
        Ok(reply) => Ok(reply),
        Err(e) => match ServerError::try_from(e) {
            Ok(answer) => Ok(Value::ServerError(answer)),
            Err(e) => Err(e.into()),
        },
    }
}

/// [`query`] of a pipeline built by the caller (no copy of its commands).
pub(crate) async fn send<C: ConnectionLike + Send>(conn: &mut C, pipe: &mut redis::Pipeline) -> Result<Vec<Value>> {
    if pipe.is_empty() {
        return Ok(Vec::new());
    }
    let replies: Vec<Value> = match pipe.ignore_errors().query_async(conn).await {
        Ok(replies) => replies,
        Err(e) if is_refused_across_slots(&e) => {
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
