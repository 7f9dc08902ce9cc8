//! The inherent functions `#[derive(RedisEntity)]` generates, emitted once for
//! the real expansion and the fallback's stubs alike. Each is named by its
//! constant in `internals::names`, the list the index collision check knows.
//! Every body is one call into `__private`.

mod conditional;
mod index;

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::internals::ast::{Entity, IndexKind};
use crate::internals::names;
use crate::internals::unraw::unraw;

/// What the generated functions are built from: the entity, or as much of it
/// as the fallback could read.
pub struct Shape<'e> {
    pub ident: &'e syn::Ident,
    pub krate: &'e syn::Path,
    /// The key template and its placeholder fields; `None` when the key is unusable.
    pub key: Option<(String, Vec<&'e syn::Ident>)>,
    /// The `#[ttl]` in ms, if the entity has one.
    pub ttl: Option<u64>,
    /// Whether every write touches one Redis Cluster slot.
    pub co_located: bool,
    pub indexes: Vec<IndexShape<'e>>,
}

pub struct IndexShape<'e> {
    /// Its position in the metadata.
    pub pos: usize,
    pub name: String,
    pub kind: ShapeKind,
    pub params: Vec<&'e syn::Ident>,
    pub source: String,
}

pub enum ShapeKind {
    Sorted { score: String },
    Set,
    Unique,
}

impl<'e> Shape<'e> {
    pub fn of(entity: &'e Entity<'e>) -> Self {
        Shape {
            ident: &entity.input.ident,
            krate: &entity.krate,
            key: Some((
                entity.key.source.clone(),
                entity.placeholder_fields(&entity.key).map(|f| f.ident).collect(),
            )),
            ttl: entity.ttl.as_ref().map(|t| t.millis),
            co_located: entity.co_located(),
            indexes: entity
                .indexes
                .iter()
                .enumerate()
                .map(|(pos, ix)| IndexShape {
                    pos,
                    name: ix.name(entity),
                    kind: match &ix.kind {
                        IndexKind::Sorted { score, .. } => ShapeKind::Sorted {
                            score: unraw(entity.fields[*score].ident),
                        },
                        IndexKind::Set => ShapeKind::Set,
                        IndexKind::Unique => ShapeKind::Unique,
                    },
                    params: entity.placeholder_fields(&ix.template).map(|f| f.ident).collect(),
                    source: ix.template.source.clone(),
                })
                .collect(),
        }
    }
}

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

