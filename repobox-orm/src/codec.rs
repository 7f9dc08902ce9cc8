//! The hash codec: how one Rust value becomes one hash field and back.
//!
//! The wire format is a contract with clients in other languages: strings as
//! they are, numbers in decimal, `true`/`false`, enums as snake_case strings,
//! `None` as an absent field (never `""` or `"null"`).

use std::borrow::Cow;

/// A type that is stored as one Redis hash field.
///
/// Implemented for `String`, every integer width, `f32`/`f64`, `bool`,
/// `Vec<u8>`, `Option<T>`, `#[derive(RedisValue)]` enums and (with the
/// `chrono` feature) `chrono::DateTime<Utc>`.
pub trait HashField: Sized {
    /// What a valid value looks like, for [`Error::Decode`](crate::Error::Decode) messages.
    const EXPECTED: &'static str;

    /// The wire type other clients see in `repobox schema`: `string`,
    /// `bytes`, `bool`, `integer`, `float`, `timestamp` or `enum`.
    const WIRE_TYPE: &'static str;

    /// Whether the field may be absent (an `Option`).
    const OPTIONAL: bool = false;

    /// The wire strings an `enum` field takes (empty for other types).
    const VALUES: &'static [&'static str] = &[];

    /// Old wire strings an `enum` field still reads, each with the value it
    /// reads as (`#[redis(alias = "...")]` on a variant).
    const VALUE_ALIASES: &'static [(&'static str, &'static str)] = &[];

    /// The field's bytes; `None` leaves the field absent.
    fn encode_field(&self) -> Option<Cow<'_, [u8]>>;

    /// Reads a present field; `None` if the bytes are not a valid value.
    fn decode_field(raw: &[u8]) -> Option<Self>;

    /// What an absent field reads as; `None` makes it a decode error.
    fn decode_absent() -> Option<Self> {
        None
    }
}

impl HashField for String {
    const EXPECTED: &'static str = "a UTF-8 string";
    const WIRE_TYPE: &'static str = "string";

    fn encode_field(&self) -> Option<Cow<'_, [u8]>> {
        Some(Cow::Borrowed(self.as_bytes()))
    }

    fn decode_field(raw: &[u8]) -> Option<Self> {
        std::str::from_utf8(raw).ok().map(str::to_owned)
    }
}

impl HashField for Vec<u8> {
    const EXPECTED: &'static str = "bytes";
    const WIRE_TYPE: &'static str = "bytes";

    fn encode_field(&self) -> Option<Cow<'_, [u8]>> {
        Some(Cow::Borrowed(self))
    }

    fn decode_field(raw: &[u8]) -> Option<Self> {
        Some(raw.to_vec())
    }
}

impl HashField for bool {
    const EXPECTED: &'static str = "`true` or `false`";
    const WIRE_TYPE: &'static str = "bool";

    fn encode_field(&self) -> Option<Cow<'_, [u8]>> {
        Some(Cow::Borrowed(if *self { b"true" } else { b"false" }))
    }

    fn decode_field(raw: &[u8]) -> Option<Self> {
        match raw {
            b"true" | b"1" => Some(true),
            b"false" | b"0" => Some(false),
            _ => None,
        }
    }
}

macro_rules! integer_fields {
    ($($ty:ty => $expected:literal),* $(,)?) => {$(
        impl HashField for $ty {
            const EXPECTED: &'static str = $expected;
            const WIRE_TYPE: &'static str = "integer";

            fn encode_field(&self) -> Option<Cow<'_, [u8]>> {
                Some(Cow::Owned(itoa::Buffer::new().format(*self).as_bytes().to_vec()))
            }

            fn decode_field(raw: &[u8]) -> Option<Self> {
                parse_int(raw)
            }
        }

        impl KeyPart for $ty {
            fn key_part(&self) -> Cow<'_, str> {
                Cow::Owned(itoa::Buffer::new().format(*self).to_owned())
            }
        }

        impl ParseInt for $ty {
            const SIGNED: bool = <$ty>::MIN != 0;
            fn push_digit(self, digit: u8, negative: bool) -> Option<Self> {
                let d = digit as $ty;
                let shifted = self.checked_mul(10)?;
                if negative { shifted.checked_sub(d) } else { shifted.checked_add(d) }
            }
        }
    )*};
}

