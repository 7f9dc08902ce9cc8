//! Collects every error of a derive, so the user sees all bad attributes at once.

use std::cell::RefCell;
use std::fmt::Display;
use std::thread;

use quote::ToTokens;

/// The errors of one derive. Must be [`check`](Ctxt::check)ed: one dropped
/// unchecked panics (outside of an unwinding panic), so that a code path that
/// forgets to report its errors is caught by the tests.
#[derive(Default)]
pub struct Ctxt {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub fn new() -> Self {
        Ctxt {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// An error at the span of `tokens`.
    pub fn error_spanned_by<T: ToTokens, M: Display>(&self, tokens: T, message: M) {
        self.syn_error(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    /// An error at `span`.
    pub fn error_at<M: Display>(&self, span: proc_macro2::Span, message: M) {
        self.syn_error(syn::Error::new(span, message));
    }

    pub fn syn_error(&self, err: syn::Error) {
        self.errors
            .borrow_mut()
            .as_mut()
            .expect("Ctxt::check was already called")
            .push(err);
    }

    /// All errors combined, if there were any; consumes the context.
    pub fn check(self) -> syn::Result<()> {
        let mut errors = self
            .errors
            .borrow_mut()
            .take()
            .expect("Ctxt::check was already called")
            .into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for rest in errors {
            combined.combine(rest);
        }
        Err(combined)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !thread::panicking() && self.errors.borrow().is_some() {
            panic!("forgot to check for errors");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "forgot to check for errors")]
    fn an_unchecked_context_is_a_bug() {
        let cx = Ctxt::new();
        cx.error_at(proc_macro2::Span::call_site(), "lost");
    }

    #[test]
    fn errors_are_combined() {
        let cx = Ctxt::new();
        cx.error_at(proc_macro2::Span::call_site(), "one");
        cx.error_at(proc_macro2::Span::call_site(), "two");
        let messages: Vec<String> = cx.check().unwrap_err().into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages, ["one", "two"]);
    }
}
