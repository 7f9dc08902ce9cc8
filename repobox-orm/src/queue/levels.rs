//! Reading priority levels: the first of several streams that has new
//! entries, in one round trip (`take.lua`, which [`Queue::take`](Queue::take) also
//! uses), with the entity each
//! entry names when asked.

use redis::aio::ConnectionLike;

use super::take::{Names, take_levels};
use super::{Delivery, Queue};
use crate::entity::RedisEntity;
use crate::error::Result;

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
        Ok(take_levels(conn, queues, consumer, count, None, None).await?.1)
    }

    /// [`read_first`](Self::read_first), which also reads, in the same
    /// atomic step, the `E` that each entry names in its field `field` (the
    /// key part of an `E` whose key has one placeholder) and Redis's clock:
    /// see [`Delivery::entity_as_read`]. It saves the read that handling a
    /// delivery begins with. Only on one server: the key comes from the
    /// entry's data, which a cluster does not allow a script to read (there
    /// use [`read`](Self::read) and a read of the entity).
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