/// Decimal parsing straight from bytes, with the grammar of `str::parse`:
/// an optional `+` (or `-` for signed types) and at least one ASCII digit.
trait ParseInt: Sized + Copy + Default {
    const SIGNED: bool;
    fn push_digit(self, digit: u8, negative: bool) -> Option<Self>;
}

fn parse_int<T: ParseInt>(raw: &[u8]) -> Option<T> {
    let (negative, digits) = match raw {
        [b'-', rest @ ..] if T::SIGNED => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, raw),
    };
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(T::default(), |acc, &b| {
        if b.is_ascii_digit() {
            acc.push_digit(b - b'0', negative)
        } else {
            None
        }
    })
}

integer_fields! {
    i8 => "an integer (i8)", i16 => "an integer (i16)", i32 => "an integer (i32)",
    i64 => "an integer (i64)", i128 => "an integer (i128)", isize => "an integer (isize)",
    u8 => "an integer (u8)", u16 => "an integer (u16)", u32 => "an integer (u32)",
    u64 => "an integer (u64)", u128 => "an integer (u128)", usize => "an integer (usize)",
}

macro_rules! float_fields {
    ($($ty:ty),*) => {$(
        impl HashField for $ty {
            const EXPECTED: &'static str = "a decimal number";
            const WIRE_TYPE: &'static str = "float";

            // Rust prints the shortest decimal that parses back to the same
            // bits, so floats round-trip exactly (`-0`, subnormals, `inf`).
            fn encode_field(&self) -> Option<Cow<'_, [u8]>> {
                Some(Cow::Owned(self.to_string().into_bytes()))
            }

            fn decode_field(raw: &[u8]) -> Option<Self> {
                std::str::from_utf8(raw).ok()?.parse().ok()
            }
        }
    )*};
}

float_fields!(f32, f64);

impl<T: HashField> HashField for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    const WIRE_TYPE: &'static str = T::WIRE_TYPE;
    const OPTIONAL: bool = true;
    const VALUES: &'static [&'static str] = T::VALUES;
    const VALUE_ALIASES: &'static [(&'static str, &'static str)] = T::VALUE_ALIASES;

    fn encode_field(&self) -> Option<Cow<'_, [u8]>> {
        self.as_ref().and_then(T::encode_field)
    }

    fn decode_field(raw: &[u8]) -> Option<Self> {
        T::decode_field(raw).map(Some)
    }

    fn decode_absent() -> Option<Self> {
        Some(None)
    }
}

#[cfg(feature = "chrono")]
#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl HashField for chrono::DateTime<chrono::Utc> {
    const EXPECTED: &'static str = "unix milliseconds";
    const WIRE_TYPE: &'static str = "timestamp";

    fn encode_field(&self) -> Option<Cow<'_, [u8]>> {
        Some(Cow::Owned(self.timestamp_millis().to_string().into_bytes()))
    }

    fn decode_field(raw: &[u8]) -> Option<Self> {
        let millis: i64 = std::str::from_utf8(raw).ok()?.parse().ok()?;
        chrono::DateTime::from_timestamp_millis(millis)
    }
}

/// A unit enum stored as a snake_case string; implemented by `#[derive(RedisValue)]`.
pub trait RedisValue: Sized + 'static {
    /// Every variant's wire string, in declaration order.
    const NAMES: &'static [&'static str];

    /// The wire string of this variant.
    fn as_str(&self) -> &'static str;

    /// The variant for a wire string.
    fn from_wire(s: &str) -> Option<Self>;
}

