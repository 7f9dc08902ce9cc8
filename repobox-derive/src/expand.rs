//! Code generation for `#[derive(RedisEntity)]`: metadata, codec glue and the
//! thin inherent functions that call `repobox_orm`'s engine.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ast::{self, Entity, Field, Index, IndexKind};
use crate::check;
use crate::ctxt::Ctxt;
use crate::template::{KeyTemplate, Piece};

pub fn derive_entity(input: &syn::DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let entity = ast::parse_entity(&mut cx, input);
    if let Some(entity) = &entity {
        check::check(&mut cx, entity);
    }
    match (cx.check(), entity) {
        (Ok(()), Some(entity)) => expand(&entity),
        (Err(err), _) => fallback(input, err),
        (Ok(()), None) => unreachable!("parse_entity reports why it gives up"),
    }
}

/// On error: the errors plus a stub impl, so the user sees the real mistake
/// and not a cascade of "trait not implemented" errors.
fn fallback(input: &syn::DeriveInput, err: syn::Error) -> TokenStream {
    let errors = err.into_compile_error();
    let ident = &input.ident;
    let is_struct = matches!(input.data, syn::Data::Struct(_)) && input.generics.params.is_empty();
    if !is_struct {
        return errors;
    }
    let patch = format_ident!("{}Patch", ident);
    let vis = &input.vis;
    quote! {
        #errors
        #[doc = "Partial update (not generated: the entity has errors)."]
        #[derive(::core::default::Default)]
        #vis struct #patch {}
        const _: () = {
            #[automatically_derived]
            impl ::repobox_orm::__private::EntityPatch for #patch {
                fn write_fields<'__a>(&'__a self, _: &mut ::repobox_orm::__private::FieldWriter<'__a>) -> ::repobox_orm::__private::Result<()> {
                    ::core::unimplemented!()
                }
            }
            #[automatically_derived]
            impl ::repobox_orm::__private::RedisEntity for #ident {
                const META: &'static ::repobox_orm::__private::EntityMeta = ::core::unimplemented!();
                type Patch = #patch;
                fn write_fields<'__a>(&'__a self, _: &mut ::repobox_orm::__private::FieldWriter<'__a>) -> ::repobox_orm::__private::Result<()> {
                    ::core::unimplemented!()
                }
                fn read_fields(_: &str, _: &::repobox_orm::__private::RawHash<'_>) -> ::repobox_orm::__private::Result<Self> {
                    ::core::unimplemented!()
                }
            }
        };
    }
}

fn lit(s: &str) -> syn::LitStr {
    syn::LitStr::new(s, Span::call_site())
}

fn field_by_name<'e, 'a>(entity: &'e Entity<'a>, name: &str) -> &'e Field<'a> {
    entity
        .fields
        .iter()
        .find(|f| f.ident.to_string().trim_start_matches("r#") == name)
        .expect("checked placeholder")
}

