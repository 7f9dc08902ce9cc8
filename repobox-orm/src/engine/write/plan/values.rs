//! The values a plan sends that Redis would refuse: TTLs and scores, checked
//! before any I/O.

use std::time::Duration;

use crate::error::{Error, Result};

/// The longest TTL repobox sends, in ms: Redis adds a TTL to its clock and
/// refuses a sum past `i64::MAX`; half of that leaves room for any clock.
pub(crate) const MAX_TTL_MS: u64 = i64::MAX.unsigned_abs() / 2;

/// A TTL in whole milliseconds (at least one), refused before any I/O when
/// Redis would not take it: zero (Redis deletes the key at once) or longer
/// than [`MAX_TTL_MS`].
pub(crate) fn ttl_millis(ttl: Duration) -> Result<u64> {
    if ttl.is_zero() {
        return Err(Error::InvalidArgument {
            name: "ttl",
            reason: "a TTL of zero would delete the entity".into(),
        });
    }
    match u64::try_from(ttl.as_millis()) {
        Ok(ms) if ms <= MAX_TTL_MS => Ok(ms.max(1)),
        _ => Err(Error::InvalidArgument {
            name: "ttl",
            reason: format!("{ttl:?} is longer than Redis keeps keys"),
        }),
    }
}

pub(crate) fn checked_score(field: &'static str, raw: Option<&[u8]>) -> Result<String> {
    let text = raw.and_then(|r| std::str::from_utf8(r).ok()).unwrap_or("");
    match text.parse::<f64>() {
        Ok(x) if !x.is_nan() => Ok(text.to_owned()),
        _ => Err(Error::Encode {
            field,
            message: format!("score {text:?} is not a number"),
        }),
    }
}
