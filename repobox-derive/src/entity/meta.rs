//! The entity's static metadata (`RedisEntity::META`) and the compile-time
//! assertions on the types its templates use.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::lit;
use crate::internals::ast::{Entity, IndexKind, Piece, Template};
use crate::internals::unraw::unraw;

fn template_tokens(entity: &Entity<'_>, template: &Template, secret: bool) -> TokenStream {
    let p = entity.private();
    let source = lit(&template.source);
    let segments = template.pieces.iter().map(|piece| match piece {
        Piece::Lit(text) => {
            let text = lit(text);
            quote!(#p::Segment::Lit(#text))
        }
        Piece::Field(i) => {
            let f = &entity.fields[*i];
            let field = lit(&f.wire);
            let name = lit(&unraw(f.ident));
            quote!(#p::Segment::Field { placeholder: #name, field: #field })
        }
    });
    let max_part_len = match &entity.max_part_len {
        Some(n) => quote!(#n),
        None => quote!(#p::DEFAULT_MAX_KEY_PART_LEN),
    };
    quote! {
        #p::KeyTemplate { source: #source, segments: &[#(#segments),*], max_part_len: #max_part_len, secret: #secret }
    }
}

/// The `&'static EntityMeta` expression.
pub fn meta(entity: &Entity<'_>) -> TokenStream {
    let p = entity.private();
    let key = template_tokens(entity, &entity.key, entity.secret);
    let previous = match &entity.previous {
        Some(previous) => {
            let previous = template_tokens(entity, previous, entity.secret);
            quote!(::core::option::Option::Some(#previous))
        }
        None => quote!(::core::option::Option::None),
    };
    let indexes = entity.indexes.iter().map(|index| {
        let name = lit(&index.name(entity));
        // Index keys are built from other fields; a secret key's parts are its id only.
        let key = template_tokens(entity, &index.template, false);
        let kind = match &index.kind {
            IndexKind::Sorted { score, .. } => {
                let score = lit(&entity.fields[*score].wire);
                quote!(#p::IndexKind::Sorted { score: #score })
            }
            IndexKind::Set => quote!(#p::IndexKind::Set),
            IndexKind::Unique => quote!(#p::IndexKind::Unique),
        };
        let co_located = entity.shares_slot(&index.template);
        let previous = match &index.previous {
            Some(previous) => {
                let previous = template_tokens(entity, previous, false);
                quote!(::core::option::Option::Some(#previous))
            }
            None => quote!(::core::option::Option::None),
        };
        quote!(#p::IndexMeta { name: #name, kind: #kind, key: #key, previous: #previous, co_located: #co_located })
    });
    let ttl = match &entity.ttl {
        Some(ttl) => {
            let millis = ttl.millis;
            quote!(::core::option::Option::Some(#p::Duration::from_millis(#millis)))
        }
        None => quote!(::core::option::Option::None),
    };
    let encrypted = entity
        .fields
        .iter()
        .filter(|f| f.is_stored() && f.encrypted)
        .map(|f| lit(&f.wire));
    let aliased = entity.fields.iter().filter(|f| f.is_stored()).flat_map(|f| {
        let wire = lit(&f.wire);
        f.aliases.iter().map(move |a| quote!((#wire, #a)))
    });
    let name = lit(&entity.input.ident.to_string());
    let co_located = entity.co_located();
    let fields = entity.fields.iter().filter(|f| f.is_stored()).map(|f| {
        let wire = lit(&f.wire);
        let ty = f.ty;
        let encrypted = f.encrypted;
        // A `default` field may be absent on the wire: absent reads as the default.
        let default = f.default;
        let aliases = &f.aliases;
        if f.json {
            let optional = default || crate::internals::ast::is_written_as_option(ty);
            quote!(#p::FieldMeta {
                name: #wire,
                wire_type: "json",
                optional: #optional,
                encrypted: #encrypted,
                values: &[],
                value_aliases: &[],
                aliases: &[#(#aliases),*],
            })
        } else {
            quote!(#p::FieldMeta {
                name: #wire,
                wire_type: <#ty as #p::HashField>::WIRE_TYPE,
                optional: #default || <#ty as #p::HashField>::OPTIONAL,
                encrypted: #encrypted,
                values: <#ty as #p::HashField>::VALUES,
                value_aliases: <#ty as #p::HashField>::VALUE_ALIASES,
                aliases: &[#(#aliases),*],
            })
        }
    });
    quote! {
        &#p::EntityMeta {
            name: #name,
            fields: &[#(#fields),*],
            key: #key,
            previous: #previous,
            indexes: &[#(#indexes),*],
            ttl: #ttl,
            encrypted: &[#(#encrypted),*],
            aliases: &[#(#aliased),*],
            co_located: #co_located,
        }
    }
}

/// Every placeholder's field is a `KeyPart`, every score a `Score`: asserted
/// with trait bounds at the field's type, so the error points there.
pub fn assertions(entity: &Entity<'_>) -> TokenStream {
    let p = entity.private();
    let mut seen = Vec::new();
    let mut out = TokenStream::new();
    let templates = std::iter::once(&entity.key).chain(entity.indexes.iter().map(|ix| &ix.template));
    for i in templates.flat_map(Template::placeholders) {
        if seen.contains(&i) {
            continue;
        }
        seen.push(i);
        let ty = entity.fields[i].ty;
        out.extend(quote_spanned! {ty.span()=>
            const _: () = #p::assert_key_part::<#ty>();
        });
    }
    for index in &entity.indexes {
        if let IndexKind::Sorted { score, .. } = &index.kind {
            let ty = entity.fields[*score].ty;
            out.extend(quote_spanned! {ty.span()=>
                const _: () = #p::assert_score::<#ty>();
            });
        }
    }
    out
}