fn template_tokens(entity: &Entity<'_>, template: &KeyTemplate) -> TokenStream {
    let source = lit(&template.source);
    let segments = template.pieces.iter().map(|piece| match piece {
        Piece::Lit(text) => {
            let text = lit(text);
            quote!(::repobox_orm::__private::Segment::Lit(#text))
        }
        Piece::Placeholder(name) => {
            let field = lit(&field_by_name(entity, name).wire);
            let name = lit(name);
            quote!(::repobox_orm::__private::Segment::Field { placeholder: #name, field: #field })
        }
    });
    quote! {
        ::repobox_orm::__private::KeyTemplate { source: #source, segments: &[#(#segments),*] }
    }
}

fn meta_tokens(entity: &Entity<'_>) -> TokenStream {
    let name = lit(&entity.input.ident.to_string());
    let key = template_tokens(entity, entity.key.as_ref().expect("checked key"));
    let fields = entity.fields.iter().filter(|f| f.is_stored()).map(|f| {
        let wire = lit(&f.wire);
        let rust = lit(&f.ident.to_string());
        let optional = ast::is_option(f.ty);
        let json = f.json;
        quote!(::repobox_orm::__private::FieldMeta { name: #wire, rust_name: #rust, optional: #optional, json: #json })
    });
    let indexes = entity.indexes.iter().map(|index| {
        let name = lit(&index.name());
        let key = template_tokens(entity, &index.template);
        let kind = match &index.kind {
            IndexKind::Sorted { score } => {
                let score = lit(&field_by_name(entity, &score.to_string()).wire);
                quote!(::repobox_orm::__private::IndexKind::Sorted { score: #score })
            }
            IndexKind::Set => quote!(::repobox_orm::__private::IndexKind::Set),
            IndexKind::Unique => quote!(::repobox_orm::__private::IndexKind::Unique),
        };
        quote!(::repobox_orm::__private::IndexMeta { name: #name, kind: #kind, key: #key })
    });
    let ttl = match &entity.ttl {
        Some(ttl) => {
            let millis = ttl.millis;
            quote!(::core::option::Option::Some(::repobox_orm::__private::Duration::from_millis(#millis)))
        }
        None => quote!(::core::option::Option::None),
    };
    quote! {
        &::repobox_orm::__private::EntityMeta {
            name: #name,
            key: #key,
            fields: &[#(#fields),*],
            indexes: &[#(#indexes),*],
            ttl: #ttl,
        }
    }
}

/// `__out.put("name", <encoding of value>)` for one field; `value` is a `&T` expression.
fn put_field(f: &Field<'_>, value: TokenStream) -> TokenStream {
    let wire = lit(&f.wire);
    let ty = f.ty;
    if f.json {
        quote_spanned! {ty.span()=>
            __out.put(#wire, ::repobox_orm::__private::encode_json_field::<#ty>(#wire, #value)?);
        }
    } else {
        quote_spanned! {ty.span()=>
            __out.put(#wire, <#ty as ::repobox_orm::__private::HashField>::encode_field(#value));
        }
    }
}

fn key_fields<'e>(entity: &'e Entity<'_>) -> Vec<&'e str> {
    entity
        .key
        .as_ref()
        .map(|k| k.placeholders().collect())
        .unwrap_or_default()
}

fn is_patchable(entity: &Entity<'_>, f: &Field<'_>) -> bool {
    f.is_stored() && !key_fields(entity).contains(&f.ident.to_string().as_str())
}

fn codec_impl(entity: &Entity<'_>) -> TokenStream {
    let ident = &entity.input.ident;
    let patch = format_ident!("{}Patch", ident);
    let meta = meta_tokens(entity);
    let stored: Vec<&Field<'_>> = entity.fields.iter().filter(|f| f.is_stored()).collect();
    let n = stored.len();

    let writes = stored.iter().map(|f| {
        let ident = f.ident;
        put_field(f, quote!(&self.#ident))
    });
    let slots = stored.iter().enumerate().map(|(i, f)| {
        let wire = syn::LitByteStr::new(f.wire.as_bytes(), Span::call_site());
        quote!(#wire => __slots[#i] = ::core::option::Option::Some(__value),)
    });
    let reads = entity.fields.iter().map(|f| {
        let ident = f.ident;
        let ty = f.ty;
        if f.skip {
            return quote_spanned!(ty.span()=> #ident: <#ty as ::core::default::Default>::default(),);
        }
        let i = stored.iter().position(|s| s.ident == f.ident).expect("stored");
        let wire = lit(&f.wire);
        let decode = match (f.json, f.default) {
            (false, false) => quote_spanned!(ty.span()=> ::repobox_orm::__private::decode_field::<#ty>),
            (false, true) => quote_spanned!(ty.span()=> ::repobox_orm::__private::decode_field_or_default::<#ty>),
            (true, false) => quote_spanned!(ty.span()=> ::repobox_orm::__private::decode_json_field::<#ty>),
            (true, true) => quote_spanned!(ty.span()=> ::repobox_orm::__private::decode_json_field_or_default::<#ty>),
        };
        quote!(#ident: #decode(__key, #wire, __slots[#i])?,)
    });
    let patch_writes = entity.fields.iter().filter(|f| is_patchable(entity, f)).map(|f| {
        let ident = f.ident;
        let put = put_field(f, quote!(__v));
        quote! {
            if let ::core::option::Option::Some(__v) = &self.#ident {
                #put
            }
        }
    });

    quote! {
        #[automatically_derived]
        impl ::repobox_orm::__private::RedisEntity for #ident {
            const META: &'static ::repobox_orm::__private::EntityMeta = #meta;
            type Patch = #patch;

            fn write_fields<'__a>(
                &'__a self,
                __out: &mut ::repobox_orm::__private::FieldWriter<'__a>,
            ) -> ::repobox_orm::__private::Result<()> {
                #(#writes)*
                ::core::result::Result::Ok(())
            }

            fn read_fields(
                __key: &::core::primitive::str,
                __hash: &::repobox_orm::__private::RawHash<'_>,
            ) -> ::repobox_orm::__private::Result<Self> {
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
        impl ::repobox_orm::__private::EntityPatch for #patch {
            fn write_fields<'__a>(
                &'__a self,
                __out: &mut ::repobox_orm::__private::FieldWriter<'__a>,
            ) -> ::repobox_orm::__private::Result<()> {
                #(#patch_writes)*
                ::core::result::Result::Ok(())
            }
        }
    }
}

fn patch_struct(entity: &Entity<'_>) -> TokenStream {
    let ident = &entity.input.ident;
    let vis = &entity.input.vis;
    let patch = format_ident!("{}Patch", ident);
    let doc = format!(
        "A partial update of [`{ident}`] for `{ident}::update`: every `Some` field is written, \
         every `None` field is left as it is (`Some(None)` removes an optional field)."
    );
    let fields = entity.fields.iter().filter(|f| is_patchable(entity, f)).map(|f| {
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

/// `name: impl KeyPart` parameters and the `&[Cow<str>]` of their parts.
fn part_params<'t>(names: impl Iterator<Item = &'t str>) -> (Vec<TokenStream>, TokenStream) {
    let idents: Vec<syn::Ident> = names.map(|n| format_ident!("{}", n)).collect();
    let params = idents
        .iter()
        .map(|i| quote!(#i: impl ::repobox_orm::__private::KeyPart))
        .collect();
    let parts = quote!(&[#(::repobox_orm::__private::KeyPart::key_part(&#idents)),*]);
    (params, parts)
}

fn index_fns(entity: &Entity<'_>, pos: usize, index: &Index) -> TokenStream {
    let name = format_ident!("{}", index.name());
    let count = format_ident!("count_{}", index.name());
    let (params, parts) = part_params(index.template.placeholders());
    let source = &index.template.source;
    let meta = quote!(&<Self as ::repobox_orm::__private::RedisEntity>::META.indexes[#pos]);
    let conn = quote!(__C: ::repobox_orm::__private::ConnectionLike + ::core::marker::Send);
    let ty = &entity.input.ident;
    let key = quote! {
        let __index = #meta;
        let __key = ::repobox_orm::__private::engine::index_key(__index, #parts)?;
    };
    let count_fn = |doc: String| {
        quote! {
            #[doc = #doc]
            pub async fn #count<#conn>(conn: &mut __C, #(#params),*) -> ::repobox_orm::__private::Result<::core::primitive::u64> {
                #key
                ::repobox_orm::__private::engine::count::<Self, __C>(conn, __index, &__key).await
            }
        }
    };
    match &index.kind {
        IndexKind::Sorted { score } => {
            let doc = format!(
                "A page of the `{ty}`s in the sorted index `{source}` (score `{score}`); \
                 two round trips whatever the page size (one more to repair entries whose entity is gone)."
            );
            let count_fn = count_fn(format!("How many `{ty}`s the sorted index `{source}` holds."));
            quote! {
                #[doc = #doc]
                pub async fn #name<#conn>(
                    conn: &mut __C, #(#params,)* page: ::repobox_orm::__private::Page,
                ) -> ::repobox_orm::__private::Result<::std::vec::Vec<Self>> {
                    #key
                    ::repobox_orm::__private::engine::sorted_page::<Self, __C>(conn, __index, &__key, page).await
                }
                #count_fn
            }
        }
        IndexKind::Set => {
            let doc = format!(
                "Every `{ty}` in the set index `{source}`; two round trips (one more to repair entries whose entity is gone)."
            );
            let count_fn = count_fn(format!("How many `{ty}`s the set index `{source}` holds."));
            quote! {
                #[doc = #doc]
                pub async fn #name<#conn>(conn: &mut __C, #(#params),*) -> ::repobox_orm::__private::Result<::std::vec::Vec<Self>> {
                    #key
                    ::repobox_orm::__private::engine::set_members::<Self, __C>(conn, __index, &__key).await
                }
                #count_fn
            }
        }
        IndexKind::Unique => {
            let doc = format!("The `{ty}` that the unique index `{source}` maps to; at most two round trips.");
            quote! {
                #[doc = #doc]
                pub async fn #name<#conn>(conn: &mut __C, #(#params),*) -> ::repobox_orm::__private::Result<::core::option::Option<Self>> {
                    #key
                    ::repobox_orm::__private::engine::unique_get::<Self, __C>(conn, __index, &__key).await
                }
            }
        }
    }
}

fn inherent_fns(entity: &Entity<'_>) -> TokenStream {
    let ident = &entity.input.ident;
    let patch = format_ident!("{}Patch", ident);
    let key = entity.key.as_ref().expect("checked key");
    let source = &key.source;
    let (params, parts) = part_params(key.placeholders());
    let conn = quote!(__C: ::repobox_orm::__private::ConnectionLike + ::core::marker::Send);
    let r = quote!(::repobox_orm::__private::Result);
    let engine = quote!(::repobox_orm::__private::engine);
    let target = quote!(let __target = #engine::Target::from_parts::<Self>(#parts)?;);
    let key_args: Vec<syn::Ident> = key.placeholders().map(|n| format_ident!("{}", n)).collect();
    let ttl_fns = entity.ttl.as_ref().map(|_| {
        quote! {
            /// The entity's remaining TTL; `None` if it is absent.
            pub async fn ttl<#conn>(conn: &mut __C, #(#params),*) -> #r<::core::option::Option<::repobox_orm::__private::Duration>> {
                let __key = Self::key_for(#(#key_args),*)?;
                #engine::ttl(conn, &__key).await
            }

            /// Sets the entity's TTL (its index keys are lengthened to outlive it);
            /// `Err(NotFound)` if it is absent.
            pub async fn expire_in<#conn>(conn: &mut __C, #(#params,)* ttl: ::repobox_orm::__private::Duration) -> #r<()> {
                #target
                #engine::expire_in::<Self, __C>(conn, &__target, ttl).await
            }
        }
    });
    let index_fns = entity
        .indexes
        .iter()
        .enumerate()
        .map(|(i, ix)| index_fns(entity, i, ix));
    let key_doc = format!("The key `{source}` for these key parts; `Err(InvalidKeyPart)` on a bad part.");
    quote! {
        #[automatically_derived]
        impl #ident {
            #[doc = #key_doc]
            pub fn key_for(#(#params),*) -> #r<::std::string::String> {
                #engine::key_for::<Self>(#parts)
            }

            /// This entity's key.
            pub fn key(&self) -> #r<::std::string::String> {
                #engine::entity_key(self)
            }

            /// This entity's id: its key parts joined by `:`, as index entries hold it.
            pub fn entity_id(&self) -> #r<::std::string::String> {
                #engine::entity_id(self)
            }

            /// Creates the entity with its index entries and TTL in one round trip;
            /// `Err(AlreadyExists)` or `Err(UniqueViolation)` write nothing.
            pub async fn create<#conn>(conn: &mut __C, entity: &Self) -> #r<()> {
                #engine::create(conn, entity).await
            }

            /// Creates or overwrites the entity, moving index entries whose fields changed
            /// and setting its full TTL, atomically.
            pub async fn save<#conn>(conn: &mut __C, entity: &Self) -> #r<()> {
                #engine::save(conn, entity).await
            }

            /// Reads the entity; `None` if it is absent or expired. One round trip.
            pub async fn get<#conn>(conn: &mut __C, #(#params),*) -> #r<::core::option::Option<Self>> {
                let __key = Self::key_for(#(#key_args),*)?;
                #engine::get(conn, &__key).await
            }

            /// Reads many entities by id (key parts joined by `:`) in one round trip,
            /// in input order, `None` where absent.
            pub async fn get_many<#conn, __S: ::core::convert::AsRef<::core::primitive::str>>(
                conn: &mut __C,
                ids: &[__S],
            ) -> #r<::std::vec::Vec<::core::option::Option<Self>>> {
                #engine::get_many(conn, ids).await
            }

            /// Applies a partial update atomically with its index entries, keeping the
            /// remaining TTL; `Err(NotFound)` if the entity is absent (never re-creates it).
            pub async fn update<#conn>(conn: &mut __C, #(#params,)* patch: #patch) -> #r<()> {
                #target
                #engine::update::<Self, __C>(conn, &__target, &patch).await
            }

            /// Deletes the entity and its index entries atomically; `false` if it was absent.
            pub async fn delete<#conn>(conn: &mut __C, #(#params),*) -> #r<::core::primitive::bool> {
                #target
                #engine::delete::<Self, __C>(conn, &__target).await
            }

            /// Creates many entities, each atomically with its indexes and TTL, in
            /// pipelined chunks; per entity `Ok` or why it was not created.
            pub async fn create_many<#conn>(conn: &mut __C, entities: &[Self]) -> #r<::std::vec::Vec<#r<()>>> {
                #engine::create_many(conn, entities).await
            }

            /// Saves many entities, each atomically with its indexes and TTL, in
            /// pipelined chunks; per entity `Ok` or why it was not saved.
            pub async fn save_many<#conn>(conn: &mut __C, entities: &[Self]) -> #r<::std::vec::Vec<#r<()>>> {
                #engine::save_many(conn, entities).await
            }

            /// Deletes many entities by id (key parts joined by `:`), each atomically
            /// with its index entries; `true` where one existed.
            pub async fn delete_many<#conn, __S: ::core::convert::AsRef<::core::primitive::str>>(
                conn: &mut __C,
                ids: &[__S],
            ) -> #r<::std::vec::Vec<::core::primitive::bool>> {
                #engine::delete_many::<Self, __C, __S>(conn, ids).await
            }

            /// Whether the entity exists.
            pub async fn exists<#conn>(conn: &mut __C, #(#params),*) -> #r<::core::primitive::bool> {
                let __key = Self::key_for(#(#key_args),*)?;
                #engine::exists(conn, &__key).await
            }

            #ttl_fns
            #(#index_fns)*
        }
    }
}

fn expand(entity: &Entity<'_>) -> TokenStream {
    let patch = patch_struct(entity);
    let codec = codec_impl(entity);
    let inherent = inherent_fns(entity);
    quote! {
        #patch
        const _: () = {
            #codec
            #inherent
        };
    }
}
