//! One entry handed to a consumer, with what the read that delivered it
//! saw of the entity it names.

use std::collections::HashMap;

use crate::engine::read;
use crate::entity::RedisEntity;
use crate::error::Result;

/// One entry handed to a consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The stream entry id.
    pub id: String,
    /// The entry's fields that are text.
    pub fields: HashMap<String, String>,
    /// How often the entry has been delivered, this time included.
    pub deliveries: u64,
    /// What is wrong with the entry, when some of its fields are not text.
    pub malformed: Option<String>,
    /// The entity the entry names, as the read that delivered it saw it.
    pub(super) seen: Option<Seen>,
}

/// What a read that delivers entries saw of the entity each one names, in
/// the same atomic step ([`Queue::read_first_with`](super::Queue::read_first_with)).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Seen {
    /// Redis's clock at the read, in Unix milliseconds.
    pub(super) now_ms: i64,
    /// The key that was read.
    pub(super) key: String,
    /// What `HGETALL` answered there (an error included).
    pub(super) answer: redis::Value,
    /// Whether the read started the entity ([`Queue::take`](super::Queue::take)):
    /// then `answer` is the entity as started.
    pub(super) started: bool,
}

impl Delivery {
    /// A field of the entry.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// Whether the read that delivered this entry also started the entity
    /// it names ([`Queue::take`](super::Queue::take) with a
    /// [`StartTemplate`](super::StartTemplate)): then
    /// [`entity_as_read`](Self::entity_as_read) gives it as started.
    pub fn started(&self) -> bool {
        self.seen.as_ref().is_some_and(|seen| seen.started)
    }

    /// When the read that delivered this entry started the entity it names
    /// ([`started`](Self::started)): that entity's key and the text its field
    /// `name` holds as started, read from the hash as it is, whether or not
    /// the whole entity decodes. For a caller that cannot go on with a start
    /// it did not make itself and must undo it.
    pub fn started_field(&self, name: &str) -> Option<(&str, String)> {
        let seen = self.seen.as_ref().filter(|seen| seen.started)?;
        let hash = crate::entity::RawHash::from_reply(&seen.key, &seen.answer).ok()?;
        let value = std::str::from_utf8(hash.get(name)?).ok()?.to_owned();
        Some((seen.key.as_str(), value))
    }

    /// The entity at `key` and Redis's clock (Unix milliseconds) as the read
    /// that delivered this entry saw them, in the same atomic step
    /// ([`Queue::read_first_with`](super::Queue::read_first_with)); `Ok((now, None))` when there was no
    /// such hash. `None` when that read did not look at `key`: another kind
    /// of read, or an entry that names some other key. What it returns may
    /// be out of date by now: it saves a read, never a compare-and-set.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`](crate::Error::Decode) or [`Error::Decrypt`](crate::Error::Decrypt)
    /// when the hash read does not decode as an `E`.
    pub fn entity_as_read<E: RedisEntity>(&self, key: &str) -> Option<Result<(i64, Option<E>)>> {
        let seen = self.seen.as_ref().filter(|seen| seen.key == key)?;
        Some(read::decode_answer(key, &seen.answer).map(|entity| (seen.now_ms, entity)))
    }
}
