//! Taking work in one round trip (`take.lua`): the end of the last piece of
//! work, the read of the next from the first priority level that has any,
//! the entity each entry names, and its start, in one atomic step on one
//! server, as BullMQ's `moveToFinished` hands a worker its next job. The
//! script's call is laid out and read in `levels`.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::time::Duration;

use redis::aio::ConnectionLike;

use super::levels::{Names, take_levels};
use super::{Delivery, Queue};
use crate::engine::target::Target;
use crate::engine::write::deliver;
use crate::engine::write::{Ack, patch_if};
use crate::entity::RedisEntity;
use crate::error::Result;
use crate::observe::observe;
use crate::scripts::Call;

/// A value that [`Queue::take`] computes for each entity it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Computed<'a> {
    /// This text, as it is.
    Text(Cow<'a, str>),
    /// The entity's id: the key part the entry names.
    EntityId,
    /// The id of the stream entry that delivered the entity.
    EntryId,
    /// A new random id ([`random_id`](crate::random_id)), one per start.
    RandomId,
    /// Redis's clock at the start, in Unix milliseconds, plus `plus_ms`.
    Clock {
        /// Milliseconds added to the clock.
        plus_ms: i64,
    },
    /// The field's JSON array (absent: empty) with one item appended: the
    /// text `before`, Redis's clock in Unix milliseconds, the text `after`.
    /// A field that is not a JSON array starts nothing.
    AppendToArray {
        /// The item's text before the clock.
        before: Cow<'a, str>,
        /// The item's text after the clock.
        after: Cow<'a, str>,
    },
}

impl Computed<'_> {
    /// Redis's clock plus `plus`, in Unix milliseconds.
    pub fn clock_plus(plus: Duration) -> Computed<'static> {
        Computed::Clock {
            plus_ms: i64::try_from(plus.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

/// The start that [`Queue::take`] writes on each entity it delivers: a
/// compare-and-set of `E` ([`update_if`](crate::__private::update_if)'s
/// `patch` and `expected`) whose values may be computed for each entity,
/// with a stream entry appended in the same write. An entity whose
/// conditions do not hold, or whose id is more than plain printable ASCII,
/// is delivered without being started: the caller starts it its own way.
#[derive(Debug)]
pub struct StartTemplate<'a, E: RedisEntity> {
    pub(crate) patch: &'a E::Patch,
    pub(crate) expected: &'a E::Patch,
    pub(crate) computed: Vec<(&'static str, Computed<'a>)>,
    pub(crate) entry_names: Vec<(&'static str, &'a str)>,
    pub(crate) append: Option<(&'a str, Vec<(&'a str, Computed<'a>)>)>,
}

impl<'a, E: RedisEntity> StartTemplate<'a, E> {
    /// A start that writes `patch` where every field `expected` sets holds
    /// that value (`Some(None)`: is absent).
    pub fn new(patch: &'a E::Patch, expected: &'a E::Patch) -> Self {
        StartTemplate {
            patch,
            expected,
            computed: Vec::new(),
            entry_names: Vec::new(),
            append: None,
        }
    }

    /// Field `field`, which the patch sets (to any value), is written as
    /// `value` instead.
    pub fn computed(mut self, field: &'static str, value: Computed<'a>) -> Self {
        self.computed.push((field, value));
        self
    }

    /// A further condition: field `field` holds what the entry's field
    /// `entry_field` holds (an entry without it starts nothing).
    pub fn entry_names(mut self, field: &'static str, entry_field: &'a str) -> Self {
        self.entry_names.push((field, entry_field));
        self
    }

    /// Appends an entry of `pairs` to `stream` with the start.
    pub fn append(mut self, stream: &'a str, pairs: Vec<(&'a str, Computed<'a>)>) -> Self {
        self.append = Some((stream, pairs));
        self
    }
}

impl<E: RedisEntity> StartTemplate<'_, E> {
    /// The template as [`Queue::take`] sends it, built once: checked and
    /// laid out as the write script's call (a template the script could
    /// not follow is refused here).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) or
    /// [`Error::Encode`](crate::Error::Encode) for a template the start script cannot follow
    /// (a field that cannot be stored, a key part that cannot be one); no I/O.
    pub fn prepare(&self) -> Result<PreparedStart<E>> {
        Ok(PreparedStart {
            call: deliver::template_call::<E>(self)?,
            entity: PhantomData,
        })
    }
}

/// A [`StartTemplate`] laid out for the script, once ([`StartTemplate::prepare`]).
pub struct PreparedStart<E: RedisEntity> {
    call: Call,
    entity: PhantomData<fn() -> E>,
}

impl<E: RedisEntity> PreparedStart<E> {
    /// The write script's call the template stands for.
    pub(super) fn call(&self) -> &Call {
        &self.call
    }
}

impl<E: RedisEntity> std::fmt::Debug for PreparedStart<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedStart")
            .field("entity", &E::META.name)
            .field("keys", &self.call.key_count())
            .field("args", &self.call.arg_count())
            .finish()
    }
}

