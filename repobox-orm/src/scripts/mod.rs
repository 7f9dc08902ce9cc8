//! The Lua scripts repobox runs, and the one way it runs them.
//!
//! Each script gets every key through `KEYS` (Redis Cluster needs that) and is
//! sent as `EVALSHA`; a server that does not know it (a restart, a
//! `SCRIPT FLUSH`) gets it loaded and the call sent again, as often as it
//! takes within [`RELOAD_WINDOW`] (see [`Reloads`]): a server whose scripts
//! are flushed over and over does not fail the calls that meet it.

use std::sync::LazyLock;

use redis::{Cmd, Script};

use crate::meta::IndexKind;

pub(crate) mod checkpoint;
pub(crate) mod create_entity;
pub(crate) mod dead_letter;
pub(crate) mod delete_entity;
pub(crate) mod index_entry;
pub(crate) mod put;
pub(crate) mod rate_limit;
pub(crate) mod rekey;
pub(crate) mod repair;
pub(crate) mod reply;
pub(crate) mod slots;
pub(crate) mod trim;
pub(crate) mod write_entity;

/// A `*_entity.lua` file, which defines `entity`, joined with the file that
/// calls it: `one.lua` (once) or `many.lua` (once per call, laid out as
/// [`joined`] lays them out).
macro_rules! calling {
    ($entity:literal, $caller:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lib.lua"),
                include_str!($entity),
                include_str!($caller)
            ))
        })
    };
}

/// A script file after `lib.lua`, the helpers every script shares.
macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| Script::new(concat!(include_str!("lib.lua"), include_str!($file))))
    };
}

/// One atomic write of an entity (`engine/write/protocol/` has its layout).
pub(crate) static WRITE: LazyLock<Script> = calling!("write_entity.lua", "one.lua");
/// Many writes in one call, each atomic on its own (`engine/write/atomic.rs`).
pub(crate) static WRITE_MANY: LazyLock<Script> = calling!("write_entity.lua", "many.lua");
/// The delete of one entity, its index entries and its other keys (`write/protocol/delete.rs`).
pub(crate) static DELETE: LazyLock<Script> = calling!("delete_entity.lua", "one.lua");
/// Many deletes in one call, each atomic on its own.
pub(crate) static DELETE_MANY: LazyLock<Script> = calling!("delete_entity.lua", "many.lua");
/// The create of one entity with sorted or set indexes (`engine/write/create.rs`).
pub(crate) static CREATE: LazyLock<Script> = calling!("create_entity.lua", "one.lua");
/// Many such creates in one call, each atomic on its own (`engine/write/create.rs`).
pub(crate) static CREATE_MANY: LazyLock<Script> = calling!("create_entity.lua", "many.lua");
/// The write of an entity with no index entry to maintain (`engine/write/hash_only.rs`).
pub(crate) static PUT: LazyLock<Script> = script!("put.lua");
/// An update that only sets fields (`engine/write/hash_only.rs`).
pub(crate) static UPDATE: LazyLock<Script> = script!("update.lua");
/// One index entry on its own, a step of an ordered write (cluster).
pub(crate) static INDEX_ENTRY: LazyLock<Script> = script!("index_entry.lua");
/// Read repair: drops index entries whose entity is gone.
pub(crate) static REPAIR: LazyLock<Script> = script!("repair.lua");
/// Moves a pending delivery to the dead-letter stream and acknowledges it.
pub(crate) static DEAD_LETTER: LazyLock<Script> = script!("dead_letter.lua");
/// Trims a stream without dropping entries a group still needs.
pub(crate) static TRIM: LazyLock<Script> = script!("trim.lua");
/// A tenant's slots: running and parked members.
pub(crate) static SLOTS: LazyLock<Script> = script!("slots.lua");
/// New entries of the first of several streams that have any (priority
/// levels), with the entities they name, started from a template, and the
/// end of the last one written first (`queue/take.rs`).
pub(crate) static TAKE: LazyLock<Script> = calling!("write_entity.lua", "take.lua");
/// A migration's checkpoint, written by the run that owns it (`migrate/checkpoint.rs`).
pub(crate) static CHECKPOINT: LazyLock<Script> = script!("checkpoint.lua");
/// Grants starts under a queue-wide rate limit.
pub(crate) static RATE_LIMIT: LazyLock<Script> = script!("rate_limit.lua");
/// A re-key's move of one entity whose keys share a slot.
pub(crate) static REKEY: LazyLock<Script> = script!("rekey.lua");
/// The single-slot steps of a re-key's move across slots.
pub(crate) static REKEY_STEP: LazyLock<Script> = script!("rekey_step.lua");