/// A value that can fill a `<placeholder>` of a key template.
///
/// The part is the same text as the field's hash encoding, so an index key built
/// from a query argument equals the one built from the stored entity. Only
/// values that are always present and exact are key parts: strings, integers
/// and `RedisValue` enums, not `Option`s, floats or `bool`s.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot fill a key placeholder",
    label = "used as a key part here",
    note = "a key part must always be present and exact: a string, an integer or a `RedisValue` enum \
            (not an `Option`, a float or a `bool`)"
)]
pub trait KeyPart {
    /// The text of the key part (validated before use).
    fn key_part(&self) -> Cow<'_, str>;
}

impl KeyPart for str {
    fn key_part(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl KeyPart for String {
    fn key_part(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    fn key_part(&self) -> Cow<'_, str> {
        (**self).key_part()
    }
}

/// A numeric field that can be the score of a sorted index: integers, floats
/// and (with the `chrono` feature) `DateTime<Utc>`, or an `Option` of one.
/// Redis keeps scores as doubles: integers up to 2^53 in magnitude (and
/// every float) order exactly; larger 64- and 128-bit values round to the
/// nearest double, so two that differ only beyond that may tie. An `Option` score makes a partial index: an entity
/// whose score is `None` has no entry in it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the score of a sorted index",
    label = "used as a score here",
    note = "a score is a stored integer, float or `DateTime<Utc>` field, or an `Option` of one"
)]
pub trait Score: HashField {}

macro_rules! scores {
    ($($ty:ty),*) => {$( impl Score for $ty {} )*};
}

scores!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, f32, f64);

#[cfg(feature = "chrono")]
#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl Score for chrono::DateTime<chrono::Utc> {}

/// A partial index: only the entities whose score is `Some` are in it.
impl<T: Score> Score for Option<T> where Option<T>: HashField {}

/// Encodes a `#[redis(json)]` field; `null` is stored as an absent field.
pub(crate) fn encode_json<T: serde::Serialize>(
    field: &'static str,
    value: &T,
) -> crate::error::Result<Option<Vec<u8>>> {
    let bytes = serde_json::to_vec(value).map_err(|e| crate::error::Error::Encode {
        field,
        message: format!("not serializable as JSON: {e}"),
    })?;
    Ok(if bytes == b"null" { None } else { Some(bytes) })
}

/// Decodes a `#[redis(json)]` field; an absent field reads as JSON `null`.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(raw: Option<&[u8]>) -> Option<T> {
    serde_json::from_slice(raw.unwrap_or(b"null")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn integers_parse_exactly_like_str_parse(s in "[+-]?[0-9]{0,40}|.{0,8}") {
            prop_assert_eq!(i64::decode_field(s.as_bytes()), s.parse::<i64>().ok());
            prop_assert_eq!(u64::decode_field(s.as_bytes()), s.parse::<u64>().ok());
            prop_assert_eq!(i8::decode_field(s.as_bytes()), s.parse::<i8>().ok());
            prop_assert_eq!(u128::decode_field(s.as_bytes()), s.parse::<u128>().ok());
        }

        #[test]
        fn integers_round_trip(x in any::<i64>(), y in any::<u128>()) {
            prop_assert_eq!(i64::decode_field(&x.encode_field().unwrap()), Some(x));
            prop_assert_eq!(u128::decode_field(&y.encode_field().unwrap()), Some(y));
        }
    }

    #[test]
    fn integer_edges() {
        for s in [
            "",
            "-",
            "+",
            "-0",
            "+0",
            "00012",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            " 1",
            "1 ",
        ] {
            assert_eq!(i64::decode_field(s.as_bytes()), s.parse::<i64>().ok(), "{s:?}");
            assert_eq!(u8::decode_field(s.as_bytes()), s.parse::<u8>().ok(), "{s:?}");
        }
        assert_eq!(u32::decode_field(b"-0"), None);
    }
}
