//! The hash codec glue: `RedisEntity` (write and read every field), the
//! `EPatch` struct with its `EntityPatch` impl and `apply_to`, and the
//! `EField` enum.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::{lit, meta};
use crate::internals::ast::{Entity, Field};
use crate::internals::unraw::unraw;

/// `__out.put("name", <encoding of value>)` for one field; `value` is a `&T` expression.
fn put_field(p: &TokenStream, f: &Field<'_>, value: TokenStream) -> TokenStream {
    let wire = lit(&f.wire);
    let ty = f.ty;
    if f.json {
        quote_spanned! {ty.span()=>
            __out.put(#wire, #p::encode_json_field::<#ty>(#wire, #value)?);
        }
    } else {
        quote_spanned! {ty.span()=>
            __out.put(#wire, <#ty as #p::HashField>::encode_field(#value));
        }
    }
}

/// The fields a patch can set: stored and not part of the key.
fn patchable<'e, 'a>(entity: &'e Entity<'a>) -> impl Iterator<Item = &'e Field<'a>> {
    entity.fields.iter().filter(|f| f.is_stored() && !entity.is_key_part(f))
}

/// The `EField` enum's variant of a field: `user_id` -> `UserId`.
fn variant(f: &Field<'_>) -> syn::Ident {
    let camel: String = unraw(f.ident)
        .split('_')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            c.next()
                .map_or(String::new(), |first| first.to_uppercase().chain(c).collect())
        })
        .collect();
    format_ident!(
        "{}",
        if camel.is_empty() { "Field".to_owned() } else { camel },
        span = f.ident.span()
    )
}

pub fn field_enum(entity: &Entity<'_>) -> TokenStream {
    let ident = &entity.input.ident;
    let vis = &entity.input.vis;
    let p = entity.private();
    let name = format_ident!("{}Field", ident);
    let stored: Vec<&Field<'_>> = entity.fields.iter().filter(|f| f.is_stored()).collect();
    let variants: Vec<syn::Ident> = stored.iter().map(|f| variant(f)).collect();
    let wires: Vec<syn::LitStr> = stored.iter().map(|f| lit(&f.wire)).collect();
    let docs = stored
        .iter()
        .map(|f| format!("The hash field `{}` (`{}`).", f.wire, f.ident));
    let doc = format!("The stored fields of [`{ident}`], by their hash field names.");
    let body = if variants.is_empty() {
        quote!(match self {})
    } else {
        quote!(match self { #(Self::#variants => #wires,)* })
    };
    quote! {
        #[doc = #doc]
        #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::marker::Copy, ::core::cmp::PartialEq, ::core::cmp::Eq, ::core::hash::Hash)]
        #vis enum #name {
            #(#[doc = #docs] #variants,)*
        }

        const _: () = {
            #[automatically_derived]
            impl #p::EntityField for #name {
                const ALL: &'static [Self] = &[#(Self::#variants),*];

                fn name(self) -> &'static ::core::primitive::str {
                    #body
                }
            }
        };
    }
}

pub fn patch_struct(entity: &Entity<'_>) -> TokenStream {
    let ident = &entity.input.ident;
    let vis = &entity.input.vis;
    let patch = format_ident!("{}Patch", ident);
    let doc = format!(
        "A partial update of [`{ident}`] for `{ident}::update`: every `Some` field is written, \
         every `None` field is left as it is (`Some(None)` removes an optional field)."
    );
    let fields = patchable(entity).map(|f| {
        let ident = f.ident;
        let ty = f.ty;
        let doc = format!("New value of `{ident}`.");
        quote!(#[doc = #doc] pub #ident: ::core::option::Option<#ty>,)
    });
    quote! {
        #[doc = #doc]
        #[derive(::core::default::Default)]
        #vis struct #patch {
            #(#fields)*
        }
    }
}

