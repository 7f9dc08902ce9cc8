//! The derive's IR: the input struct read into `Entity`, `Field` and `Index`,
//! keeping the syn nodes for spans. Parsing collects every error in `Ctxt`.

use proc_macro2::Span;

use crate::ctxt::Ctxt;
use crate::template::KeyTemplate;

pub struct Entity<'a> {
    pub input: &'a syn::DeriveInput,
    pub key: Option<KeyTemplate>,
    pub ttl: Option<Ttl>,
    pub indexes: Vec<Index>,
    pub fields: Vec<Field<'a>>,
}

pub struct Ttl {
    pub millis: u64,
}

pub struct Field<'a> {
    pub ident: &'a syn::Ident,
    pub ty: &'a syn::Type,
    /// The hash field name.
    pub wire: String,
    pub skip: bool,
    pub default: bool,
    pub json: bool,
}

#[derive(Clone)]
pub enum IndexKind {
    Sorted { score: syn::Ident },
    Set,
    Unique,
}

pub struct Index {
    pub kind: IndexKind,
    pub template: KeyTemplate,
    /// `name = "..."` as written.
    pub explicit_name: Option<syn::LitStr>,
    /// The template literal, for errors about the index as a whole.
    pub span: Span,
}

impl Index {
    /// The generated query's name: `name = "..."` or `by_` + placeholders joined by `_and_`.
    pub fn name(&self) -> String {
        match &self.explicit_name {
            Some(lit) => lit.value(),
            None => {
                let parts: Vec<&str> = self.template.placeholders().collect();
                format!("by_{}", parts.join("_and_"))
            }
        }
    }

    pub fn name_span(&self) -> Span {
        self.explicit_name.as_ref().map_or(self.span, |l| l.span())
    }
}

impl<'a> Field<'a> {
    pub fn is_stored(&self) -> bool {
        !self.skip
    }
}

const TTL_UNITS: &[(&str, u64)] = &[
    ("days", 86_400_000),
    ("hours", 3_600_000),
    ("minutes", 60_000),
    ("seconds", 1_000),
    ("millis", 1),
];

pub fn parse_entity<'a>(cx: &mut Ctxt, input: &'a syn::DeriveInput) -> Option<Entity<'a>> {
    let fields = match &input.data {
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

    let mut key = None;
    let mut ttl = None;
    let mut indexes = Vec::new();
    for attr in &input.attrs {
        if attr.path().is_ident("key") {
            match attr.parse_args::<syn::LitStr>() {
                Ok(lit) => {
                    if key.is_some() {
                        cx.error_spanned_by(attr, "duplicate `#[key]` attribute; an entity has exactly one key");
                    } else {
                        match KeyTemplate::parse(&lit) {
                            Ok(t) => key = Some(t),
                            Err(e) => {
                                cx.syn_error(e);
                                key = Some(KeyTemplate {
                                    source: String::new(),
                                    pieces: Vec::new(),
                                    span: lit.span(),
                                });
                            }
                        }
                    }
                }
                Err(_) => cx.error_spanned_by(attr, "expected `#[key(\"prefix:<field>\")]`"),
            }
        } else if attr.path().is_ident("ttl") {
            if ttl.is_some() {
                cx.error_spanned_by(
                    attr,
                    "duplicate `#[ttl]` attribute; put every unit in one `#[ttl(...)]`",
                );
                continue;
            }
            ttl = parse_ttl(cx, attr);
        } else if attr.path().is_ident("index") {
            if let Some(index) = parse_index(cx, attr) {
                indexes.push(index);
            }
        } else if attr.path().is_ident("redis") {
            cx.error_spanned_by(
                attr,
                "`#[redis(...)]` goes on fields; on the struct use `#[key]`, `#[ttl]` or `#[index]`",
            );
        }
    }
    if key.is_none() {
        cx.error_spanned_by(&input.ident, "missing `#[key(\"prefix:<field>\")]` attribute");
    }

    let fields = fields.iter().map(|f| parse_field(cx, f)).collect();
    Some(Entity {
        input,
        key: key.filter(|k| !k.source.is_empty()),
        ttl,
        indexes,
        fields,
    })
}

