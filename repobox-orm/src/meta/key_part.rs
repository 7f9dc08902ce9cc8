//! The rule every key part follows: nothing that could address another key
//! or look like another part.

use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory, GeneralCategoryGroup};
use icu_properties::{CodePointMapData, CodePointSetData};

use super::key::DEFAULT_MAX_KEY_PART_LEN;
use crate::error::{Error, Result, Shown};

/// Refuses a key part that could address another key: empty, longer than
/// [`DEFAULT_MAX_KEY_PART_LEN`] bytes, or holding `:`, a hash-tag brace, a glob
/// character, whitespace, a Unicode control or format character (zero-width
/// characters, bidi controls, the BOM) or another default-ignorable code point
/// (Hangul fillers, variation selectors), or starting with a combining mark:
/// any of those would make two keys that look the same.
///
/// # Errors
///
/// [`Error::InvalidKeyPart`](crate::Error::InvalidKeyPart) naming `template`,
/// `placeholder` and the reason, for such a part; no I/O.
pub fn validate_key_part(template: &'static str, placeholder: &'static str, value: &str) -> Result<()> {
    check_key_part(template, placeholder, value, DEFAULT_MAX_KEY_PART_LEN)
}

pub(super) fn check_key_part(
    template: &'static str,
    placeholder: &'static str,
    value: &str,
    max_len: usize,
) -> Result<()> {
    // Most key parts are short ASCII ids: checked byte by byte, without the
    // Unicode tables (no ASCII character is invisible or a mark).
    let plain = |b: &u8| b.is_ascii_graphic() && !matches!(b, b':' | b'{' | b'}' | b'*' | b'?' | b'[' | b']');
    let reason = if value.is_empty() {
        "is empty"
    } else if value.len() > max_len {
        "is longer than the key allows"
    } else if value.bytes().all(|b| plain(&b)) {
        return Ok(());
    } else if let Some(reason) = value.chars().enumerate().find_map(|(i, c)| refusal(c, i == 0)) {
        reason
    } else {
        return Ok(());
    };
    Err(Error::InvalidKeyPart {
        template,
        placeholder,
        value: Shown::new(value),
        reason,
    })
}

/// Why `c` may not be in a key part (`first`: where it would start the part),
/// or `None` when it may. Non-ASCII characters are looked up in the Unicode
/// Character Database as compiled into `icu_properties`.
pub(super) fn refusal(c: char, first: bool) -> Option<&'static str> {
    match c {
        ':' => Some("holds `:`"),
        '{' | '}' => Some("holds a hash-tag brace"),
        '*' | '?' | '[' | ']' => Some("holds a glob character"),
        c if c.is_whitespace() || c.is_control() => Some("holds whitespace or a control character"),
        c if c.is_ascii() => None,
        c => {
            let category = CodePointMapData::<GeneralCategory>::new().get(c);
            if category == GeneralCategory::Format {
                Some("holds an invisible format character")
            } else if CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c) {
                Some("holds an invisible (default-ignorable) character")
            } else if first && GeneralCategoryGroup::Mark.contains(category) {
                // It would combine with the template's text before it (`user:́x`).
                Some("starts with a combining mark")
            } else if matches!(category, GeneralCategory::Unassigned | GeneralCategory::PrivateUse) {
                // Nothing a reader can tell apart: no glyph, or one of a private font.
                Some("holds an unassigned, noncharacter or private-use code point")
            } else if matches!(c, '\u{2800}' | '\u{FFFC}' | '\u{FFFD}') {
                // Symbols that render as a blank or stand for a lost character
                // (Braille blank, object and replacement characters): the
                // Unicode data has no property that names them.
                Some("holds a blank or replacement symbol")
            } else {
                None
            }
        }
    }
}
