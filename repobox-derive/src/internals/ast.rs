//! The derive's IR: the input struct read into `Entity`, `Field` and `Index`,
//! keeping the syn nodes for spans. Placeholders and score fields are
//! resolved to field positions here, once; parsing reports every error in
//! `Ctxt` and gives up only when there is no key to build an entity on.

use proc_macro2::Span;

pub use super::attr::Ttl;
use super::attr::{self, Attr, BoolAttr};
use super::ctxt::Ctxt;
use super::symbol::*;
use super::template::{RawPiece, RawTemplate};
use super::unraw::{names, unraw};

pub struct Entity<'a> {
    pub input: &'a syn::DeriveInput,
    /// The path generated code names the runtime by (`::repobox_orm`, or `#[redis(crate = "...")]`).
    pub krate: syn::Path,
    pub key: Template,
    /// `max_part_len = N` of the `#[key]`, for the key and every index template.
    pub max_part_len: Option<usize>,
    /// `secret` in the `#[key]`: the key parts are secrets.
    pub secret: bool,
    /// `previous = "..."` in the `#[key]`: the key template before a re-key.
    pub previous: Option<Template>,
    /// `#[cluster(co_located)]`: a template outside the key's slot is an error.
    pub require_co_located: bool,
    pub ttl: Option<Ttl>,
    pub indexes: Vec<Index>,
    pub fields: Vec<Field<'a>>,
}

pub struct Field<'a> {
    pub ident: &'a syn::Ident,
    pub ty: &'a syn::Type,
    /// The hash field name.
    pub wire: String,
    /// Whether `rename` chose the wire name.
    pub renamed: bool,
    pub skip: bool,
    pub default: bool,
    pub json: bool,
    /// Stored sealed with the key ring (`#[redis(encrypted)]`).
    pub encrypted: bool,
    /// Old hash field names it is read under when its own is absent
    /// (`#[redis(alias = "...")]`); every write removes them.
    pub aliases: Vec<syn::LitStr>,
}

/// A key or index template whose placeholders are resolved to fields.
pub struct Template {
    pub source: String,
    pub pieces: Vec<Piece>,
    /// The template literal.
    pub span: Span,
}

pub enum Piece {
    Lit(String),
    /// A placeholder: the position of its field in `Entity::fields`.
    Field(usize),
}

pub enum IndexKind {
    /// The score field's position, and the `score = field` ident for spans.
    Sorted {
        score: usize,
        ident: syn::Ident,
    },
    Set,
    Unique,
}

pub struct Index {
    pub kind: IndexKind,
    pub template: Template,
    /// `name = "..."` as written.
    pub explicit_name: Option<syn::LitStr>,
    /// `previous = "..."`: the index's template before a re-key.
    pub previous: Option<Template>,
}

impl Template {
    /// The field positions of the placeholders, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = usize> + '_ {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Field(i) => Some(*i),
            Piece::Lit(_) => None,
        })
    }
}

impl Entity<'_> {
    /// The module that generated code reaches the runtime through.
    pub fn private(&self) -> proc_macro2::TokenStream {
        let krate = &self.krate;
        quote::quote!(#krate::__private)
    }

    /// The fields that fill `template`'s placeholders, in order.
    pub fn placeholder_fields<'e>(&'e self, template: &'e Template) -> impl Iterator<Item = &'e Field<'e>> + 'e {
        template.placeholders().map(|i| &self.fields[i])
    }

    /// Whether `field` is one of the key's placeholders.
    pub fn is_key_part(&self, field: &Field<'_>) -> bool {
        self.placeholder_fields(&self.key).any(|f| f.ident == field.ident)
    }

    /// Whether the field at `i` fills a placeholder of the key or of an
    /// index, or scores a sorted index.
    pub fn uses_field(&self, i: usize) -> bool {
        self.key.placeholders().any(|p| p == i)
            || self.indexes.iter().any(|ix| {
                ix.template.placeholders().any(|p| p == i)
                    || matches!(ix.kind, IndexKind::Sorted { score, .. } if score == i)
            })
    }
}

impl Index {
    /// The generated query's name: `name = "..."` or `by_` + placeholders joined by `_and_`.
    pub fn name(&self, entity: &Entity<'_>) -> String {
        match &self.explicit_name {
            Some(lit) => lit.value(),
            None => {
                let parts: Vec<String> = entity
                    .placeholder_fields(&self.template)
                    .map(|f| unraw(f.ident))
                    .collect();
                format!("by_{}", parts.join("_and_"))
            }
        }
    }

