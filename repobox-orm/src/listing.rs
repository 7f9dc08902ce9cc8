//! `Listing`: what a read of many entities returns.

use crate::error::{Error, Result};

/// Every entity a read of many could load, and an error for each record it
/// could not (a hash that does not decode, an index member that is not an id).
/// One bad record never hides the good ones, and never goes unreported:
/// check [`errors`](Listing::errors), or call [`into_result`](Listing::into_result)
/// to treat any of them as a failure.
///
/// Index reads (`E::by_x`) return a `Listing<E>`; `E::get_many` returns a
/// `Listing<Option<E>>` whose items keep the input order (`None` where an
/// entity is absent, or unreadable and reported in `errors`).
#[derive(Debug)]
#[must_use = "a listing can carry errors for records it could not read"]
pub struct Listing<T> {
    /// What was read, in order.
    pub items: Vec<T>,
    /// One error per record that could not be read; each names its key.
    pub errors: Vec<Error>,
}

impl<T> Listing<T> {
    /// A listing without errors.
    pub fn complete(items: Vec<T>) -> Self {
        Listing {
            items,
            errors: Vec::new(),
        }
    }

    /// Whether every record could be read.
    pub fn is_complete(&self) -> bool {
        self.errors.is_empty()
    }

    /// The items, or the first error when a record could not be read.
    ///
    /// # Errors
    ///
    /// The first error of [`errors`](Self::errors) (a record that did not decode), when there
    /// is one.
    pub fn into_result(self) -> Result<Vec<T>> {
        match self.errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(self.items),
        }
    }
}

impl<T> Default for Listing<T> {
    fn default() -> Self {
        Listing::complete(Vec::new())
    }
}
