//! The functions an `#[index(...)]` generates: the query (`by_user_id`), its
//! key (`index_key_by_user_id`) and, for sorted and set indexes, its count
//! (`count_by_user_id`).

use proc_macro2::TokenStream;
use quote::quote;

use super::{Body, Calls, IndexShape, Shape, ShapeKind, errors, item_ident, params::part_params};
use crate::internals::names;

pub(super) fn index_fns(shape: &Shape<'_>, index: &IndexShape<'_>, body: Body) -> TokenStream {
    let krate = shape.krate;
    let p = quote!(#krate::__private);
    let r = quote!(#p::Result);
    let ty = shape.ident;
    let name = item_ident(&index.name);
    let count = item_ident(&names::count_fn(&index.name));
    let index_key = item_ident(&names::index_key_fn(&index.name));
    let (params, parts) = part_params(krate, &index.params);
    let source = &index.source;
    let pos = index.pos;
    let meta = quote!(&<Self as #p::RedisEntity>::META.indexes[#pos]);
    let conn = quote!(__C: #p::ConnectionLike + ::core::marker::Send);
    let f = |item, real| body.function(item, real);
    let what = match &index.kind {
        ShapeKind::Sorted { .. } => "sorted",
        ShapeKind::Set => "set",
        ShapeKind::Unique => "unique",
    };
    let read_errors = errors(
        "`Err(InvalidKeyPart)` for a bad key part, and `Err(InvalidArgument)` for a page whose offset is past \
         `i64::MAX` or whose score bound is NaN, before any I/O. An entity that does not decode is in the \
         listing's `errors`, not an `Err`; a `BadIndexMember` there too for a member that is no id. ",
        Calls::Read,
    );
    let unique_errors = errors(
        "`Err(InvalidKeyPart)` for a bad key part, before any I/O; `Err(Decode)` or `Err(Decrypt)` when the \
         owner's hash does not decode; `Err(BadIndexMember)` when the index key holds a value that is no id. ",
        Calls::Read,
    );
    let count_fn = || {
        let doc = format!(
            "How many members the {what} index `{source}` holds: one round trip, members whose \
             entity is gone or moved on included until a read or `repair_indexes` removes them. \
             For an entity with a TTL, each member's hash is checked (two round trips) so that an \
             expired entity is never counted."
        );
        f(
            quote! {
                #[doc = #doc]
                #read_errors
                pub async fn #count<#conn>(conn: &mut __C, #(#params),*) -> #r<::core::primitive::u64>
            },
            quote!(#p::count::<Self, __C>(conn, #meta, #parts).await),
        )
    };
    let key_doc = format!(
        "The key of the {what} index `{source}` for these key parts: the key `{query}` reads and \
         every write keeps the index's entries under, for code that names the index key itself \
         (a script's `KEYS`, say); no I/O.\n\n# Errors\n\n`Err(InvalidKeyPart)` for a bad key part.",
        query = index.name,
    );
    let key_fn = f(
        quote! {
            #[doc = #key_doc]
            pub fn #index_key(#(#params),*) -> #r<::std::string::String>
        },
        quote!(#p::index_key(#meta, #parts)),
    );
    let query = match &index.kind {
        ShapeKind::Sorted { score } => {
            let doc = format!(
                "A page of the `{ty}`s in the sorted index `{source}` (score `{score}`); \
                 two round trips whatever the page size. Each entity is checked against the index: \
                 one that is gone, no longer belongs under this key or has another score is not \
                 returned, is repaired (one more round trip) and the page is read again; one that \
                 does not decode is reported in the listing's `errors`."
            );
            let page = f(
                quote! {
                    #[doc = #doc]
                    #read_errors
                    pub async fn #name<#conn>(
                        conn: &mut __C, #(#params,)* page: #p::Page,
                    ) -> #r<#p::Listing<Self>>
                },
                quote!(#p::sorted_page::<Self, __C>(conn, #meta, #parts, page).await),
            );
            let count = count_fn();
            quote!(#page #count)
        }
        ShapeKind::Set => {
            let doc = format!(
                "Every `{ty}` in the set index `{source}`; two round trips. Each entity is checked \
                 against the index: one that is gone or no longer belongs under this key is not \
                 returned and is repaired (one more round trip); one that does not decode is \
                 reported in the listing's `errors`."
            );
            let members = f(
                quote! {
                    #[doc = #doc]
                    #read_errors
                    pub async fn #name<#conn>(conn: &mut __C, #(#params),*) -> #r<#p::Listing<Self>>
                },
                quote!(#p::set_members::<Self, __C>(conn, #meta, #parts).await),
            );
            let count = count_fn();
            quote!(#members #count)
        }
        ShapeKind::Unique => {
            let doc = format!(
                "The `{ty}` that the unique index `{source}` maps to, if it still holds the value \
                 (a stale claim is repaired); at most two round trips, three with a repair."
            );
            f(
                quote! {
                    #[doc = #doc]
                    #unique_errors
                    pub async fn #name<#conn>(conn: &mut __C, #(#params),*) -> #r<::core::option::Option<Self>>
                },
                quote!(#p::unique_get::<Self, __C>(conn, #meta, #parts).await),
            )
        }
    };
    quote!(#query #key_fn)
}
