//! What the derive emits when an attribute is wrong: the errors, plus stubs of
//! everything a caller can name (the traits, `EPatch`, `EField` and every
//! inherent function the entity would have had), so that the real mistake is
//! the only error and call sites do not add "no function named ..." noise.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::api::{self, Body, Shape};
use super::codec;
use crate::internals::ast::Entity;
use crate::internals::names;
use crate::internals::symbol::TTL;

pub fn fallback(input: &syn::DeriveInput, entity: Option<&Entity<'_>>, err: syn::Error) -> TokenStream {
    let errors = err.into_compile_error();
    let named = match &input.data {
        syn::Data::Struct(syn::DataStruct {
            fields: syn::Fields::Named(named),
            ..
        }) if input.generics.params.is_empty() => named,
        _ => return errors,
    };
    let ident = &input.ident;
    let vis = &input.vis;
    let default_krate: syn::Path = syn::parse_quote!(::repobox_orm);
    let (krate, patch_struct, field_enum, inherent) = match entity {
        Some(entity) => {
            let mut shape = Shape::of(entity);
            // A `#[ttl]` that failed to parse still promises the TTL functions.
            if shape.ttl.is_none() && input.attrs.iter().any(|a| a.path() == TTL) {
                shape.ttl = Some(0);
            }
            // Stub each index function once, and none that the check refused.
            let mut names = Vec::new();
            shape.indexes.retain(|ix| {
                let ok = syn::parse_str::<syn::Ident>(&ix.name).is_ok()
                    && !names.contains(&ix.name)
                    && names::index_name_clash(&ix.name).is_none();
                names.push(ix.name.clone());
                ok
            });
            (
                &entity.krate,
                codec::patch_struct(entity),
                codec::field_enum(entity),
                api::inherent(&shape, Body::Stub),
            )
        }
        None => {
            // No key to build an entity on: every field in the patch, no
            // field variants, and only the functions that take no key parts.
            let patch = format_ident!("{}Patch", ident);
            let field = format_ident!("{}Field", ident);
            let fields = named.named.iter().map(|f| {
                let (name, ty) = (&f.ident, &f.ty);
                quote!(pub #name: ::core::option::Option<#ty>,)
            });
            let p = quote!(#default_krate::__private);
            let shape = Shape {
                ident,
                krate: &default_krate,
                key: None,
                ttl: None,
                co_located: false,
                indexes: Vec::new(),
            };
            (
                &default_krate,
                quote! {
                    #[doc = "Partial update (not generated: the entity has errors)."]
                    #[derive(::core::default::Default)]
                    #vis struct #patch { #(#fields)* }
                },
                quote! {
                    #[doc = "Stored fields (not generated: the entity has errors)."]
                    #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::marker::Copy, ::core::cmp::PartialEq, ::core::cmp::Eq)]
                    #vis enum #field {}
                    const _: () = {
                        impl #p::EntityField for #field {
                            const ALL: &'static [Self] = &[];
                            fn name(self) -> &'static ::core::primitive::str { match self {} }
                        }
                    };
                },
                api::inherent(&shape, Body::Stub),
            )
        }
    };
    let p = quote!(#krate::__private);
    let patch = format_ident!("{}Patch", ident);
    let field = format_ident!("{}Field", ident);
    quote! {
        #errors
        #patch_struct
        #field_enum
        const _: () = {
            #[automatically_derived]
            impl #p::EntityPatch for #patch {
                fn write_fields<'__a>(&'__a self, _: &mut #p::FieldWriter<'__a>) -> #p::Result<()> {
                    ::core::unimplemented!()
                }
            }
            #[automatically_derived]
            impl #patch {
                #[doc = "Not generated: the entity has errors."]
                pub fn apply_to(self, _: &mut #ident) {
                    ::core::unimplemented!()
                }
            }
            #[automatically_derived]
            impl #p::RedisEntity for #ident {
                const META: &'static #p::EntityMeta = ::core::unimplemented!();
                type Patch = #patch;
                type Field = #field;
                fn write_fields<'__a>(&'__a self, _: &mut #p::FieldWriter<'__a>) -> #p::Result<()> {
                    ::core::unimplemented!()
                }
                fn read_fields(_: &::core::primitive::str, _: &#p::RawHash<'_>) -> #p::Result<Self> {
                    ::core::unimplemented!()
                }
            }
            #inherent
        };
    }
}
