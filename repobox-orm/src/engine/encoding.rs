//! The engine's one codec path: an entity encoded for a write
//! ([`Encoded::sealed`]: its fields, its encrypted fields sealed, its
//! address) and a hash decoded into an entity ([`decode`]: its encrypted
//! fields opened first). `crypto` keeps only the key ring and the cipher.

#[cfg(feature = "encryption")]
use std::borrow::Cow;

#[cfg(feature = "encryption")]
use crate::crypto::KeyRing;
use crate::engine::target::{Target, fill};
use crate::entity::{FieldWriter, RawHash, RedisEntity};
use crate::error::{Error, Result};
use crate::meta::{KeyTemplate, Segment};

/// An entity encoded: its address and its fields as they are written.
pub(crate) struct Encoded<'e> {
    pub target: Target,
    pub fields: FieldWriter<'e>,
}

impl<'e> Encoded<'e> {
    /// `entity` as a write sends it: every stored field encoded, the
    /// encrypted ones sealed for its key.
    pub fn sealed<E: RedisEntity>(entity: &'e E) -> Result<Self> {
        let mut encoded = Encoded::plain(entity)?;
        seal::<E>(&encoded.target.key, &mut encoded.fields)?;
        Ok(encoded)
    }

    /// `entity` encoded without sealing: what its fields hold in the clear
    /// (index keys and values to compare are made from these).
    pub fn plain<E: RedisEntity>(entity: &'e E) -> Result<Self> {
        let mut fields = FieldWriter::with_capacity(E::META.fields.len());
        entity.write_fields(&mut fields)?;
        let target = Target::of::<E>(&fields)?;
        Ok(Encoded { target, fields })
    }

    /// The key of `template` (an index's) that the entity belongs under.
    pub fn index_key(&self, template: &KeyTemplate) -> Result<String> {
        fill(template, |f| {
            self.target.part(f).map(str::as_bytes).or_else(|| self.fields.get(f))
        })
    }
}

/// Makes `fields` (a patch's, or a whole entity's) what is stored at the
/// entity at `key`: the encrypted ones sealed, and the old names of the
/// fields it writes removed ([`drop_aliases`]).
pub(crate) fn seal<E: RedisEntity>(key: &str, fields: &mut FieldWriter<'_>) -> Result<()> {
    drop_aliases::<E>(fields);
    let encrypted = E::META.encrypted;
    if encrypted.is_empty() || !fields.set.iter().any(|(name, _)| encrypted.contains(name)) {
        return Ok(());
    }
    seal_encrypted(key, encrypted, fields)
}