pub fn codec_impl(entity: &Entity<'_>) -> TokenStream {
    let ident = &entity.input.ident;
    let p = entity.private();
    let patch = format_ident!("{}Patch", ident);
    let field_enum = format_ident!("{}Field", ident);
    let meta = meta::meta(entity);
    let stored: Vec<&Field<'_>> = entity.fields.iter().filter(|f| f.is_stored()).collect();
    let n = stored.len();

    let writes = stored.iter().map(|f| {
        let ident = f.ident;
        put_field(&p, f, quote!(&self.#ident))
    });
    let slots = stored.iter().enumerate().map(|(i, f)| {
        let wire = syn::LitByteStr::new(f.wire.as_bytes(), Span::call_site());
        // An alias is read only where the field's own name is absent.
        let aliases = f.aliases.iter().map(|a| {
            let alias = syn::LitByteStr::new(a.value().as_bytes(), Span::call_site());
            quote! {
                #alias => if __slots[#i].is_none() {
                    __slots[#i] = ::core::option::Option::Some(__value);
                },
            }
        });
        quote! {
            #wire => __slots[#i] = ::core::option::Option::Some(__value),
            #(#aliases)*
        }
    });
    let reads = entity.fields.iter().map(|f| {
        let ident = f.ident;
        let ty = f.ty;
        let Some(i) = stored.iter().position(|s| s.ident == f.ident) else {
            return quote_spanned!(ty.span()=> #ident: <#ty as ::core::default::Default>::default(),);
        };
        let wire = lit(&f.wire);
        let decode = match (f.json, f.default) {
            (false, false) => quote_spanned!(ty.span()=> #p::decode_field::<#ty>),
            (false, true) => quote_spanned!(ty.span()=> #p::decode_field_or_default::<#ty>),
            (true, false) => quote_spanned!(ty.span()=> #p::decode_json_field::<#ty>),
            (true, true) => quote_spanned!(ty.span()=> #p::decode_json_field_or_default::<#ty>),
        };
        quote!(#ident: #decode(__key, #wire, __slots[#i])?,)
    });
    let patch_writes = patchable(entity).map(|f| {
        let ident = f.ident;
        let put = put_field(&p, f, quote!(__v));
        quote! {
            if let ::core::option::Option::Some(__v) = &self.#ident {
                #put
            }
        }
    });
    let applies = patchable(entity).map(|f| {
        let ident = f.ident;
        quote! {
            if let ::core::option::Option::Some(__v) = self.#ident {
                __entity.#ident = __v;
            }
        }
    });
    let apply_doc = format!("Applies the patch to a [`{ident}`] in memory, as `{ident}::update` does in Redis.");
    let assertions = meta::assertions(entity);

    quote! {
        #assertions

        #[automatically_derived]
        impl #p::RedisEntity for #ident {
            const META: &'static #p::EntityMeta = #meta;
            type Patch = #patch;
            type Field = #field_enum;

            fn write_fields<'__a>(
                &'__a self,
                __out: &mut #p::FieldWriter<'__a>,
            ) -> #p::Result<()> {
                #(#writes)*
                ::core::result::Result::Ok(())
            }

            fn read_fields(
                __key: &::core::primitive::str,
                __hash: &#p::RawHash<'_>,
            ) -> #p::Result<Self> {
                let mut __slots: [::core::option::Option<&[::core::primitive::u8]>; #n] =
                    [::core::option::Option::None; #n];
                for &(__name, __value) in __hash.pairs() {
                    match __name {
                        #(#slots)*
                        _ => {}
                    }
                }
                ::core::result::Result::Ok(Self { #(#reads)* })
            }
        }

        #[automatically_derived]
        impl #p::EntityPatch for #patch {
            fn write_fields<'__a>(
                &'__a self,
                __out: &mut #p::FieldWriter<'__a>,
            ) -> #p::Result<()> {
                #(#patch_writes)*
                ::core::result::Result::Ok(())
            }
        }

        #[automatically_derived]
        impl #patch {
            #[doc = #apply_doc]
            pub fn apply_to(self, __entity: &mut #ident) {
                #(#applies)*
            }
        }
    }
}
