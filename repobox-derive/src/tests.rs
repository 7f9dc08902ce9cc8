//! Expansion snapshots: the prettyplease-formatted output of each attribute combination.

fn expand(input: proc_macro2::TokenStream) -> String {
    let input: syn::DeriveInput = syn::parse2(input).expect("test input parses");
    let output = crate::expand::derive_entity(&input);
    let file: syn::File = syn::parse2(output).expect("expansion is valid Rust");
    prettyplease::unparse(&file)
}
