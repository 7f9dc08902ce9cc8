//! `#[derive(RedisEntity)]` and `#[derive(RedisValue)]` for repobox.
//!
//! The derives parse and check their attributes, then emit metadata and small
//! glue; the real work lives in [repobox-orm](https://docs.rs/repobox-orm),
//! which re-exports both derives and documents their attributes and the API
//! they generate. Depend on repobox-orm, not on this crate: it pins this
//! crate to its own release.

mod entity;
mod internals;
#[cfg(test)]
mod tests;
mod value;

use proc_macro::TokenStream;

/// `#[derive(RedisEntity)]`: stores a struct with named fields as a Redis
/// hash and generates its codec, key, and CRUD, index and TTL calls. Use it
/// through `repobox_orm::RedisEntity`, whose documentation is the attribute
/// reference.
#[proc_macro_derive(RedisEntity, attributes(key, ttl, index, redis, cluster))]
pub fn derive_redis_entity(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    entity::derive(&input).into()
}

/// `#[derive(RedisValue)]`: stores a unit-only enum as a string. Use it
/// through `repobox_orm::RedisValue`, whose documentation is the attribute
/// reference.
#[proc_macro_derive(RedisValue, attributes(redis))]
pub fn derive_redis_value(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    value::derive(&input).into()
}
