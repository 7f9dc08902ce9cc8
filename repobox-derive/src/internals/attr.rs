//! Attribute values that remember where they were set, so that every
//! duplicate is reported once, in one place, for every attribute.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;

use super::ctxt::Ctxt;
use super::symbol::{Symbol, one_of};

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