fn parse_ttl(cx: &mut Ctxt, attr: &syn::Attribute) -> Option<Ttl> {
    let mut millis: u64 = 0;
    let mut seen: Vec<String> = Vec::new();
    let mut ok = true;
    let result = attr.parse_nested_meta(|meta| {
        let unit = meta.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
        let Some(&(_, factor)) = TTL_UNITS.iter().find(|(u, _)| *u == unit) else {
            ok = false;
            seen.push(unit.clone());
            let _ = meta.value().and_then(|v| v.parse::<syn::Expr>());
            cx.error_spanned_by(
                &meta.path,
                "unknown TTL unit, expected one of `days`, `hours`, `minutes`, `seconds`, `millis`",
            );
            return Ok(());
        };
        let lit: syn::LitInt = meta.value()?.parse()?;
        if seen.contains(&unit) {
            ok = false;
            cx.error_spanned_by(&meta.path, format!("duplicate TTL unit `{unit}`"));
        }
        seen.push(unit.clone());
        let n: u64 = lit.base10_parse()?;
        if n == 0 {
            ok = false;
            cx.error_spanned_by(&lit, format!("TTL `{unit}` must be greater than zero"));
        }
        match n.checked_mul(factor).and_then(|m| millis.checked_add(m)) {
            Some(total) => millis = total,
            None => {
                ok = false;
                cx.error_spanned_by(&lit, "TTL is too long");
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        cx.syn_error(e);
        return None;
    }
    if seen.is_empty() {
        cx.error_spanned_by(attr, "empty `#[ttl]`, expected e.g. `#[ttl(days = 7)]`");
        return None;
    }
    ok.then_some(Ttl { millis })
}

fn parse_index(cx: &mut Ctxt, attr: &syn::Attribute) -> Option<Index> {
    let mut kind: Option<(&'static str, syn::LitStr)> = None;
    let mut score: Option<syn::Ident> = None;
    let mut name: Option<syn::LitStr> = None;
    let result = attr.parse_nested_meta(|meta| {
        let path = &meta.path;
        let which = path.get_ident().map(|i| i.to_string()).unwrap_or_default();
        match which.as_str() {
            "sorted" | "set" | "unique" => {
                let lit: syn::LitStr = meta.value()?.parse()?;
                if let Some((first, _)) = &kind {
                    cx.error_spanned_by(
                        path,
                        format!("an index is either `sorted`, `set` or `unique`; this one is already `{first}`"),
                    );
                } else {
                    kind = Some((
                        if which == "sorted" {
                            "sorted"
                        } else if which == "set" {
                            "set"
                        } else {
                            "unique"
                        },
                        lit,
                    ));
                }
            }
            "score" => {
                let ident: syn::Ident = meta.value()?.parse()?;
                if score.is_some() {
                    cx.error_spanned_by(path, "duplicate `score`");
                }
                score = Some(ident);
            }
            "name" => {
                let lit: syn::LitStr = meta.value()?.parse()?;
                if name.is_some() {
                    cx.error_spanned_by(path, "duplicate `name`");
                }
                name = Some(lit);
            }
            _ => {
                if meta.input.peek(syn::Token![=]) {
                    let _ = meta.value()?.parse::<syn::Expr>()?;
                }
                cx.error_spanned_by(
                    path,
                    "unknown index attribute, expected one of `sorted`, `set`, `unique`, `score`, `name`",
                );
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        cx.syn_error(e);
        return None;
    }
    let Some((which, lit)) = kind else {
        cx.error_spanned_by(
            attr,
            "an index needs one of `sorted = \"...\"`, `set = \"...\"` or `unique = \"...\"`",
        );
        return None;
    };
    let template = match KeyTemplate::parse(&lit) {
        Ok(t) => t,
        Err(e) => {
            cx.syn_error(e);
            return None;
        }
    };
    let kind = match (which, score) {
        ("sorted", Some(score)) => IndexKind::Sorted { score },
        ("sorted", None) => {
            cx.error_spanned_by(&lit, "a sorted index needs `score = field`");
            return None;
        }
        (_, Some(score)) => {
            cx.error_spanned_by(
                &score,
                format!("`score` is only for sorted indexes, not a `{which}` index"),
            );
            return None;
        }
        ("set", None) => IndexKind::Set,
        _ => IndexKind::Unique,
    };
    if template.placeholders().next().is_none() && name.is_none() {
        cx.error_spanned_by(&lit, "an index template without placeholders needs `name = \"...\"`");
        return None;
    }
    Some(Index {
        kind,
        template,
        explicit_name: name,
        span: lit.span(),
    })
}

fn parse_field<'a>(cx: &mut Ctxt, field: &'a syn::Field) -> Field<'a> {
    let ident = field.ident.as_ref().expect("named field");
    let mut out = Field {
        ident,
        ty: &field.ty,
        wire: ident.to_string().trim_start_matches("r#").to_owned(),
        skip: false,
        default: false,
        json: false,
    };
    let mut renamed = false;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("redis")) {
        let result = attr.parse_nested_meta(|meta| {
            let path = &meta.path;
            let mut flag = |set: &mut bool, name: &str| {
                if *set {
                    cx.error_spanned_by(path, format!("duplicate `{name}`"));
                }
                *set = true;
            };
            if path.is_ident("rename") {
                let lit: syn::LitStr = meta.value()?.parse()?;
                flag(&mut renamed, "rename");
                let value = lit.value();
                if value.is_empty() {
                    cx.error_spanned_by(&lit, "`rename` needs a non-empty field name");
                }
                out.wire = value;
            } else if path.is_ident("skip") {
                flag(&mut out.skip, "skip");
            } else if path.is_ident("default") {
                flag(&mut out.default, "default");
            } else if path.is_ident("json") {
                flag(&mut out.json, "json");
            } else {
                if meta.input.peek(syn::Token![=]) {
                    let _ = meta.value()?.parse::<syn::Expr>()?;
                }
                cx.error_spanned_by(
                    path,
                    "unknown field attribute, expected one of `rename`, `skip`, `default`, `json`",
                );
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
    }
    if out.skip && (renamed || out.default || out.json) {
        cx.error_spanned_by(
            ident,
            "a `skip` field is not stored; `rename`, `default` and `json` do not apply to it",
        );
    }
    out
}

/// The last path segment of a type, as written (`Option` for `core::option::Option<T>`).
pub fn type_name(ty: &syn::Type) -> Option<String> {
    match ty {
        syn::Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.to_string()),
        syn::Type::Group(g) => type_name(&g.elem),
        syn::Type::Paren(p) => type_name(&p.elem),
        _ => None,
    }
}

pub fn is_option(ty: &syn::Type) -> bool {
    type_name(ty).as_deref() == Some("Option")
}