/// `name: impl KeyPart` parameters and the `&[Cow<str>]` of their parts.
fn part_params(krate: &syn::Path, idents: &[&syn::Ident]) -> (Vec<TokenStream>, TokenStream) {
    let params = idents
        .iter()
        .map(|i| quote!(#i: impl #krate::__private::KeyPart))
        .collect();
    let parts = quote!(&[#(#krate::__private::KeyPart::key_part(&#idents)),*]);
    (params, parts)
}

/// What every read can also fail with.
const READ_ERRORS: &str = "`Err(Timeout)`, `Err(Closed)` or `Err(Redis)` when Redis does not answer in time, \
     the store is closed, or the server answers with an error.";

/// What every write can also fail with.
const WRITE_ERRORS: &str = "`Err(WriteOutcomeUnknown)` when the connection failed after the write was sent \
     (it may have been applied: read before trying again); `Err(ReadOnly)`, `Err(OutOfMemory)` or \
     `Err(WrongType)` (a key of another type) when the server refused it, nothing written; `Err(Timeout)`, \
     `Err(Closed)` or `Err(Redis)` otherwise.";

/// Whether a generated call reads or writes, for its `# Errors` section.
#[derive(Clone, Copy)]
pub(super) enum Calls {
    Read,
    Write,
}

/// The `# Errors` section of a generated call's documentation: `specific`
/// (what the call itself refuses), then what every read or write can fail
/// with.
pub(super) fn errors(specific: &str, calls: Calls) -> TokenStream {
    let common = match calls {
        Calls::Read => READ_ERRORS,
        Calls::Write => WRITE_ERRORS,
    };
    let text = format!("\n# Errors\n\n{specific}{common}");
    quote!(#[doc = #text])
}

/// How `get_many` and `delete_many` take ids: the type of one (`__K0`, or
/// the tuple `(__K0, __K1, ..)` for a key of several parts), its generic
/// parameters, and the closure that turns one into its key parts.
fn many_ids(krate: &syn::Path, idents: &[&syn::Ident]) -> (TokenStream, Vec<TokenStream>, TokenStream) {
    let types: Vec<_> = (0..idents.len()).map(|i| format_ident!("__K{}", i)).collect();
    let generics = types.iter().map(|t| quote!(#t: #krate::__private::KeyPart)).collect();
    let parts = quote!([#(#krate::__private::KeyPart::key_part(#idents)),*]);
    match idents {
        [one] => (quote!(#(#types)*), generics, quote!(|#one| #parts)),
        _ => (quote!((#(#types),*)), generics, quote!(|(#(#idents),*)| #parts)),
    }
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
    let errs_create = errors(
        "`Err(AlreadyExists)` when the key exists, `Err(UniqueViolation)` when another entity holds a unique value; nothing is written then. `Err(Contention)` when other writers kept moving its index entries (16 attempts), nothing written. `Err(Encode)` or `Err(InvalidKeyPart)` when a field cannot be stored or a key part is bad, before any I/O. ",
        Calls::Write,
    );
    let errs_save = errors(
        "`Err(UniqueViolation)` when another entity holds a unique value, nothing written; `Err(Contention)` when other writers kept moving its index entries (16 attempts). `Err(Encode)` or `Err(InvalidKeyPart)` when a field cannot be stored or a key part is bad, before any I/O. ",
        Calls::Write,
    );
    let errs_create_and_append = errors(
        "`Err(AlreadyExists)`, `Err(UniqueViolation)` or `Err(Contention)`: nothing written or appended. `Err(Encode)` or `Err(InvalidKeyPart)` when a field cannot be stored or a key part is bad, before any I/O. ",
        Calls::Write,
    );
    let errs_create_and_append_many = errors(
        "`Err(InvalidArgument)` when `entries` and `entities` differ in length, before any I/O. Each entity's own refusal (`AlreadyExists`, `UniqueViolation`, `Contention`, `Encode`, `InvalidKeyPart`) is in its place in the answer, with nothing of it written or appended. ",
        Calls::Write,
    );
    let errs_create_many = errors(
        "Each entity's own refusal (`AlreadyExists`, `UniqueViolation`, `Contention`, `Encode`, `InvalidKeyPart`) is in its place in the answer, nothing of it written; the call itself fails only as every write can. ",
        Calls::Write,
    );
    let errs_save_many = errors(
        "Each entity's own refusal (`UniqueViolation`, `Contention`, `Encode`, `InvalidKeyPart`) is in its place in the answer; the call itself fails only as every write can. ",
        Calls::Write,
    );
    let errs_get = errors(
        "`Err(InvalidKeyPart)` for a bad key part, before any I/O. `Err(Decode)` or `Err(Decrypt)` when the stored hash does not decode (the error names the key and the field). ",
        Calls::Read,
    );
    let errs_get_with_clock = errors(
        "`Err(InvalidKeyPart)` for a bad key part, before any I/O. `Err(Decode)` or `Err(Decrypt)` when the stored hash does not decode (the error names the key and the field). ",
        Calls::Read,
    );
    let errs_exists = errors(
        "`Err(InvalidKeyPart)` for a bad key part, before any I/O. ",
        Calls::Read,
    );
    let errs_update = errors(
        "`Err(NotFound)` when the entity is absent; `Err(UniqueViolation)` when another entity holds a unique value the patch sets; `Err(Contention)` when other writers kept moving its index entries; nothing is written then. `Err(Encode)` or `Err(InvalidKeyPart)` when a field cannot be stored or a key part is bad, before any I/O. ",
        Calls::Write,
    );
    let errs_delete = errors(
        "`Err(Contention)` when other writers kept moving its index entries. `Err(InvalidKeyPart)` for a bad key part, before any I/O. ",
        Calls::Write,
    );
    let errs_delete_with = errors(
        "`Err(Contention)` when other writers kept moving its index entries. `Err(InvalidKeyPart)` for a bad key part, before any I/O. ",
        Calls::Write,
    );
    let errs_ttl = errors(
        "`Err(InvalidKeyPart)` for a bad key part, before any I/O. ",
        Calls::Read,
    );
    let errs_expire = errors(
        "`Err(NotFound)` when the entity is absent; `Err(InvalidArgument)` for a TTL Redis cannot keep. `Err(InvalidKeyPart)` for a bad key part, before any I/O. ",
        Calls::Write,
    );
    let errs_update_expire = errors(
        "`Err(NotFound)` when the entity is absent; `Err(UniqueViolation)` or `Err(Contention)` as `update`; `Err(InvalidArgument)` for a TTL Redis cannot keep. `Err(Encode)` or `Err(InvalidKeyPart)` when a field cannot be stored or a key part is bad, before any I/O. ",
        Calls::Write,
    );
    let errs_get_many = errors(
        "`Err(InvalidKeyPart)` for a bad key part of any id, before any I/O (nothing read). ",
        Calls::Read,
    );
    let errs_delete_many = errors(
        "`Err(InvalidKeyPart)` for a bad key part of any id, before any I/O (nothing deleted). Each entity's own refusal (`WrongType`, `Contention`) is in its place in the answer, nothing of it deleted; the call itself fails only as every write can. ",
        Calls::Write,
    );
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
