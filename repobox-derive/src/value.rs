//! `#[derive(RedisValue)]`: a unit enum stored as a snake_case string (or as
//! `#[redis(rename_all = "...")]` says).

use proc_macro2::TokenStream;
use quote::quote;

use crate::internals::attr::{self, Attr};
use crate::internals::case::RenameRule;
use crate::internals::ctxt::Ctxt;
use crate::internals::symbol::{ALIAS, REDIS, RENAME};

pub fn derive(input: &syn::DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    // Variants are snake_case unless `rename_all` says otherwise.
    let container = attr::container(&cx, input);
    let krate = container.krate;
    let variants = parse(&cx, input, container.rename_all.unwrap_or(RenameRule::Snake));
    if let Err(err) = cx.check() {
        return err.into_compile_error();
    }
    expand(input, &krate, &variants)
}

struct Variant<'a> {
    ident: &'a syn::Ident,
    wire: String,
    /// Old wire strings it still reads (`#[redis(alias = "...")]`).
    aliases: Vec<syn::LitStr>,
}

fn parse<'a>(cx: &Ctxt, input: &'a syn::DeriveInput, rule: RenameRule) -> Vec<Variant<'a>> {
    let syn::Data::Enum(data) = &input.data else {
        cx.error_spanned_by(&input.ident, "`RedisValue` is for enums of unit variants");
        return Vec::new();
    };
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(&input.generics, "`RedisValue` does not support generic enums");
    }
    let mut out: Vec<Variant<'a>> = Vec::new();
    for v in &data.variants {
        if !matches!(v.fields, syn::Fields::Unit) {
            cx.error_spanned_by(v, "`RedisValue` variants carry no data");
        }
        let mut rename = Attr::none(cx, "#[redis(...)]", RENAME);
        let mut aliases: Vec<syn::LitStr> = Vec::new();
        for a in v.attrs.iter().filter(|a| a.path() == REDIS) {
            let result = a.parse_nested_meta(|meta| {
                if meta.path == RENAME {
                    let lit: syn::LitStr = meta.value()?.parse()?;
                    if lit.value().is_empty() {
                        cx.error_spanned_by(&lit, "`rename` needs a non-empty string");
                    }
                    rename.set(&meta.path, lit.value());
                    Ok(())
                } else if meta.path == ALIAS {
                    aliases.push(attr::alias(cx, &meta)?);
                    Ok(())
                } else {
                    attr::unknown(cx, &meta, "variant attribute", &[RENAME, ALIAS])
                }
            });
            if let Err(e) = result {
                cx.syn_error(e);
            }
        }
        let wire = rename
            .get()
            .unwrap_or_else(|| rule.apply_to_variant(&v.ident.to_string()));
        if out.iter().any(|o| o.wire == wire) {
            cx.error_spanned_by(&v.ident, format!("two variants are stored as `{wire}`"));
        }
        out.push(Variant {
            ident: &v.ident,
            wire,
            aliases,
        });
    }
    // An alias reads as its variant: it may be no variant's name and no
    // other alias.
    let mut seen: Vec<String> = Vec::new();
    for v in &out {
        for alias in &v.aliases {
            let name = alias.value();
            if let Some(other) = out.iter().find(|o| o.wire == name) {
                cx.error_spanned_by(alias, format!("alias `{name}` is how `{}` is stored", other.ident));
            } else if seen.contains(&name) {
                cx.error_spanned_by(alias, format!("alias `{name}` is used twice"));
            }
            seen.push(name);
        }
    }
    if out.is_empty() && !matches!(input.data, syn::Data::Struct(_) | syn::Data::Union(_)) {
        cx.error_spanned_by(&input.ident, "`RedisValue` needs at least one variant");
    }
    out
}

fn expand(input: &syn::DeriveInput, krate: &syn::Path, variants: &[Variant<'_>]) -> TokenStream {
    let ident = &input.ident;
    let p = quote!(#krate::__private);
    let names: Vec<&str> = variants.iter().map(|v| v.wire.as_str()).collect();
    let idents: Vec<&syn::Ident> = variants.iter().map(|v| v.ident).collect();
    let (alias_names, alias_idents, alias_wires): (Vec<&syn::LitStr>, Vec<&syn::Ident>, Vec<&str>) = variants
        .iter()
        .flat_map(|v| v.aliases.iter().map(move |a| (a, v.ident, v.wire.as_str())))
        .fold(
            (Vec::new(), Vec::new(), Vec::new()),
            |(mut a, mut i, mut w), (x, y, z)| {
                a.push(x);
                i.push(y);
                w.push(z);
                (a, i, w)
            },
        );
    let expected = format!(
        "one of {}",
        names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
    );
    quote! {
        const _: () = {
            #[automatically_derived]
            impl #p::RedisValue for #ident {
                const NAMES: &'static [&'static ::core::primitive::str] = &[#(#names),*];

                fn as_str(&self) -> &'static ::core::primitive::str {
                    match self {
                        #(Self::#idents => #names,)*
                    }
                }

                fn from_wire(__s: &::core::primitive::str) -> ::core::option::Option<Self> {
                    match __s {
                        #(#names => ::core::option::Option::Some(Self::#idents),)*
                        #(#alias_names => ::core::option::Option::Some(Self::#alias_idents),)*
                        _ => ::core::option::Option::None,
                    }
                }
            }

            #[automatically_derived]
            impl #p::HashField for #ident {
                const EXPECTED: &'static ::core::primitive::str = #expected;
                const WIRE_TYPE: &'static ::core::primitive::str = "enum";
                const VALUES: &'static [&'static ::core::primitive::str] = &[#(#names),*];
                const VALUE_ALIASES: &'static [(&'static ::core::primitive::str, &'static ::core::primitive::str)] =
                    &[#((#alias_names, #alias_wires)),*];

                fn encode_field(&self) -> ::core::option::Option<#p::Cow<'_, [::core::primitive::u8]>> {
                    ::core::option::Option::Some(#p::Cow::Borrowed(
                        #p::RedisValue::as_str(self).as_bytes(),
                    ))
                }

                fn decode_field(__raw: &[::core::primitive::u8]) -> ::core::option::Option<Self> {
                    <Self as #p::RedisValue>::from_wire(
                        ::core::str::from_utf8(__raw).ok()?,
                    )
                }
            }

            #[automatically_derived]
            impl #p::KeyPart for #ident {
                fn key_part(&self) -> #p::Cow<'_, ::core::primitive::str> {
                    #p::Cow::Borrowed(#p::RedisValue::as_str(self))
                }
            }
        };
    }
}