    pub fn name_span(&self) -> Span {
        self.explicit_name.as_ref().map_or(self.template.span, |l| l.span())
    }
}

impl Field<'_> {
    pub fn is_stored(&self) -> bool {
        !self.skip
    }
}

/// Reads the struct; `None` (with the errors in `cx`) when it is not a struct
/// with named fields or has no usable `#[key]`.
pub fn parse_entity<'a>(cx: &Ctxt, input: &'a syn::DeriveInput) -> Option<Entity<'a>> {
    let named = match &input.data {
        syn::Data::Struct(data) => match &data.fields {
            syn::Fields::Named(named) => &named.named,
            syn::Fields::Unnamed(_) => {
                cx.error_spanned_by(
                    &input.ident,
                    "`RedisEntity` needs a struct with named fields, not a tuple struct",
                );
                return None;
            }
            syn::Fields::Unit => {
                cx.error_spanned_by(
                    &input.ident,
                    "`RedisEntity` needs a struct with named fields, not a unit struct",
                );
                return None;
            }
        },
        syn::Data::Enum(data) => {
            cx.error_spanned_by(
                data.enum_token,
                "`RedisEntity` is for structs; derive `RedisValue` to store a unit enum as a field",
            );
            return None;
        }
        syn::Data::Union(data) => {
            cx.error_spanned_by(data.union_token, "`RedisEntity` is for structs, not unions");
            return None;
        }
    };
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(&input.generics, "`RedisEntity` does not support generic structs");
    }
    let mut fields: Vec<Field<'a>> = named
        .iter()
        .filter_map(|f| {
            let attrs = attr::field(cx, f)?;
            Some(Field {
                ident: f.ident.as_ref()?,
                ty: &f.ty,
                renamed: attrs.renamed,
                wire: attrs.wire,
                skip: attrs.skip,
                default: attrs.default,
                json: attrs.json,
                encrypted: attrs.encrypted,
                aliases: attrs.aliases,
            })
        })
        .collect();

    let mut key = Attr::container(cx, KEY, "an entity has exactly one key");
    let mut ttl = Attr::container(cx, TTL, "put every unit in one `#[ttl(...)]`");
    let container = attr::container(cx, input);
    let mut indexes = Vec::new();
    let mut co_located = BoolAttr::none(cx, "#[cluster(...)]", CO_LOCATED);
    for attr in &input.attrs {
        let path = attr.path();
        if path == KEY {
            if let Some(k) = attr::key(cx, attr) {
                key.set(attr, k);
            }
        } else if path == TTL {
            if let Some(t) = attr::ttl(cx, attr) {
                ttl.set(attr, t);
            }
        } else if path == CLUSTER {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path == CO_LOCATED {
                    co_located.set_true(&meta.path);
                    Ok(())
                } else {
                    attr::unknown(cx, &meta, "cluster attribute", &[CO_LOCATED])
                }
            });
            if let Err(e) = result {
                cx.syn_error(e);
            }
        } else if path == INDEX {
            indexes.extend(parse_index(cx, attr, &fields));
        }
    }
    if let Some(rule) = container.rename_all {
        for f in fields.iter_mut().filter(|f| !f.renamed) {
            f.wire = rule.apply_to_field(&unraw(f.ident));
        }
    }
    let Some(attr::Key {
        template,
        max_part_len,
        secret,
        previous,
    }) = key.get()
    else {
        cx.error_spanned_by(&input.ident, "missing `#[key(\"prefix:<field>\")]` attribute");
        return None;
    };
    let key = RawTemplate::parse(&template)
        .map_err(|e| cx.syn_error(e))
        .ok()
        .and_then(|raw| resolve(cx, raw, &fields, "key"))?;
    let previous = match previous {
        None => None,
        Some(lit) => Some(
            RawTemplate::parse(&lit)
                .map_err(|e| cx.syn_error(e))
                .ok()
                .and_then(|raw| resolve(cx, raw, &fields, "previous key"))?,
        ),
    };
    Some(Entity {
        input,
        krate: container.krate,
        key,
        max_part_len,
        secret,
        previous,
        require_co_located: co_located.get(),
        ttl: ttl.get(),
        indexes,
        fields,
    })
}

