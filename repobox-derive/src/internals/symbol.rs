//! Every attribute name the derives read, once.

use std::fmt::{self, Display};

use syn::{Ident, Path};

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Symbol(&'static str);

// Container attributes.
pub const KEY: Symbol = Symbol("key");
pub const TTL: Symbol = Symbol("ttl");
pub const INDEX: Symbol = Symbol("index");
pub const REDIS: Symbol = Symbol("redis");
pub const CLUSTER: Symbol = Symbol("cluster");

// Inside `#[cluster(...)]`.
pub const CO_LOCATED: Symbol = Symbol("co_located");

// Inside `#[key("...", ...)]`.
pub const MAX_PART_LEN: Symbol = Symbol("max_part_len");
pub const SECRET: Symbol = Symbol("secret");
pub const PREVIOUS: Symbol = Symbol("previous");

// Inside `#[redis(...)]` on the struct or enum.
pub const CRATE: Symbol = Symbol("crate");
pub const RENAME_ALL: Symbol = Symbol("rename_all");

// Inside `#[index(...)]`.
pub const SORTED: Symbol = Symbol("sorted");
pub const SET: Symbol = Symbol("set");
pub const UNIQUE: Symbol = Symbol("unique");
pub const SCORE: Symbol = Symbol("score");
pub const NAME: Symbol = Symbol("name");

// Inside `#[ttl(...)]`, with their length in milliseconds.
pub const TTL_UNITS: &[(Symbol, u64)] = &[
    (Symbol("days"), 86_400_000),
    (Symbol("hours"), 3_600_000),
    (Symbol("minutes"), 60_000),
    (Symbol("seconds"), 1_000),
    (Symbol("millis"), 1),
];

// Inside `#[redis(...)]` on a field or a variant.
pub const RENAME: Symbol = Symbol("rename");
pub const SKIP: Symbol = Symbol("skip");
pub const DEFAULT: Symbol = Symbol("default");
pub const JSON: Symbol = Symbol("json");
pub const ENCRYPTED: Symbol = Symbol("encrypted");
pub const ALIAS: Symbol = Symbol("alias");

impl Symbol {
    /// The kind of an index, for duplicate messages (`sorted`, `set` or `unique`).
    pub const KIND: Symbol = Symbol("sorted`/`set`/`unique");

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl PartialEq<Symbol> for Ident {
    fn eq(&self, word: &Symbol) -> bool {
        self == word.0
    }
}

impl PartialEq<Symbol> for &Ident {
    fn eq(&self, word: &Symbol) -> bool {
        *self == word.0
    }
}

impl PartialEq<Symbol> for Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl PartialEq<Symbol> for &Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// "`a`, `b` or `c`", for "expected one of" messages.
pub fn one_of(symbols: &[Symbol]) -> String {
    let names: Vec<String> = symbols.iter().map(|s| format!("`{s}`")).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}
