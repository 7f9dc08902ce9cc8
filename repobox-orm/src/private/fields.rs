//! The field codec glue that generated `read_fields`/`write_fields` call.

use std::borrow::Cow;

use crate::codec::{self, HashField};
use crate::error::{DecodeValue, Error, Result};

fn decode_error<T: HashField>(key: &str, field: &'static str, raw: Option<&[u8]>) -> Error {
    Error::Decode {
        key: key.to_owned(),
        field,
        value: DecodeValue::new(raw),
        expected: T::EXPECTED,
    }
}

/// Decodes a field; absent is an error unless the type allows it (`Option`).
#[inline]
pub fn decode_field<T: HashField>(key: &str, field: &'static str, raw: Option<&[u8]>) -> Result<T> {
    match raw {
        Some(bytes) => T::decode_field(bytes),
        None => T::decode_absent(),
    }
    .ok_or_else(|| decode_error::<T>(key, field, raw))
}

/// Decodes a `#[redis(default)]` field: absent gives `Default::default()`.
#[inline]
pub fn decode_field_or_default<T: HashField + Default>(
    key: &str,
    field: &'static str,
    raw: Option<&[u8]>,
) -> Result<T> {
    match raw {
        Some(bytes) => T::decode_field(bytes).ok_or_else(|| decode_error::<T>(key, field, raw)),
        None => Ok(T::default()),
    }
}

/// Decodes a `#[redis(json)]` field (absent reads as JSON `null`).
pub fn decode_json_field<T: serde::de::DeserializeOwned>(
    key: &str,
    field: &'static str,
    raw: Option<&[u8]>,
) -> Result<T> {
    codec::decode_json(raw).ok_or_else(|| Error::Decode {
        key: key.to_owned(),
        field,
        value: DecodeValue::withheld(raw),
        expected: "JSON of the field's type",
    })
}

/// Decodes a `#[redis(json, default)]` field: absent gives `Default::default()`.
pub fn decode_json_field_or_default<T: serde::de::DeserializeOwned + Default>(
    key: &str,
    field: &'static str,
    raw: Option<&[u8]>,
) -> Result<T> {
    match raw {
        None => Ok(T::default()),
        Some(_) => decode_json_field(key, field, raw),
    }
}

/// Encodes a `#[redis(json)]` field.
pub fn encode_json_field<T: serde::Serialize>(field: &'static str, value: &T) -> Result<Option<Cow<'static, [u8]>>> {
    Ok(codec::encode_json(field, value)?.map(Cow::Owned))
}
