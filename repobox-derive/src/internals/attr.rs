//! The attribute grammar: values that remember where they were set (so that
//! every duplicate is reported once, in one place), the skip-unknown helper,
//! and the readers of `#[ttl]` and of a field's `#[redis(...)]`.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;

use super::ctxt::Ctxt;
use super::symbol::*;
use super::unraw::unraw;

/// An attribute that may be given at most once.
pub struct Attr<'c, T> {
    cx: &'c Ctxt,
    /// The message for a second one.
    duplicate: String,
    value: Option<T>,
}

impl<'c, T> Attr<'c, T> {
    /// `name` inside `within` (`rename` inside `#[redis(...)]`).
    pub fn none(cx: &'c Ctxt, within: &'static str, name: Symbol) -> Self {
        Self::with_message(cx, format!("duplicate `{name}` in `{within}`"))
    }

    /// A whole attribute of the struct (`#[key]`).
    pub fn container(cx: &'c Ctxt, name: Symbol, why: &str) -> Self {
        Self::with_message(cx, format!("duplicate `#[{name}]` attribute; {why}"))
    }

    fn with_message(cx: &'c Ctxt, duplicate: String) -> Self {
        Attr {
            cx,
            duplicate,
            value: None,
        }
    }

    /// Sets the value written at `obj`; a second one is an error at its own tokens.
    pub fn set<A: ToTokens>(&mut self, obj: A, value: T) {
        if self.value.is_some() {
            self.cx.error_spanned_by(obj, &self.duplicate);
        } else {
            self.value = Some(value);
        }
    }

    pub fn get(self) -> Option<T> {
        self.value
    }

    pub fn is_set(&self) -> bool {
        self.value.is_some()
    }
}

/// A flag attribute (`skip`), given at most once.
pub struct BoolAttr<'c>(Attr<'c, ()>);

impl<'c> BoolAttr<'c> {
    pub fn none(cx: &'c Ctxt, within: &'static str, name: Symbol) -> Self {
        BoolAttr(Attr::none(cx, within, name))
    }

    pub fn set_true<A: ToTokens>(&mut self, obj: A) {
        self.0.set(obj, ());
    }

    pub fn get(&self) -> bool {
        self.0.is_set()
    }
}

/// Reports an unknown nested attribute (`what`: "field attribute") with the
/// valid ones, and skips its value so that parsing goes on.
pub fn unknown(cx: &Ctxt, meta: &ParseNestedMeta<'_>, what: &str, expected: &[Symbol]) -> syn::Result<()> {
    cx.error_spanned_by(
        &meta.path,
        format!("unknown {what}, expected one of {}", one_of(expected)),
    );
    if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _ignored: TokenStream = meta.input.parse::<proc_macro2::Group>()?.stream();
    }
    Ok(())
}

/// A `#[key("prefix:<field>", max_part_len = N)]`.
pub struct Key {
    pub template: syn::LitStr,
    pub max_part_len: Option<usize>,
    /// The key parts are secrets: messages show fingerprints of them.
    pub secret: bool,
    /// `previous = "..."`: the template the entity's key had before a
    /// re-key, read while a migration moves entities from it.
    pub previous: Option<syn::LitStr>,
}

