//! `Page`: which slice of a sorted index to read.

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

    /// The `ZRANGE` arguments after the key.
    pub(crate) fn zrange_args(&self) -> Vec<String> {
        let mut args = Vec::with_capacity(7);
        match self.scores {
            Some((min, max)) => {
                let (min, max) = (score_bound(min), score_bound(max));
                if self.newest_first {
                    args.extend([max, min, "BYSCORE".into(), "REV".into()]);
                } else {
                    args.extend([min, max, "BYSCORE".into()]);
                }
                args.extend(["LIMIT".into(), self.offset.to_string(), self.limit.to_string()]);
            }
            None => {
                args.push(self.offset.to_string());
                args.push((self.offset + self.limit - 1).to_string());
                if self.newest_first {
                    args.push("REV".into());
                }
            }
        }
        args
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
