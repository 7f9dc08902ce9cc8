//! The compare-and-set functions: `update_if`, `update_if_and_append`,
//! `update_if_and_ack` and `delete_if`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::{Body, Calls, Shape, errors, item_ident};
use crate::internals::names;

pub(super) fn conditional_fns(
    shape: &Shape<'_>,
    params: &[TokenStream],
    parts: &TokenStream,
    body: Body,
) -> Vec<TokenStream> {
    let krate = shape.krate;
    let p = quote!(#krate::__private);
    let r = quote!(#p::Result);
    let patch = format_ident!("{}Patch", shape.ident);
    let conn = quote!(__C: #p::ConnectionLike + ::core::marker::Send);
    let f = |item, real| body.function(item, real);
    let update_if = item_ident(names::UPDATE_IF);
    let update_if_and_append = item_ident(names::UPDATE_IF_AND_APPEND);
    let update_if_and_ack = item_ident(names::UPDATE_IF_AND_ACK);
    let delete_if = item_ident(names::DELETE_IF);
    let errs_update_if = errors(
        "`Err(Conflict)` when a field of `expected` did not hold, naming the first; `Err(NotFound)` when the entity is absent; `Err(UniqueViolation)` when another entity holds a unique value the patch sets; `Err(Contention)` when other writers kept moving its index entries; nothing is written then. `Err(Encode)` or `Err(InvalidKeyPart)` before any I/O. ",
        Calls::Write,
    );
    let errs_delete_if = errors(
        "`Err(Conflict)` when a field of `expected` did not hold, naming the first; nothing is deleted then. \
         `Err(Contention)` when other writers kept moving its index entries. `Err(InvalidKeyPart)` before any I/O. ",
        Calls::Write,
    );
    let mut items = Vec::new();
    items.push(f(
        quote! {
            /// Applies `patch` like `update`, but only if every field that `expected`
            /// sets holds that value (`Some(None)`: is absent) at the time of the
            /// write: a compare-and-set. `Err(Conflict)` names the first field that
            /// did not hold; nothing is written then.
            #errs_update_if
            pub async fn #update_if<#conn>(conn: &mut __C, #(#params,)* patch: &#patch, expected: &#patch) -> #r<()>
        },
        quote!(#p::update_if::<Self, __C>(conn, #parts, patch, expected).await),
    ));
    items.push(f(
        quote! {
            /// `update_if`, appending `entry` to `stream` in the same atomic write (in
            /// the stream's outbox first where a cluster splits the keys); returns the
            /// stream entry's id. A refused write appends nothing.
            #errs_update_if
            pub async fn #update_if_and_append<#conn>(
                conn: &mut __C,
                #(#params,)*
                patch: &#patch,
                expected: &#patch,
                stream: &::core::primitive::str,
                entry: &[(&::core::primitive::str, &::core::primitive::str)],
            ) -> #r<::std::string::String>
        },
        quote!(#p::update_if_and_append::<Self, __C>(conn, #parts, patch, expected, stream, entry).await),
    ));
    items.push(f(
        quote! {
            /// `update_if`, appending `append`'s entry when given (as
            /// `update_if_and_append` does) and acknowledging delivery
            /// `entry_id` of `queue` in the same atomic write; where a cluster
            /// splits the keys, the acknowledgement goes after the write (a
            /// delivery left pending comes again). A refused write
            /// acknowledges nothing. Returns the appended entry's id.
            #errs_update_if
            #[allow(clippy::too_many_arguments)]
            pub async fn #update_if_and_ack<#conn>(
                conn: &mut __C,
                #(#params,)*
                patch: &#patch,
                expected: &#patch,
                append: ::core::option::Option<(
                    &::core::primitive::str,
                    &[(&::core::primitive::str, &::core::primitive::str)],
                )>,
                queue: &#p::Queue,
                entry_id: &::core::primitive::str,
            ) -> #r<::core::option::Option<::std::string::String>>
        },
        quote!(#p::update_if_and_ack::<Self, __C>(conn, #parts, patch, expected, append, queue, entry_id).await),
    ));
    items.push(f(
        quote! {
            /// Deletes the entity, its index entries and the keys in `also`
            /// atomically, but only if every field that `expected` sets holds
            /// that value (`Some(None)`: is absent), compared as stored bytes:
            /// `Err(Conflict)` names the first field that did not hold, and
            /// nothing is deleted then. `false` if it was absent.
            #errs_delete_if
            pub async fn #delete_if<#conn>(
                conn: &mut __C,
                #(#params,)*
                also: &[::std::string::String],
                expected: &#patch,
            ) -> #r<::core::primitive::bool>
        },
        quote!(#p::delete_if::<Self, __C>(conn, #parts, also, expected).await),
    ));
    items
}