/// The end of the last piece of work that [`Queue::take`] writes before it
/// reads: a compare-and-set of the `E` with id `id` (see
/// [`update_if_and_ack`](crate::__private::update_if_and_ack)).
#[derive(Debug)]
pub struct Finish<'a, E: RedisEntity> {
    /// The entity's id (its key parts joined by `:`).
    pub id: &'a str,
    /// What the write sets.
    pub patch: &'a E::Patch,
    /// What must hold for it to be written.
    pub expected: &'a E::Patch,
    /// A stream entry appended with it.
    pub append: Option<(&'a str, &'a [(&'a str, &'a str)])>,
    /// A delivery of a queue acknowledged with it: the queue and the entry id.
    pub ack: Option<(&'a Queue, &'a str)>,
}

/// What [`Queue::take`] did.
#[derive(Debug)]
pub struct Taken {
    /// The finishing write's outcome, as `update_if_and_ack` answers it
    /// (the appended entry's id); `None` without one.
    pub finished: Option<Result<Option<String>>>,
    /// The new deliveries, each with the index of its queue.
    pub deliveries: Vec<(usize, Delivery)>,
}

impl Queue {
    /// Takes work in one round trip: writes `finish` (the end of the last
    /// piece of work, with its acknowledgement), then reads up to `count`
    /// new entries from the first of `queues` that have any (as
    /// [`read_first_with`](Self::read_first_with), with the `E` each names in
    /// its field `field`), and starts each of those `E`s with `start` in
    /// the same atomic step: [`Delivery::started`] says which were, and
    /// [`Delivery::entity_as_read`] gives each as written. One script call;
    /// on one server only, like `read_first_with`. A finishing write that
    /// finds its conditions' bytes changed goes on as `update_if_and_ack`
    /// does, after the read.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKeyPart`](crate::Error::InvalidKeyPart) for a finishing id that is not one of
    /// `E`'s, before any I/O. A refused finishing write (`Conflict`, `NotFound`) is in
    /// [`Taken::finished`], not an `Err`. Otherwise as every write to Redis (see
    /// [`Error`](crate::Error#errors-of-every-call)); deliveries a script whose outcome is
    /// unknown made stay pending and come again.
    pub async fn take<E: RedisEntity, C: ConnectionLike + Send>(
        conn: &mut C,
        queues: &[&Queue],
        consumer: &str,
        count: usize,
        field: &str,
        start: Option<&PreparedStart<E>>,
        finish: Option<Finish<'_, E>>,
    ) -> Result<Taken> {
        observe::<E, _>(
            "take",
            take::<E, C>(conn, queues, consumer, count, field, start, finish),
        )
        .await
    }
}

/// [`Queue::take`], unobserved.
async fn take<E: RedisEntity, C: ConnectionLike + Send>(
    conn: &mut C,
    queues: &[&Queue],
    consumer: &str,
    count: usize,
    field: &str,
    start: Option<&PreparedStart<E>>,
    finish: Option<Finish<'_, E>>,
) -> Result<Taken> {
    let names = Names::of::<E>(field, start, count);
    let Some(finish) = finish else {
        let deliveries = take_levels(conn, queues, consumer, count, names.as_ref(), None)
            .await?
            .1;
        return Ok(Taken {
            finished: None,
            deliveries,
        });
    };
    let target = Target::from_id::<E>(finish.id)?;
    let ack = finish.ack.map(|(queue, id)| Ack {
        stream: queue.stream(),
        group: queue.group(),
        id,
    });
    let Some(call) = deliver::finish_call::<E>(&target, finish.patch, finish.expected, finish.append, ack)? else {
        // It must learn where index entries are first: on its own.
        let finished = patch_if::<E, C>(conn, &target, finish.patch, finish.expected, finish.append, ack).await;
        let deliveries = take_levels(conn, queues, consumer, count, names.as_ref(), None)
            .await?
            .1;
        return Ok(Taken {
            finished: Some(finished),
            deliveries,
        });
    };
    let (answer, deliveries) = take_levels(conn, queues, consumer, count, names.as_ref(), Some(&call)).await?;
    let finished = match answer.and_then(|a| deliver::finish_outcome(&target, a)) {
        Some(outcome) => outcome,
        None => patch_if::<E, C>(conn, &target, finish.patch, finish.expected, finish.append, ack).await,
    };
    Ok(Taken {
        finished: Some(finished),
        deliveries,
    })
}
