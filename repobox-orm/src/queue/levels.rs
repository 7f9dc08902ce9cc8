//! Reading priority levels: the first of several streams that has new
//! entries, in one round trip, with the entity each entry names when asked.
//! Every such read goes through `take.lua`, whose call is laid out and
//! whose answer is read here (`take_levels`), for these reads and for
//! [`Queue::take`](Queue::take).

use redis::aio::ConnectionLike;

use redis::Value;
use redis::streams::StreamReadReply;

use super::take::PreparedStart;
use super::{Delivery, Queue, Seen};
use crate::engine::{pipeline, read};
use crate::entity::RedisEntity;
use crate::error::{Error, Result};
use crate::meta::{KeyTemplate, Segment};
use crate::scripts::{Call, TAKE};

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
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn read_first<C: ConnectionLike + Send>(
        conn: &mut C,
        queues: &[&Queue],
        consumer: &str,
        count: usize,
    ) -> Result<Vec<(usize, Delivery)>> {
        Ok(take_levels(conn, queues, consumer, count, None, None).await?.1)
    }

    /// [`read_first`](Self::read_first), which also reads, in the same
    /// atomic step, the `E` that each entry names in its field `field` (the
    /// key part of an `E` whose key has one placeholder) and Redis's clock:
    /// see [`Delivery::entity_as_read`]. It saves the read that handling a
    /// delivery begins with. Only on one server: the key comes from the
    /// entry's data, which a cluster does not allow a script to read (there
    /// use [`read`](Self::read) and a read of the entity).
    ///
    /// # Errors
    ///
    /// Fails as every write to Redis can: see [`Error`](crate::Error#errors-of-every-call).
    pub async fn read_first_with<E: RedisEntity, C: ConnectionLike + Send>(
        conn: &mut C,
        queues: &[&Queue],
        consumer: &str,
        count: usize,
        field: &str,
    ) -> Result<Vec<(usize, Delivery)>> {
        let names = Names::of::<E>(field, None, count);
        Ok(take_levels(conn, queues, consumer, count, names.as_ref(), None)
            .await?
            .1)
    }
}

/// What to read besides the entries: the entry field that names an `E`,
/// and how to start it.
pub(super) struct Names<'n> {
    pub field: &'n str,
    pub before: String,
    pub after: String,
    pub max_len: usize,
    pub template: Option<&'n Call>,
    pub starts: usize,
}

impl<'n> Names<'n> {
    pub(super) fn of<E: RedisEntity>(
        field: &'n str,
        start: Option<&'n PreparedStart<E>>,
        count: usize,
    ) -> Option<Self> {
        let (before, after) = around_one_part(&E::META.key)?;
        let template = start.map(PreparedStart::call);
        Some(Names {
            field,
            before,
            after,
            max_len: E::META.key.max_part_len,
            starts: if template.is_some() { count } else { 0 },
            template,
        })
    }
}

/// The text before and after the one placeholder of `key`, if it has one.
pub(super) fn around_one_part(key: &KeyTemplate) -> Option<(String, String)> {
    let (mut before, mut after, mut parts) = (String::new(), String::new(), 0);
    for segment in key.segments {
        match segment {
            Segment::Lit(text) if parts == 0 => before.push_str(text),
            Segment::Lit(text) => after.push_str(text),
            Segment::Field { .. } => parts += 1,
        }
    }
    (parts == 1).then_some((before, after))
}

/// The one way through `take.lua`: the finishing write's call, the
/// streams, and the entities the entries name (`names`). Answers the
/// finishing write's answer and the deliveries.
pub(super) async fn take_levels<C: ConnectionLike + Send>(
    conn: &mut C,
    queues: &[&Queue],
    consumer: &str,
    count: usize,
    names: Option<&Names<'_>>,
    finish: Option<&Call>,
) -> Result<(Option<Value>, Vec<(usize, Delivery)>)> {
    let Some(first) = queues.first() else {
        return Ok((None, Vec::new()));
    };
    let mut call = Call::default();
    match finish {
        Some(f) => {
            call.keys_of(f);
            call.arg(f.key_count()).arg(f.arg_count()).args_of(f);
        }
        None => {
            call.arg(0).arg(0);
        }
    }
    for q in queues {
        call.key(&q.stream);
    }
    let (field, before, after) = names.map_or(("", "", ""), |n| (n.field, n.before.as_str(), n.after.as_str()));
    call.arg(queues.len())
        .arg(consumer)
        .arg(count.max(1))
        .arg(field)
        .arg(before)
        .arg(after);
    for q in queues {
        call.arg(&q.group);
    }
    match names.and_then(|n| Some((n, n.template?))) {
        Some((n, template)) => {
            call.keys_of(template);
            call.arg(template.key_count())
                .arg(template.arg_count())
                .arg(n.max_len)
                .args_of(template);
            for _ in 0..n.starts {
                call.arg(crate::random_id("run id")?);
            }
        }
        None => {
            call.arg(0).arg(0).arg(0);
        }
    }
    let cmd = call.command_of(TAKE.get_hash());
    let unexpected = |other: &Value| Error::UnexpectedReply {
        key: first.stream.clone(),
        detail: format!("take.lua answered {other:?}"),
    };
    let mut replies = match pipeline::send_loading(conn, &TAKE, &cmd, &mut pipeline::Reloads::default()).await? {
        Value::Array(replies) if replies.len() == queues.len() + 2 => replies,
        Value::ServerError(e) => return Err(redis::RedisError::from(e).into()),
        other => return Err(unexpected(&other)),
    };
    let mut seen = match replies.pop() {
        Some(Value::Array(clock_and_seen)) => match <[Value; 2]>::try_from(clock_and_seen) {
            Ok([time, Value::Array(seen)]) => Some((read::clock_ms(&time)?, seen.into_iter())),
            Ok(other) => return Err(unexpected(&Value::Array(other.into()))),
            Err(other) => return Err(unexpected(&Value::Array(other))),
        },
        _ => None,
    };
    let mut replies = replies.into_iter();
    let finished = replies.next().filter(|_| finish.is_some());
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
                for mut delivery in q.deliveries(reply) {
                    if let Some((now_ms, seen)) = seen.as_mut() {
                        delivery.seen = seen.next().and_then(|item| seen_at(*now_ms, item));
                    }
                    got.push((i, delivery));
                }
            }
        }
    }
    match refused {
        // Nothing delivered: the first refusal is the answer, unless a
        // finishing write went with the read (its answer must not be lost).
        Some(e) if got.is_empty() && finished.is_none() => Err(redis::RedisError::from(e).into()),
        _ => Ok((finished, got)),
    }
}

/// One item of the script's `seen` list: `{key, answer, started}`, or 0
/// for an entry that names nothing.
fn seen_at(now_ms: i64, item: Value) -> Option<Seen> {
    let Value::Array(items) = item else {
        return None;
    };
    let [key, answer, started] = <[Value; 3]>::try_from(items).ok()?;
    let key = match key {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok()?,
        Value::SimpleString(text) => text,
        _ => return None,
    };
    Some(Seen {
        now_ms,
        key,
        answer,
        started: started == Value::Int(1),
    })
}
