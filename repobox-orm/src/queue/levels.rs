//! Reading priority levels: the first of several streams that has new
//! entries, in one round trip (`read_first.lua`).

use redis::Value;
use redis::aio::ConnectionLike;
use redis::streams::StreamReadReply;

use super::{Delivery, Queue};
use crate::engine::pipeline;
use crate::error::{Error, Result};
use crate::scripts::{Call, READ_FIRST};

impl Queue {
    /// Reads up to `count` new entries for `consumer` from the first of
    /// `queues` that have any, in order (priority levels, highest first),
    /// each delivery with the index of its queue; never blocks. One script
    /// call, one round trip: the streams must be on one server (or share a
    /// hash tag on a cluster); else read each with [`read`](Self::read).
    ///
    /// A stream that cannot be read (its group is gone, a key of another
    /// type) does not keep the others from being read: what they delivered
    /// is returned, and the first such error only when nothing was. A group
    /// that is gone is made again (from the stream's start).
    pub async fn read_first<C: ConnectionLike + Send>(
        conn: &mut C,
        queues: &[&Queue],
        consumer: &str,
        count: usize,
    ) -> Result<Vec<(usize, Delivery)>> {
        let Some(first) = queues.first() else {
            return Ok(Vec::new());
        };
        let mut call = Call::default();
        for q in queues {
            call.key(&q.stream);
        }
        call.arg(consumer).arg(count.max(1));
        for q in queues {
            call.arg(&q.group);
        }
        let cmd = call.command_of(READ_FIRST.get_hash());
        let replies = match pipeline::send_loading(conn, &READ_FIRST, &cmd, &mut pipeline::Reloads::default()).await? {
            Value::Array(replies) if replies.len() == queues.len() => replies,
            Value::ServerError(e) => return Err(redis::RedisError::from(e).into()),
            other => {
                return Err(Error::UnexpectedReply {
                    key: first.stream.clone(),
                    detail: format!("read_first.lua answered {other:?}"),
                });
            }
        };
        let mut got = Vec::new();
        let mut refused = None;
        for (i, (q, reply)) in queues.iter().zip(replies).enumerate() {
            match reply {
                Value::Int(_) => continue,
                Value::ServerError(e) => {
                    // A stream or group that was deleted is made again at
                    // once, so that the other levels' traffic cannot keep
                    // this one unread.
                    if e.code() == "NOGROUP" {
                        let _ = q.ensure_group(conn).await;
                    }
                    refused.get_or_insert(e);
                    continue;
                }
                reply => {
                    let reply: StreamReadReply = redis::from_redis_value(reply).map_err(redis::RedisError::from)?;
                    got.extend(q.deliveries(reply).into_iter().map(|d| (i, d)));
                }
            }
        }
        match refused {
            Some(e) if got.is_empty() => Err(redis::RedisError::from(e).into()),
            _ => Ok(got),
        }
    }
}