/// Reads `#[key("...")]` with its optional `max_part_len = N`.
pub fn key(cx: &Ctxt, attr: &syn::Attribute) -> Option<Key> {
    let parsed = attr.parse_args_with(|input: syn::parse::ParseStream<'_>| {
        let template: syn::LitStr = input.parse()?;
        let mut max_part_len = Attr::none(cx, "#[key]", MAX_PART_LEN);
        let mut secret = BoolAttr::none(cx, "#[key]", SECRET);
        let mut previous = Attr::none(cx, "#[key]", PREVIOUS);
        while input.peek(syn::Token![,]) {
            input.parse::<syn::Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let name: syn::Ident = input.parse()?;
            if name == SECRET {
                secret.set_true(&name);
                continue;
            }
            input.parse::<syn::Token![=]>()?;
            if name == PREVIOUS {
                let lit: syn::LitStr = input.parse()?;
                previous.set(&name, lit);
            } else if name == MAX_PART_LEN {
                let n: syn::LitInt = input.parse()?;
                // At most `u32::MAX`, so that the generated `usize` fits on 32-bit targets too.
                match n.base10_parse::<u32>().ok().and_then(|len| usize::try_from(len).ok()) {
                    None | Some(0) => cx.error_spanned_by(&n, "`max_part_len` must be a number of bytes above zero"),
                    Some(len) => max_part_len.set(&name, len),
                }
            } else {
                input.parse::<syn::Expr>()?;
                cx.error_spanned_by(
                    &name,
                    format!(
                        "unknown key attribute, expected {}",
                        one_of(&[MAX_PART_LEN, SECRET, PREVIOUS])
                    ),
                );
            }
        }
        Ok(Key {
            template,
            max_part_len: max_part_len.get(),
            secret: secret.get(),
            previous: previous.get(),
        })
    });
    match parsed {
        Ok(key) => Some(key),
        Err(_) => {
            cx.error_spanned_by(attr, "expected `#[key(\"prefix:<field>\")]`");
            None
        }
    }
}

/// A `#[ttl(...)]`, all units added up.
pub struct Ttl {
    pub millis: u64,
}

/// What a field's `#[redis(...)]` says.
pub struct FieldAttrs {
    /// The hash field name (the Rust name, unraw, unless renamed).
    pub wire: String,
    /// Whether `rename` set it (a container's `rename_all` does not apply then).
    pub renamed: bool,
    pub skip: bool,
    pub default: bool,
    pub json: bool,
    pub encrypted: bool,
    /// Old hash field names it is read under when its own is absent.
    pub aliases: Vec<syn::LitStr>,
}