/// An index kind's letter in the scripts' calls: `z` sorted, `s` set, `u` unique.
pub(crate) const fn kind_letter(kind: IndexKind) -> u8 {
    match kind {
        IndexKind::Sorted { .. } => b'z',
        IndexKind::Set => b's',
        IndexKind::Unique => b'u',
    }
}

/// `EVALSHA <sha> <number of keys> <keys..>` of `script`; the caller adds `ARGV`.
pub(crate) fn evalsha<K: redis::ToRedisArgs>(script: &Script, keys: &[K]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}

/// The `KEYS` and the `ARGV` of one call of a script, built by the
/// script's protocol module from typed values: sent on its own with
/// [`Call::command`], or with others of the same script in one call of its
/// script of many with [`Call::joined`].
#[derive(Default)]
pub(crate) struct Call {
    keys: Cmd,
    nkeys: usize,
    args: Cmd,
    nargs: usize,
}

impl Call {
    /// Adds a key to `KEYS`.
    pub(crate) fn key(&mut self, key: &str) -> &mut Self {
        self.keys.arg(key);
        self.nkeys += 1;
        self
    }

    /// Adds one item (or, for a list, one per element) to `ARGV`.
    pub(crate) fn arg(&mut self, arg: impl redis::ToRedisArgs) -> &mut Self {
        self.args.arg(arg);
        self
    }

    /// How many keys the call has so far.
    pub(crate) fn key_count(&self) -> usize {
        self.nkeys
    }

    fn nargs(&mut self) -> usize {
        self.nargs = self.args.args_iter().count();
        self.nargs
    }

    /// How many arguments the call has so far.
    pub(crate) fn arg_count(&self) -> usize {
        self.args.args_iter().count()
    }

    /// Adds `other`'s keys to this call's `KEYS`.
    pub(crate) fn keys_of(&mut self, other: &Call) -> &mut Self {
        append(&mut self.keys, &other.keys);
        self.nkeys += other.nkeys;
        self
    }

    /// Adds `other`'s arguments to this call's `ARGV`.
    pub(crate) fn args_of(&mut self, other: &Call) -> &mut Self {
        append(&mut self.args, &other.args);
        self
    }

    /// The `EVALSHA` of the script whose SHA1 is `sha` with this call's keys and arguments.
    pub(crate) fn command_of(&self, sha: &str) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(sha).arg(self.nkeys);
        append(&mut cmd, &self.keys);
        append(&mut cmd, &self.args);
        cmd
    }

    /// The `EVALSHA` of `script` with this call's keys and arguments.
    pub(crate) fn command(&self, script: &Script) -> Cmd {
        self.command_of(script.get_hash())
    }

    /// One call of `many` (a `*_entity.lua` file joined with `many.lua`) in
    /// place of `calls`: `KEYS` all of theirs in order; `ARGV` how many
    /// calls, then per call the number of its `KEYS` and of its `ARGV`, and
    /// its `ARGV`.
    pub(crate) fn joined(calls: &mut [Call], many: &Script) -> Cmd {
        let nkeys: usize = calls.iter().map(|c| c.nkeys).sum();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(many.get_hash()).arg(nkeys);
        for call in calls.iter() {
            append(&mut cmd, &call.keys);
        }
        cmd.arg(calls.len());
        for call in calls.iter_mut() {
            let nargs = call.nargs();
            cmd.arg(call.nkeys).arg(nargs);
            append(&mut cmd, &call.args);
        }
        cmd
    }
}

/// Where a protocol writes a call's `ARGV`: straight into the `EVALSHA` of a
/// call sent alone, or into a [`Call`] to be joined with others.
pub(crate) trait Args {
    /// Adds one item (or, for a list, one per element) to `ARGV`.
    fn push(&mut self, arg: impl redis::ToRedisArgs) -> &mut Self;
}

impl Args for Cmd {
    fn push(&mut self, arg: impl redis::ToRedisArgs) -> &mut Self {
        self.arg(arg)
    }
}

impl Args for Call {
    fn push(&mut self, arg: impl redis::ToRedisArgs) -> &mut Self {
        self.arg(arg)
    }
}

fn append(cmd: &mut Cmd, from: &Cmd) {
    for arg in from.args_iter() {
        if let redis::Arg::Simple(bytes) = arg {
            cmd.arg(bytes);
        }
    }
}
