//! `#[derive(RedisEntity)]`: parse, check, then expand or fall back.
//!
//! - `meta`: the static metadata and the type assertions of its templates;
//! - `codec`: `RedisEntity`, `EPatch` and `EField`;
//! - `api`: the inherent functions, listed once for the emitter and the fallback;
//! - `fallback`: the errors and stubs of everything a caller can name.

pub mod api;
mod codec;
mod fallback;
mod meta;

use proc_macro2::{Span, TokenStream};
use quote::quote;

use crate::internals::ast::{self, Entity};
use crate::internals::check;
use crate::internals::ctxt::Ctxt;

pub fn derive(input: &syn::DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let entity = ast::parse_entity(&cx, input);
    if let Some(entity) = &entity {
        check::check(&cx, entity);
    }
    match (cx.check(), &entity) {
        (Ok(()), Some(entity)) => expand(entity),
        (Err(err), entity) => fallback::fallback(input, entity.as_ref(), err),
        (Ok(()), None) => fallback::fallback(
            input,
            None,
            syn::Error::new_spanned(&input.ident, "`RedisEntity` could not read this struct"),
        ),
    }
}

fn expand(entity: &Entity<'_>) -> TokenStream {
    let patch = codec::patch_struct(entity);
    let field = codec::field_enum(entity);
    let codec = codec::codec_impl(entity);
    let inherent = api::inherent(&api::Shape::of(entity), api::Body::Real);
    // The runtime compiles encrypted fields only with its `encryption` feature.
    let krate = &entity.krate;
    let encryption = entity
        .fields
        .iter()
        .filter(|f| f.is_stored() && f.encrypted)
        .map(|f| quote::quote_spanned!(f.ident.span()=> #krate::__private::encryption_enabled!();));
    quote! {
        #patch
        #field
        const _: () = {
            #(#encryption)*
            #codec
            #inherent
        };
    }
}

/// A string literal for generated code.
fn lit(s: &str) -> syn::LitStr {
    syn::LitStr::new(s, Span::call_site())
}