/// Resolves each placeholder of `raw` to the field it names.
fn resolve(cx: &Ctxt, raw: RawTemplate, fields: &[Field<'_>], what: &str) -> Option<Template> {
    let mut ok = true;
    let mut pieces = Vec::with_capacity(raw.pieces.len());
    for piece in raw.pieces {
        match piece {
            RawPiece::Lit(text) => pieces.push(Piece::Lit(text)),
            RawPiece::Placeholder(name) => match fields.iter().position(|f| names(&name, f.ident)) {
                Some(i) => pieces.push(Piece::Field(i)),
                None => {
                    ok = false;
                    let known: Vec<String> = fields.iter().map(|f| format!("`{}`", f.ident)).collect();
                    cx.error_at(
                        raw.span,
                        format!(
                            "unknown placeholder `<{name}>` in {what} template `{}`, expected one of {}",
                            raw.source,
                            known.join(", ")
                        ),
                    );
                }
            },
        }
    }
    ok.then_some(Template {
        source: raw.source,
        pieces,
        span: raw.span,
    })
}

fn parse_index(cx: &Ctxt, attr: &syn::Attribute, fields: &[Field<'_>]) -> Option<Index> {
    let mut kind: Attr<'_, (Symbol, syn::LitStr)> = Attr::none(cx, "#[index]", Symbol::KIND);
    let mut score: Attr<'_, syn::Ident> = Attr::none(cx, "#[index]", SCORE);
    let mut name: Attr<'_, syn::LitStr> = Attr::none(cx, "#[index]", NAME);
    let mut previous: Attr<'_, syn::LitStr> = Attr::none(cx, "#[index]", PREVIOUS);
    let result = attr.parse_nested_meta(|meta| {
        let path = &meta.path;
        if let Some(which) = [SORTED, SET, UNIQUE].into_iter().find(|k| path == *k) {
            let lit: syn::LitStr = meta.value()?.parse()?;
            kind.set(path, (which, lit));
        } else if path == SCORE {
            score.set(path, meta.value()?.parse()?);
        } else if path == NAME {
            name.set(path, meta.value()?.parse()?);
        } else if path == PREVIOUS {
            previous.set(path, meta.value()?.parse()?);
        } else {
            attr::unknown(
                cx,
                &meta,
                "index attribute",
                &[SORTED, SET, UNIQUE, SCORE, NAME, PREVIOUS],
            )?;
        }
        Ok(())
    });
    if let Err(e) = result {
        cx.syn_error(e);
        return None;
    }
    let Some((which, lit)) = kind.get() else {
        cx.error_spanned_by(
            attr,
            "an index needs one of `sorted = \"...\"`, `set = \"...\"` or `unique = \"...\"`",
        );
        return None;
    };
    let name = name.get();
    let kind = match (which, score.get()) {
        (w, Some(ident)) if w == SORTED => match fields.iter().position(|f| names(&ident.to_string(), f.ident)) {
            Some(score) => IndexKind::Sorted { score, ident },
            None => {
                cx.error_spanned_by(&ident, format!("unknown score field `{ident}`"));
                return None;
            }
        },
        (w, None) if w == SORTED => {
            cx.error_spanned_by(&lit, "a sorted index needs `score = field`");
            return None;
        }
        (w, Some(ident)) => {
            cx.error_spanned_by(&ident, format!("`score` is only for sorted indexes, not a `{w}` index"));
            return None;
        }
        (w, None) if w == SET => IndexKind::Set,
        _ => IndexKind::Unique,
    };
    let raw = RawTemplate::parse(&lit).map_err(|e| cx.syn_error(e)).ok()?;
    let has_placeholder = raw.pieces.iter().any(|p| matches!(p, RawPiece::Placeholder(_)));
    if !has_placeholder && name.is_none() {
        cx.error_spanned_by(&lit, "an index template without placeholders needs `name = \"...\"`");
        return None;
    }
    let template = resolve(cx, raw, fields, "index")?;
    let previous = match previous.get() {
        None => None,
        Some(lit) => Some(
            RawTemplate::parse(&lit)
                .map_err(|e| cx.syn_error(e))
                .ok()
                .and_then(|raw| resolve(cx, raw, fields, "previous index"))?,
        ),
    };
    Some(Index {
        kind,
        template,
        explicit_name: name,
        previous,
    })
}

/// Whether the type is written as an `Option` (a syntactic lint only: type
/// properties that matter are checked with trait bounds).
pub fn is_written_as_option(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Path(p) if p.qself.is_none() => p.path.segments.last().is_some_and(|s| s.ident == "Option"),
        syn::Type::Group(g) => is_written_as_option(&g.elem),
        syn::Type::Paren(p) => is_written_as_option(&p.elem),
        _ => false,
    }
}
