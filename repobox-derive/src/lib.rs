//! `#[derive(RedisEntity)]` and `#[derive(RedisValue)]` for repobox.
//!
//! The derives parse and check their attributes, then emit metadata and small
//! glue; the real work lives in `repobox_orm`. See `repobox_orm` for the
//! attribute grammar and the generated API.

mod entity;
mod internals;
#[cfg(test)]
mod tests;
mod value;

use proc_macro::TokenStream;

/// Stores a struct as a Redis hash: `#[key("user:<id>")]`, `#[ttl(days = 7)]`,
/// `#[index(sorted = "...", score = field)]`, `#[index(set = "...")]`,
/// `#[index(unique = "...")]`, `#[cluster(co_located)]`, `#[redis(crate = "...",
/// rename_all = "...")]` on the struct, and
/// `#[redis(rename = "...", skip, default, json, encrypted, alias = "...")]`
/// on fields (`alias`: an old hash field name read while the field's own is
/// absent and removed by every write of the field; repeatable; not on a
/// field of the key or of an index, nor on an encrypted one).
#[proc_macro_derive(RedisEntity, attributes(key, ttl, index, redis, cluster))]
pub fn derive_redis_entity(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    entity::derive(&input).into()
}

/// Stores a unit enum as a snake_case string (`#[redis(rename = "...",
/// alias = "...")]` per variant; `alias`: an old wire string still read as
/// the variant, repeatable).
#[proc_macro_derive(RedisValue, attributes(redis))]
pub fn derive_redis_value(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    value::derive(&input).into()
}
