//! `Page`: which slice of a sorted index to read.

use crate::error::{Error, Result};

/// A page of a sorted index: direction, offset, limit and an optional score range.
///
/// ```
/// use repobox_orm::Page;
/// let page = Page::newest(50).offset(100).scores(0.0, 1_700_000_000_000.0);
/// assert_eq!(page.limit_value(), 50);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Page {
    pub(crate) newest_first: bool,
    pub(crate) offset: usize,
    pub(crate) limit: usize,
    pub(crate) scores: Option<(f64, f64)>,
}

impl Page {
    /// The `limit` highest-scored entries first (newest, for a timestamp score).
    pub fn newest(limit: usize) -> Self {
        Page {
            newest_first: true,
            offset: 0,
            limit,
            scores: None,
        }
    }

    /// The `limit` lowest-scored entries first (oldest, for a timestamp score).
    pub fn oldest(limit: usize) -> Self {
        Page {
            newest_first: false,
            ..Page::newest(limit)
        }
    }

    /// Skips the first `n` entries.
    pub fn offset(mut self, n: usize) -> Self {
        self.offset = n;
        self
    }

    /// Only entries whose score is within `min..=max`.
    pub fn scores(mut self, min: f64, max: f64) -> Self {
        self.scores = Some((min, max));
        self
    }

    /// The page's limit.
    pub fn limit_value(&self) -> usize {
        self.limit
    }

    /// The page and everything before it: offset 0, the limit the page's
    /// end (what a read merging two index keys takes from each).
    /// `Err(InvalidArgument)` when that end is past `usize::MAX`.
    pub(crate) fn through_end(&self) -> Result<Page> {
        let limit = self
            .offset
            .checked_add(self.limit)
            .ok_or_else(|| Error::InvalidArgument {
                name: "page",
                reason: format!("offset {} + limit {} is past usize::MAX", self.offset, self.limit),
            })?;
        Ok(Page {
            offset: 0,
            limit,
            ..*self
        })
    }

    /// The `ZRANGE` arguments after the key; `Err(InvalidArgument)` when the
    /// page reaches past what Redis can index (`i64::MAX`) or a score bound is NaN.
    pub(crate) fn zrange_args(&self) -> Result<Vec<String>> {
        let invalid = |reason: String| Error::InvalidArgument { name: "page", reason };
        let offset =
            i64::try_from(self.offset).map_err(|_| invalid(format!("offset {} is past i64::MAX", self.offset)))?;
        let limit = i64::try_from(self.limit).map_err(|_| invalid(format!("limit {} is past i64::MAX", self.limit)))?;
        let last = offset
            .checked_add(limit.saturating_sub(1))
            .ok_or_else(|| invalid(format!("offset {offset} + limit {limit} is past i64::MAX")))?;
        if let Some((min, max)) = self.scores
            && (min.is_nan() || max.is_nan())
        {
            return Err(invalid("a score bound is NaN".into()));
        }
        let mut args = Vec::with_capacity(7);
        match self.scores {
            Some((min, max)) => {
                let (min, max) = (score_bound(min), score_bound(max));
                if self.newest_first {
                    args.extend([max, min, "BYSCORE".into(), "REV".into()]);
                } else {
                    args.extend([min, max, "BYSCORE".into()]);
                }
                args.extend(["LIMIT".into(), offset.to_string(), limit.to_string()]);
            }
            None => {
                args.push(offset.to_string());
                args.push(last.to_string());
                if self.newest_first {
                    args.push("REV".into());
                }
            }
        }
        Ok(args)
    }
}

fn score_bound(x: f64) -> String {
    if x == f64::INFINITY {
        "+inf".into()
    } else if x == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        x.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_past_what_redis_indexes_are_refused_not_wrapped() {
        assert_eq!(Page::newest(2).offset(3).zrange_args().unwrap(), ["3", "4", "REV"]);
        for page in [
            Page::newest(2).offset(usize::MAX),
            Page::oldest(usize::MAX).offset(2),
            Page::oldest(2).offset(usize::try_from(i64::MAX).expect("a 64-bit target")),
            Page::newest(1).scores(f64::NAN, 1.0),
        ] {
            assert!(
                matches!(page.zrange_args(), Err(Error::InvalidArgument { .. })),
                "{page:?}"
            );
        }
        assert!(
            Page::oldest(1)
                .offset(usize::try_from(i64::MAX).expect("a 64-bit target"))
                .zrange_args()
                .is_ok()
        );
    }
}
