//! How the generated calls take key parts: one `impl KeyPart` parameter
//! per placeholder, or (for `get_many` and `delete_many`) a slice of ids.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// `name: impl KeyPart` parameters and the `&[Cow<str>]` of their parts.
pub(super) fn part_params(krate: &syn::Path, idents: &[&syn::Ident]) -> (Vec<TokenStream>, TokenStream) {
    let params = idents
        .iter()
        .map(|i| quote!(#i: impl #krate::__private::KeyPart))
        .collect();
    let parts = quote!(&[#(#krate::__private::KeyPart::key_part(&#idents)),*]);
    (params, parts)
}

/// How `get_many` and `delete_many` take ids: the type of one (`__K0`, or
/// the tuple `(__K0, __K1, ..)` for a key of several parts), its generic
/// parameters, and the closure that turns one into its key parts.
pub(super) fn many_ids(krate: &syn::Path, idents: &[&syn::Ident]) -> (TokenStream, Vec<TokenStream>, TokenStream) {
    let types: Vec<_> = (0..idents.len()).map(|i| format_ident!("__K{}", i)).collect();
    let generics = types.iter().map(|t| quote!(#t: #krate::__private::KeyPart)).collect();
    let parts = quote!([#(#krate::__private::KeyPart::key_part(#idents)),*]);
    match idents {
        [one] => (quote!(#(#types)*), generics, quote!(|#one| #parts)),
        _ => (quote!((#(#types),*)), generics, quote!(|(#(#idents),*)| #parts)),
    }
}
