//! # repobox-orm
//!
#![doc = include_str!("../docs/tour.md")]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod codec;
#[cfg(feature = "encryption")]
#[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
pub mod crypto;
mod engine;
mod entity;
mod error;
mod listing;
pub mod meta;
pub mod migrate;
mod observe;
mod page;
pub mod queue;
mod scripts;
pub mod script {
    //! Running a Lua script of your own the way repobox runs its own: as
    //! `EVALSHA` with every key in `KEYS`, loading the script again as often
    //! as the server loses it (a restart, a failover, `SCRIPT FLUSH`) within
    //! 10 s of a call.

    use redis::aio::ConnectionLike;
    use redis::{Cmd, FromRedisValue, Script, Value};

    use crate::error::Result;

    /// The Lua every repobox script starts with: `refused_as_other_type(key,
    /// r)` reads `r`, what `redis.pcall` answered for a command on `key`, and
    /// gives `{ 'wrongtype', key }` for a key of another type (to return before
    /// the script has written anything), raises any other error, and gives
    /// `nil` otherwise.
    pub const SHARED_LUA: &str = include_str!("scripts/lib.lua");

    /// A script of yours after [`SHARED_LUA`], so that it can use its helpers.
    pub fn with_shared_lua(source: &str) -> Script {
        Script::new(&format!("{SHARED_LUA}{source}"))
    }

    /// `EVALSHA <sha> <number of keys> <keys..>` of `script`; add `ARGV` to it.
    pub fn evalsha<K: redis::ToRedisArgs>(script: &Script, keys: &[K]) -> Cmd {
        crate::scripts::evalsha(script, keys)
    }

    /// Runs `cmd`, an [`evalsha`] of `script`.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`](crate::Error::WrongType) when the shared `refused_as_other_type`
    /// refused a key; otherwise as the script answers, and as every write to Redis:
    /// see [`Error`](crate::Error#errors-of-every-call).
    pub async fn invoke<T: FromRedisValue, C: ConnectionLike + Send>(
        conn: &mut C,
        script: &Script,
        cmd: &Cmd,
    ) -> Result<T> {
        crate::engine::pipeline::run(conn, script, cmd).await
    }

    /// Runs `cmd`, an [`evalsha`] of `script` whose `KEYS` are `keys`, as one
    /// atomic call where the connection can: `Ok(None)` when its keys are in
    /// several cluster slots and nothing ran, so that the caller does the work
    /// in single-slot steps instead. Decided the way the write engine decides:
    /// a [`Store`](crate::Store) says up front that it is a cluster; another
    /// connection's `CROSSSLOT` answer says it after.
    ///
    /// # Errors
    ///
    /// As [`invoke`]; a `CROSSSLOT` refusal is `Ok(None)`, not an error.
    pub async fn invoke_together<T: FromRedisValue, C: ConnectionLike + Send>(
        conn: &mut C,
        script: &Script,
        cmd: &Cmd,
        keys: &[&str],
    ) -> Result<Option<T>> {
        use crate::engine::write::route;
        if route::splits(conn, keys.iter().copied()) {
            return Ok(None);
        }
        match crate::engine::pipeline::run(conn, script, cmd).await {
            Err(crate::Error::Redis(e)) if crate::engine::pipeline::is_refused_across_slots(&e) => Ok(None),
            other => other.map(Some),
        }
    }

    /// Sends `cmds` (each an [`evalsha`] of `script`, or any other command)
    /// as one pipeline; each reply in its place, server errors as values.
    ///
    /// # Errors
    ///
    /// Only when the pipeline as a whole fails (the server's error for one command is its
    /// reply, in its place), as every write to Redis can: see
    /// [`Error`](crate::Error#errors-of-every-call).
    pub async fn pipeline<C: ConnectionLike + Send>(conn: &mut C, script: &Script, cmds: &[Cmd]) -> Result<Vec<Value>> {
        let mut replies = crate::engine::pipeline::query(conn, cmds).await?;
        crate::engine::pipeline::resend_unknown(
            conn,
            cmds,
            &mut replies,
            script,
            &mut crate::engine::pipeline::Reloads::default(),
        )
        .await?;
        Ok(replies)
    }
}
mod store;

pub mod guide {
    //! The guides: longer reading than the API reference, each a page.

    #[doc = include_str!("../docs/generated.md")]
    pub mod generated {}

    #[doc = include_str!("../docs/wire-format.md")]
    pub mod wire_format {}

    #[doc = include_str!("../docs/failure-behaviour.md")]
    pub mod failure_behaviour {}

    #[doc = include_str!("../docs/cluster.md")]
    pub mod cluster {}

    #[doc = include_str!("../docs/migrations.md")]
    pub mod migrations {}
}

#[cfg(doc)]
pub mod example;

/// A new random id: 128 bits from the operating system's random generator,
/// as 32 lowercase hex digits (an outbox attempt, a job's run). `what` names
/// the id in the error if the generator fails.
///
/// # Errors
///
/// [`Error::Encode`] naming `what` when the operating system's
/// random generator fails.
pub fn random_id(what: &'static str) -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Error::Encode {
        field: what,
        message: format!("the OS random generator failed: {e}"),
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

#[doc(hidden)]
#[path = "private/mod.rs"]
pub mod __private;

pub use codec::{HashField, KeyPart, RedisValue, Score};
pub use engine::sweep::{
    IndexReport, Pace, Walk, WalkProgress, check_indexes, check_indexes_with, count_entities_with, repair_indexes,
    repair_indexes_with,
};
pub use entity::{EntityField, EntityPatch, FieldWriter, RawHash, RedisEntity};
pub use error::{DecodeValue, Error, Result, Shown};
pub use listing::Listing;
pub use page::Page;
pub use queue::{Delivery, Queue};
#[doc = include_str!("../docs/derive-entity.md")]
pub use repobox_derive::RedisEntity;
#[doc = include_str!("../docs/derive-value.md")]
pub use repobox_derive::RedisValue;
#[cfg(feature = "tls")]
pub use store::TlsConfig;
pub use store::{Backoff, DEFAULT_URL, Endpoint, IntoEndpoint, Store, StoreConfig};

/// The redis-rs version repobox is built on.
pub use redis;

/// Everything an entity declaration and its callers need.
pub mod prelude {
    pub use crate::codec::{HashField, KeyPart, RedisValue};
    pub use crate::entity::{EntityField, EntityPatch, RedisEntity};
    pub use crate::error::{Error, Result};
    pub use crate::listing::Listing;
    pub use crate::page::Page;
    pub use crate::store::{Store, StoreConfig};
    pub use redis::aio::ConnectionLike;
    pub use repobox_derive::{RedisEntity, RedisValue};
}