#[cfg(feature = "encryption")]
fn seal_encrypted(key: &str, encrypted: &[&'static str], fields: &mut FieldWriter<'_>) -> Result<()> {
    let ring = KeyRing::current()?;
    for (name, value) in &mut fields.set {
        if encrypted.contains(name) {
            *value = Cow::Owned(ring.seal(key, name, value)?);
        }
    }
    Ok(())
}

/// Without the `encryption` feature the derive refuses `#[redis(encrypted)]`
/// at compile time; an entity implemented by hand that names encrypted
/// fields is refused here, nothing written.
#[cfg(not(feature = "encryption"))]
fn seal_encrypted(_key: &str, encrypted: &[&'static str], _fields: &mut FieldWriter<'_>) -> Result<()> {
    Err(Error::Encode {
        field: encrypted.first().copied().unwrap_or("encrypted field"),
        message: WITHOUT_ENCRYPTION.to_owned(),
    })
}

#[cfg(not(feature = "encryption"))]
const WITHOUT_ENCRYPTION: &str = "encrypted fields need repobox-orm's `encryption` feature";

/// Adds to `fields`' deletes the aliases of every field it writes (sets or
/// removes): a write leaves a field under its own name only.
pub(crate) fn drop_aliases<E: RedisEntity>(fields: &mut FieldWriter<'_>) {
    for (field, alias) in E::META.aliases {
        if fields.touches(field) && !fields.del.contains(alias) {
            fields.del.push(alias);
        }
    }
}

/// Reads an `E` from the hash at `key` (`shown` in messages), opening its
/// encrypted fields first.
pub(crate) fn decode<E: RedisEntity>(key: &str, shown: &str, hash: &RawHash<'_>) -> Result<E> {
    key_agrees(&E::META.key, key, shown, hash)?;
    read_hash::<E>(key, shown, hash)
}

/// [`decode`] of a hash still at the entity's previous key (`key`, a key of
/// `E::META.previous`), before a re-key moved it.
pub(crate) fn decode_previous<E: RedisEntity>(key: &str, shown: &str, hash: &RawHash<'_>) -> Result<E> {
    if let Some(previous) = &E::META.previous {
        key_agrees(previous, key, shown, hash)?;
    }
    read_hash::<E>(key, shown, hash)
}

fn read_hash<E: RedisEntity>(
    #[cfg_attr(
        not(feature = "encryption"),
        expect(unused_variables, reason = "the cipher's associated data")
    )]
    key: &str,
    shown: &str,
    hash: &RawHash<'_>,
) -> Result<E> {
    let encrypted = E::META.encrypted;
    if encrypted.is_empty() {
        return E::read_fields(shown, hash);
    }
    #[cfg(not(feature = "encryption"))]
    return Err(Error::Decrypt {
        key: shown.to_owned(),
        field: encrypted[0],
        reason: WITHOUT_ENCRYPTION.to_owned(),
    });
    #[cfg(feature = "encryption")]
    open_encrypted::<E>(key, shown, encrypted, hash)
}

#[cfg(feature = "encryption")]
fn open_encrypted<E: RedisEntity>(key: &str, shown: &str, encrypted: &[&'static str], hash: &RawHash<'_>) -> Result<E> {
    let ring = KeyRing::current()?;
    let mut opened: Vec<(&[u8], Cow<'_, [u8]>)> = Vec::with_capacity(hash.pairs().len());
    for &(name, value) in hash.pairs() {
        match encrypted.iter().find(|f| f.as_bytes() == name) {
            Some(field) => {
                let plain = ring.open(key, field, value).map_err(|reason| Error::Decrypt {
                    key: shown.to_owned(),
                    field,
                    reason,
                })?;
                opened.push((name, Cow::Owned(plain)));
            }
            None => opened.push((name, Cow::Borrowed(value))),
        }
    }
    let pairs = opened.iter().map(|(n, v)| (*n, &**v)).collect();
    E::read_fields(shown, &RawHash::from_pairs(pairs))
}

/// Refuses a hash whose key fields disagree with its key (`job:spoof`
/// holding `id = good`, written by another client): read as it is, it would
/// be another entity than the one asked for, and what is done to it would
/// be done to that other one. The key the fields give is built and compared
/// (no parsing, no key-part rules: this runs on every read); only a
/// mismatch parses the key, to name the field.
fn key_agrees(template: &KeyTemplate, key: &str, shown: &str, hash: &RawHash<'_>) -> Result<()> {
    let mut built = Vec::with_capacity(key.len());
    for segment in template.segments {
        match *segment {
            Segment::Lit(text) => built.extend_from_slice(text.as_bytes()),
            Segment::Field { field, .. } => match hash.get(field) {
                Some(held) => built.extend_from_slice(held),
                // An absent key field is the field decoder's to judge.
                None => return Ok(()),
            },
        }
    }
    if built == key.as_bytes() {
        return Ok(());
    }
    let parts = template.parse_key(key).unwrap_or_default();
    let mut fields = template.placeholders().map(|(_, field)| field);
    let differs = template
        .placeholders()
        .zip(parts.iter().map(|p| Some(*p)).chain(std::iter::repeat(None)))
        .find(|((_, field), part)| hash.get(field) != part.map(str::as_bytes))
        .map(|((_, field), _)| field)
        .or_else(|| fields.next());
    let Some(field) = differs else { return Ok(()) };
    Err(Error::Decode {
        key: shown.to_owned(),
        field,
        value: crate::error::DecodeValue::new(hash.get(field)),
        expected: "the value in the entity's key",
    })
}