/// Reads `#[ttl(days = 7, ...)]`; `None` (with errors in `cx`) when it is not a valid TTL.
pub fn ttl(cx: &Ctxt, attr: &syn::Attribute) -> Option<Ttl> {
    let mut millis: u64 = 0;
    let mut units: Vec<Attr<'_, ()>> = TTL_UNITS.iter().map(|(u, _)| Attr::none(cx, "#[ttl]", *u)).collect();
    let mut ok = true;
    let result = attr.parse_nested_meta(|meta| {
        let Some(pos) = TTL_UNITS.iter().position(|(u, _)| meta.path == *u) else {
            ok = false;
            let expected: Vec<Symbol> = TTL_UNITS.iter().map(|(u, _)| *u).collect();
            return unknown(cx, &meta, "TTL unit", &expected);
        };
        let (unit, factor) = TTL_UNITS[pos];
        let lit: syn::LitInt = meta.value()?.parse()?;
        if units[pos].is_set() {
            ok = false;
        }
        units[pos].set(&meta.path, ());
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
    if !units.iter().any(Attr::is_set) && ok {
        cx.error_spanned_by(attr, "empty `#[ttl]`, expected e.g. `#[ttl(days = 7)]`");
        return None;
    }
    ok.then_some(Ttl { millis })
}

/// Reads a named field's `#[redis(...)]` attributes.
pub fn field(cx: &Ctxt, field: &syn::Field) -> Option<FieldAttrs> {
    let ident = field.ident.as_ref()?;
    const WITHIN: &str = "#[redis(...)]";
    let mut rename = Attr::none(cx, WITHIN, RENAME);
    let mut skip = BoolAttr::none(cx, WITHIN, SKIP);
    let mut default = BoolAttr::none(cx, WITHIN, DEFAULT);
    let mut json = BoolAttr::none(cx, WITHIN, JSON);
    let mut encrypted = BoolAttr::none(cx, WITHIN, ENCRYPTED);
    let mut aliases: Vec<syn::LitStr> = Vec::new();
    for attr in field.attrs.iter().filter(|a| a.path() == REDIS) {
        let result = attr.parse_nested_meta(|meta| {
            let path = &meta.path;
            if path == RENAME {
                let lit: syn::LitStr = meta.value()?.parse()?;
                if lit.value().is_empty() {
                    cx.error_spanned_by(&lit, "`rename` needs a non-empty field name");
                }
                rename.set(path, lit.value());
            } else if path == SKIP {
                skip.set_true(path);
            } else if path == DEFAULT {
                default.set_true(path);
            } else if path == JSON {
                json.set_true(path);
            } else if path == ENCRYPTED {
                encrypted.set_true(path);
            } else if path == ALIAS {
                aliases.push(alias(cx, &meta)?);
            } else {
                unknown(
                    cx,
                    &meta,
                    "field attribute",
                    &[RENAME, SKIP, DEFAULT, JSON, ENCRYPTED, ALIAS],
                )?;
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
    }
    let renamed = rename.is_set();
    let out = FieldAttrs {
        renamed,
        wire: rename.get().unwrap_or_else(|| unraw(ident)),
        skip: skip.get(),
        default: default.get(),
        json: json.get(),
        encrypted: encrypted.get(),
        aliases,
    };
    if out.skip && (renamed || out.default || out.json || out.encrypted || !out.aliases.is_empty()) {
        cx.error_spanned_by(
            ident,
            "a `skip` field is not stored; `rename`, `default`, `json`, `encrypted` and `alias` do not apply to it",
        );
    }
    Some(out)
}

/// Reads `alias = "..."`: an old name (of a hash field, or an enum value).
pub fn alias(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<syn::LitStr> {
    let lit: syn::LitStr = meta.value()?.parse()?;
    if lit.value().is_empty() {
        cx.error_spanned_by(&lit, "`alias` needs a non-empty name");
    }
    Ok(lit)
}

/// Reads `rename_all = "..."`: one of serde's rule names.
pub fn rename_all(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<super::case::RenameRule>> {
    let lit: syn::LitStr = meta.value()?.parse()?;
    match super::case::RenameRule::parse(&lit.value()) {
        Some(rule) => Ok(Some(rule)),
        None => {
            let names: Vec<String> = super::case::RULES.iter().map(|(n, _)| format!("`{n}`")).collect();
            cx.error_spanned_by(
                &lit,
                format!("unknown `rename_all` rule, expected one of {}", names.join(", ")),
            );
            Ok(None)
        }
    }
}

/// What `#[redis(...)]` on a struct or enum says: the runtime's path
/// (`crate = "..."`, else `::repobox_orm`) and the `rename_all` rule.
pub struct Container {
    pub krate: syn::Path,
    pub rename_all: Option<super::case::RenameRule>,
}

/// Reads every `#[redis(...)]` of a struct or enum.
pub fn container(cx: &Ctxt, input: &syn::DeriveInput) -> Container {
    let mut krate = Attr::none(cx, "#[redis(...)]", CRATE);
    let mut rule = Attr::none(cx, "#[redis(...)]", RENAME_ALL);
    for attr in input.attrs.iter().filter(|a| a.path() == REDIS) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path == CRATE {
                let lit: syn::LitStr = meta.value()?.parse()?;
                match lit.parse::<syn::Path>() {
                    Ok(path) => krate.set(&meta.path, path),
                    Err(_) => cx.error_spanned_by(&lit, "`crate` needs a path, e.g. `crate = \"::my::repobox\"`"),
                }
                Ok(())
            } else if meta.path == RENAME_ALL {
                if let Some(r) = rename_all(cx, &meta)? {
                    rule.set(&meta.path, r);
                }
                Ok(())
            } else {
                unknown(
                    cx,
                    &meta,
                    "container attribute (field attributes go on fields)",
                    &[CRATE, RENAME_ALL],
                )
            }
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
    }
    Container {
        krate: krate.get().unwrap_or_else(|| syn::parse_quote!(::repobox_orm)),
        rename_all: rule.get(),
    }
}
