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
//!
//! A script call goes as `EVALSHA`; a server that does not know the script
//! (a restart, a `SCRIPT FLUSH`) gets it loaded and the call sent again, as
//! often as it takes within [`RELOAD_WINDOW`] (see [`Reloads`]). The scripts
//! themselves, and how each call is built and read, are `scripts/`'s: it
//! sends nothing.

use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, RedisError, Script, ServerError, ServerErrorKind, Value};

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
    if pipe.len() == 1
        && let Some(one) = pipe.cmd_iter().next()
    {
        return Ok(vec![command(conn, one).await?]);
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

/// Whether an error is a cluster's `CROSSSLOT`: the command's keys are in
/// several slots, and nothing ran.
pub(crate) fn is_refused_across_slots(err: &RedisError) -> bool {
    err.kind() == redis::ErrorKind::Server(ServerErrorKind::CrossSlot)
}

/// Whether a reply (one of a pipeline's) is a cluster's `CROSSSLOT`.
pub(crate) fn is_cross_slot_reply(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::CrossSlot))
}

/// Whether a reply (one of a pipeline's) says the server does not know the script.
pub(crate) fn is_noscript(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(e) if e.kind() == Some(redis::ServerErrorKind::NoScript))
}

/// How long one call keeps loading a script that the server keeps losing
/// before it gives up.
pub(crate) const RELOAD_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// The one policy for a server that answers `NOSCRIPT`: load the script and
/// send again, as often as needed within [`RELOAD_WINDOW`] of the first
/// load of a call.
#[derive(Default)]
pub(crate) struct Reloads {
    first: Option<std::time::Instant>,
    count: u32,
}

impl Reloads {
    /// Loads `script` (on every primary, through a cluster client), or
    /// gives up once the window has passed.
    pub(crate) async fn load<C: ConnectionLike + Send>(&mut self, conn: &mut C, script: &Script) -> Result<()> {
        let first = *self.first.get_or_insert_with(std::time::Instant::now);
        if first.elapsed() > RELOAD_WINDOW {
            return Err(crate::Error::UnexpectedReply {
                key: String::new(),
                detail: format!(
                    "the server lost the script again after {} loads in {RELOAD_WINDOW:?} (is something running SCRIPT FLUSH?)",
                    self.count
                ),
            });
        }
        self.count = self.count.saturating_add(1);
        script.load_async(conn).await?;
        Ok(())
    }
}

/// Sends `cmd`, an `EVALSHA` of `script`, until the server runs it: a
/// `NOSCRIPT` gets the script loaded and the call sent again (see
/// [`Reloads`]). A server's error answer is the reply.
pub(crate) async fn send_loading<C: ConnectionLike + Send>(
    conn: &mut C,
    script: &Script,
    cmd: &Cmd,
    reloads: &mut Reloads,
) -> Result<Value> {
    loop {
        match command(conn, cmd).await? {
            reply if is_noscript(&reply) => reloads.load(conn, script).await?,
            reply => return Ok(reply),
        }
    }
}

/// Sends again, after loading `script`, each of `cmds` that calls it and
/// that the server answered `NOSCRIPT` (`replies` are `cmds`' replies and
/// take the new ones), as often as needed (see [`Reloads`]).
pub(crate) async fn resend_unknown<C: ConnectionLike + Send>(
    conn: &mut C,
    cmds: &[Cmd],
    replies: &mut [Value],
    script: &Script,
    reloads: &mut Reloads,
) -> Result<()> {
    resend_unknown_of(conn, cmds, replies, |_| Some(script), reloads).await
}

/// [`resend_unknown`] where each command may call another script:
/// `script_of(i)` is the script `cmds[i]` calls. Each lost script is loaded
/// once, and every call of it that was refused goes again in one pipeline.
pub(crate) async fn resend_unknown_of<'s, C: ConnectionLike + Send>(
    conn: &mut C,
    cmds: &[Cmd],
    replies: &mut [Value],
    script_of: impl Fn(usize) -> Option<&'s Script>,
    reloads: &mut Reloads,
) -> Result<()> {
    loop {
        let again: Vec<usize> = (0..replies.len().min(cmds.len()))
            .filter(|&i| {
                is_noscript(&replies[i]) && script_of(i).is_some_and(|s| calls(&cmds[i], s.get_hash().as_bytes()))
            })
            .collect();
        if again.is_empty() {
            return Ok(());
        }
        let mut loaded: Vec<&str> = Vec::new();
        for &i in &again {
            if let Some(script) = script_of(i)
                && !loaded.contains(&script.get_hash())
            {
                reloads.load(conn, script).await?;
                loaded.push(script.get_hash());
            }
        }
        let resend: Vec<Cmd> = again.iter().map(|&i| cmds[i].clone()).collect();
        let resent = query(conn, &resend).await?;
        for (i, reply) in again.into_iter().zip(resent) {
            replies[i] = reply;
        }
    }
}

/// Whether `cmd` is an `EVALSHA` of the script whose SHA1 is `sha`.
fn calls(cmd: &Cmd, sha: &[u8]) -> bool {
    let mut args = cmd.args_iter();
    matches!(args.next(), Some(redis::Arg::Simple(name)) if name.eq_ignore_ascii_case(b"EVALSHA"))
        && matches!(args.next(), Some(redis::Arg::Simple(hash)) if hash.eq_ignore_ascii_case(sha))
}

/// Runs `cmd`, an `EVALSHA` of `script`, loading the script when the server lacks it.
pub(crate) async fn run<T: FromRedisValue, C: ConnectionLike + Send>(
    conn: &mut C,
    script: &Script,
    cmd: &Cmd,
) -> Result<T> {
    match send_loading(conn, script, cmd, &mut Reloads::default()).await? {
        Value::ServerError(e) => Err(redis::RedisError::from(e).into()),
        reply => Ok(redis::from_redis_value(reply).map_err(redis::RedisError::from)?),
    }
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
