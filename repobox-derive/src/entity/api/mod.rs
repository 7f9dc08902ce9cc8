//! The inherent functions `#[derive(RedisEntity)]` generates, emitted once for
//! the real expansion and the fallback's stubs alike. Each is named by its
//! constant in `internals::names`, the list the index collision check knows.
//! Every body is one call into `__private`.

mod conditional;
mod errors;
mod index;
mod params;
mod shape;

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::internals::names;

use self::errors::CallErrors;
pub(super) use self::errors::{Calls, errors};
use self::params::{many_ids, part_params};
pub use self::shape::{IndexShape, Shape, ShapeKind};

/// Whether function bodies call the runtime or are stubs next to a `compile_error!`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Real,
    Stub,
}

impl Body {
    /// The function `item` (its signature) with the body `real`, or a stub.
    fn function(self, item: TokenStream, real: TokenStream) -> TokenStream {
        match self {
            Body::Real => quote!(#item { #real }),
            Body::Stub => quote!(#item { ::core::unimplemented!() }),
        }
    }
}

/// A generated item's name, from `internals::names`.
fn item_ident(name: &str) -> syn::Ident {
    format_ident!("{}", name)
}

/// The generated inherent `impl` block.
pub fn inherent(shape: &Shape<'_>, body: Body) -> TokenStream {
    let ident = shape.ident;
    let krate = shape.krate;
    let p = quote!(#krate::__private);
    let patch = format_ident!("{}Patch", ident);
    let r = quote!(#p::Result);
    let conn = quote!(__C: #p::ConnectionLike + ::core::marker::Send);
    let f = |item, real| body.function(item, real);
    // Every item is named by its constant in `names`.
    let ttl_const = item_ident(names::TTL_CONST);
    let co_located_const = item_ident(names::CO_LOCATED_CONST);
    let key = item_ident(names::KEY);
    let entity_id = item_ident(names::ENTITY_ID);
    let create = item_ident(names::CREATE);
    let save = item_ident(names::SAVE);
    let create_and_append = item_ident(names::CREATE_AND_APPEND);
    let create_and_append_many = item_ident(names::CREATE_AND_APPEND_MANY);
    let get_many = item_ident(names::GET_MANY);
    let create_many = item_ident(names::CREATE_MANY);
    let save_many = item_ident(names::SAVE_MANY);
    let delete_many = item_ident(names::DELETE_MANY);
    let key_for = item_ident(names::KEY_FOR);
    let get = item_ident(names::GET);
    let get_with_clock = item_ident(names::GET_WITH_CLOCK);
    let exists = item_ident(names::EXISTS);
    let update = item_ident(names::UPDATE);
    let delete = item_ident(names::DELETE);
    let delete_with = item_ident(names::DELETE_WITH);
    let ttl = item_ident(names::TTL);
    let expire_in = item_ident(names::EXPIRE_IN);
    let update_and_expire = item_ident(names::UPDATE_AND_EXPIRE);

    let ttl_value = match shape.ttl {
        Some(ms) => quote!(::core::option::Option::Some(#p::Duration::from_millis(#ms))),
        None => quote!(::core::option::Option::None),
    };
    let co_located = shape.co_located;
    let CallErrors {
        errs_create,
        errs_save,
        errs_create_and_append,
        errs_create_and_append_many,
        errs_create_many,
        errs_save_many,
        errs_get,
        errs_get_with_clock,
        errs_exists,
        errs_update,
        errs_delete,
        errs_delete_with,
        errs_ttl,
        errs_expire,
        errs_update_expire,
        errs_get_many,
        errs_delete_many,
    } = CallErrors::new();
    let mut items = vec![
        quote! {
            /// The entity's `#[ttl]`; `None` if it has none.
            pub const #ttl_const: ::core::option::Option<#p::Duration> = #ttl_value;
        },
        quote! {
            /// Whether every write of the entity touches one Redis Cluster slot:
            /// its key and every index template share one hash tag. Then each
            /// write is one atomic script on a cluster too; otherwise a write
            /// spans slots. A constant tag (`{jobs}`) co-locates too, in one
            /// hot slot.
            pub const #co_located_const: ::core::primitive::bool = #co_located;
        },
    ];

    items.push(f(
        quote! {
            /// This entity's key.
            ///
            /// # Errors
            ///
            /// `Err(InvalidKeyPart)` when a field of the key is not a valid key part.
            pub fn #key(&self) -> #r<::std::string::String>
        },
        quote!(#p::entity_key(self)),
    ));
    items.push(f(
        quote! {
            /// This entity's id: its key parts joined by `:`, as index entries hold it.
            ///
            /// # Errors
            ///
            /// `Err(InvalidKeyPart)` when a field of the key is not a valid key part.
            pub fn #entity_id(&self) -> #r<::std::string::String>
        },
        quote!(#p::entity_id(self)),
    ));
    items.push(f(
        quote! {
            /// Creates the entity with its index entries and TTL in one round trip;
            /// `Err(AlreadyExists)` or `Err(UniqueViolation)` write nothing.
            #errs_create
            pub async fn #create<#conn>(conn: &mut __C, entity: &Self) -> #r<()>
        },
        quote!(#p::create(conn, entity).await),
    ));
    items.push(f(
        quote! {
            /// Creates or overwrites the entity, moving index entries whose fields changed
            /// and setting its full TTL, atomically.
            #errs_save
            pub async fn #save<#conn>(conn: &mut __C, entity: &Self) -> #r<()>
        },
        quote!(#p::save(conn, entity).await),
    ));
    items.push(f(
        quote! {
            /// Creates the entity like `create` and appends `entry` to `stream` in the same
            /// atomic write; returns the stream entry's id. A second create of the same
            /// entity is `Err(AlreadyExists)` and appends nothing.
            #errs_create_and_append
            pub async fn #create_and_append<#conn>(
                conn: &mut __C,
                entity: &Self,
                stream: &::core::primitive::str,
                entry: &[(&::core::primitive::str, &::core::primitive::str)],
            ) -> #r<::std::string::String>
        },
        quote!(#p::create_and_append(conn, entity, stream, entry).await),
    ));
    items.push(f(
        quote! {
            /// Creates many entities like `create_and_append`, each atomically with its
            /// entry (`entries[i]` for `entities[i]`), in pipelined chunks; per entity
            /// the entry's id, or why it was not created (then nothing was appended).
            #errs_create_and_append_many
            pub async fn #create_and_append_many<#conn>(
                conn: &mut __C,
                entities: &[Self],
                stream: &::core::primitive::str,
                entries: &[::std::vec::Vec<(&::core::primitive::str, &::core::primitive::str)>],
            ) -> #r<::std::vec::Vec<#r<::std::string::String>>>
        },
        quote!(#p::create_and_append_many(conn, entities, stream, entries).await),
    ));
    items.push(f(
        quote! {
            /// Creates many entities, each atomically with its indexes and TTL, in
            /// pipelined chunks; per entity `Ok` or why it was not created.
            #errs_create_many
            pub async fn #create_many<#conn>(conn: &mut __C, entities: &[Self]) -> #r<::std::vec::Vec<#r<()>>>
        },
        quote!(#p::create_many(conn, entities).await),
    ));
    items.push(f(
        quote! {
            /// Saves many entities, each atomically with its indexes and TTL, in
            /// pipelined chunks; per entity `Ok` or why it was not saved.
            #errs_save_many
            pub async fn #save_many<#conn>(conn: &mut __C, entities: &[Self]) -> #r<::std::vec::Vec<#r<()>>>
        },
        quote!(#p::save_many(conn, entities).await),
    ));
    if let Some((source, key_idents)) = &shape.key {
        let (params, parts) = part_params(krate, key_idents);
        let key_doc = format!(
            "The key `{source}` for these key parts; no I/O.\n\n# Errors\n\n`Err(InvalidKeyPart)` for a bad key part."
        );
        let (id_type, id_generics, id_parts) = many_ids(krate, key_idents);
        items.push(f(
            quote! {
                /// Reads many entities in one round trip, in input order: `None` where
                /// absent, `None` and an error in the listing's `errors` where one does
                /// not decode. An id is what `get` takes: its key part, or a tuple of
                /// them for a key of several parts.
                #errs_get_many
                pub async fn #get_many<#conn, #(#id_generics),*>(
                    conn: &mut __C,
                    ids: &[#id_type],
                ) -> #r<#p::Listing<::core::option::Option<Self>>>
            },
            quote!(#p::get_many::<Self, __C, _, _>(conn, ids, #id_parts).await),
        ));
        items.push(f(
            quote! {
                /// Deletes many entities, each atomically with its index entries, in
                /// pipelined chunks; per entity `true` where one existed, or why it was
                /// not deleted (then nothing of it was). An id is what `delete` takes:
                /// its key part, or a tuple of them.
                #errs_delete_many
                pub async fn #delete_many<#conn, #(#id_generics),*>(
                    conn: &mut __C,
                    ids: &[#id_type],
                ) -> #r<::std::vec::Vec<#r<::core::primitive::bool>>>
            },
            quote!(#p::delete_many::<Self, __C, _, _>(conn, ids, #id_parts).await),
        ));
        items.push(f(
            quote! {
                #[doc = #key_doc]
                pub fn #key_for(#(#params),*) -> #r<::std::string::String>
            },
            quote!(#p::key_for::<Self>(#parts)),
        ));
        items.push(f(
            quote! {
                /// Reads the entity; `None` if it is absent or expired. One round trip.
                #errs_get
                pub async fn #get<#conn>(conn: &mut __C, #(#params),*) -> #r<::core::option::Option<Self>>
            },
            quote!(#p::get::<Self, __C>(conn, #parts).await),
        ));
        items.push(f(
            quote! {
                /// Reads the entity with Redis's clock (Unix milliseconds) as it
                /// was read: `TIME` and the read in one pipeline, one round trip.
                #errs_get_with_clock
                pub async fn #get_with_clock<#conn>(
                    conn: &mut __C,
                    #(#params),*
                ) -> #r<(::core::primitive::i64, ::core::option::Option<Self>)>
            },
            quote!(#p::get_with_clock::<Self, __C>(conn, #parts).await),
        ));
        items.push(f(
            quote! {
                /// Whether the entity exists.
                #errs_exists
                pub async fn #exists<#conn>(conn: &mut __C, #(#params),*) -> #r<::core::primitive::bool>
            },
            quote!(#p::exists::<Self, __C>(conn, #parts).await),
        ));
        items.push(f(
            quote! {
                /// Applies a partial update atomically with its index entries, keeping the
                /// remaining TTL; `Err(NotFound)` if the entity is absent (never re-creates it).
                #errs_update
                pub async fn #update<#conn>(conn: &mut __C, #(#params,)* patch: &#patch) -> #r<()>
            },
            quote!(#p::update::<Self, __C>(conn, #parts, patch).await),
        ));
        items.extend(conditional::conditional_fns(shape, &params, &parts, body));
        items.push(f(
            quote! {
                /// Deletes the entity and its index entries atomically; `false` if it was absent.
                #errs_delete
                pub async fn #delete<#conn>(conn: &mut __C, #(#params),*) -> #r<::core::primitive::bool>
            },
            quote!(#p::delete::<Self, __C>(conn, #parts).await),
        ));
        items.push(f(
            quote! {
                /// Deletes the entity, its index entries and the keys in `also` (data that
                /// belongs to it) atomically; `false` if it was absent.
                #errs_delete_with
                pub async fn #delete_with<#conn>(
                    conn: &mut __C, #(#params,)* also: &[::std::string::String],
                ) -> #r<::core::primitive::bool>
            },
            quote!(#p::delete_with::<Self, __C>(conn, #parts, also).await),
        ));
        if shape.ttl.is_some() {
            items.push(f(
                quote! {
                    /// The entity's remaining TTL; `None` if it is absent.
                    #errs_ttl
                    pub async fn #ttl<#conn>(conn: &mut __C, #(#params),*) -> #r<::core::option::Option<#p::Duration>>
                },
                quote!(#p::ttl::<Self, __C>(conn, #parts).await),
            ));
            items.push(f(
                quote! {
                    /// Sets the entity's TTL (its index keys are lengthened to outlive it);
                    /// `Err(NotFound)` if it is absent.
                    #errs_expire
                    pub async fn #expire_in<#conn>(conn: &mut __C, #(#params,)* ttl: #p::Duration) -> #r<()>
                },
                quote!(#p::expire_in::<Self, __C>(conn, #parts, ttl).await),
            ));
            items.push(f(
                quote! {
                    /// Applies a patch and sets the entity's TTL to `ttl` in one atomic write;
                    /// `Err(NotFound)` if it is absent.
                    #errs_update_expire
                    pub async fn #update_and_expire<#conn>(
                        conn: &mut __C, #(#params,)* patch: &#patch, ttl: #p::Duration,
                    ) -> #r<()>
                },
                quote!(#p::update_and_expire::<Self, __C>(conn, #parts, patch, ttl).await),
            ));
        }
    }
    for index in &shape.indexes {
        items.push(index::index_fns(shape, index, body));
    }
    let allow = (body == Body::Stub).then(|| quote!(#[allow(unused_variables, clippy::all)]));
    quote! {
        #[automatically_derived]
        #allow
        impl #ident {
            #(#items)*
        }
    }
}
