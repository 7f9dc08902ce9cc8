//! Encrypted fields: `#[redis(encrypted)]` values are sealed with AES-256-GCM
//! before they reach Redis and opened after they are read.
//!
//! The stored value is `v1:<key id>:<nonce>:<sealed>`: the version, the id of
//! the key that sealed it, the 12-byte nonce and the ciphertext followed by the
//! 16-byte tag, both in standard base64 with padding. The associated data is
//! the entity's Redis key, a zero byte and the hash field name, so a value
//! copied to another entity or another field does not open. Every write draws
//! a fresh random nonce.
//!
//! Keys come from a [`KeyRing`]: `REPOBOX_ENCRYPTION_KEYS=id1:<base64 32 bytes>,id0:<...>`
//! (read on first use), or one installed with [`KeyRing::install`]. The first
//! key seals; every key opens, so keys rotate by putting a new one first.

use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Error, Result, Shown};

/// The environment variable a key ring is read from.
pub const KEYS_ENV: &str = "REPOBOX_ENCRYPTION_KEYS";

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;

/// The keys of encrypted fields: the first seals, all open.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<(String, Aes256Gcm)>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).finish()
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidArgument {
        name: "encryption keys",
        reason,
    }
}

static INSTALLED: RwLock<Option<Arc<KeyRing>>> = RwLock::new(None);

impl KeyRing {
    /// A ring of `(id, 32-byte key)`; the first seals. Ids are 1 to 64
    /// printable ASCII characters other than `:` and `,` (so two ids never
    /// look alike: no invisible or bidi characters), and are unique: a value
    /// names the key that opens it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty ring, an id
    /// that is empty, too long, not printable ASCII or holds `:` or `,`, or an id given
    /// twice.
    pub fn new<I: Into<String>>(keys: impl IntoIterator<Item = (I, [u8; 32])>) -> Result<Self> {
        let mut ring: Vec<(String, Aes256Gcm)> = Vec::new();
        for (id, key) in keys {
            let id = id.into();
            if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_graphic() && c != ':' && c != ',') {
                return Err(invalid(format!(
                    "key id {} must be 1 to 64 printable ASCII characters, without `:` or `,`",
                    Shown::new(&id)
                )));
            }
            // With two keys under one id, a value sealed by one would be
            // tried with the other only, and never open.
            if ring.iter().any(|(other, _)| *other == id) {
                return Err(invalid(format!(
                    "key id {} appears twice; each key needs an id of its own",
                    Shown::new(&id)
                )));
            }
            ring.push((id, Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key))));
        }
        if ring.is_empty() {
            return Err(invalid("the key ring is empty".into()));
        }
        Ok(KeyRing { keys: ring })
    }

    /// Parses `id1:<base64 key>,id0:<base64 key>` (the format of [`KEYS_ENV`]).
    /// Messages never show a key.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an entry that is not
    /// `id:<base64 of 32 bytes>`, and as [`KeyRing::new`]; the message never shows a key.
    pub fn parse(spec: &str) -> Result<Self> {
        let keys = spec
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|entry| {
                let (id, b64) = entry
                    .split_once(':')
                    .ok_or_else(|| invalid("each key is `id:<base64 of 32 bytes>`".into()))?;
                let bytes = STANDARD
                    .decode(b64.trim())
                    .map_err(|_| invalid(format!("key {} is not base64", Shown::new(id))))?;
                let key: [u8; 32] = bytes
                    .try_into()
                    .map_err(|b: Vec<u8>| invalid(format!("key {} is {} bytes, not 32", Shown::new(id), b.len())))?;
                Ok((id.to_owned(), key))
            })
            .collect::<Result<Vec<_>>>()?;
        KeyRing::new(keys)
    }

    /// The ring in [`KEYS_ENV`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when [`KEYS_ENV`] is unset,
    /// not Unicode, or not a valid ring (as [`KeyRing::parse`]).
    pub fn from_env() -> Result<Self> {
        match std::env::var(KEYS_ENV) {
            Ok(spec) => KeyRing::parse(&spec),
            Err(_) => Err(invalid(format!("{KEYS_ENV} is not set: encrypted fields need a key"))),
        }
    }

    /// Makes this ring the one every encrypted field of the process uses.
    pub fn install(self) {
        *INSTALLED.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(self));
    }

    /// The installed ring, or the one in [`KEYS_ENV`] (installed on first use).
    ///
    /// # Errors
    ///
    /// As [`KeyRing::from_env`] when no ring is installed and the environment holds none or a
    /// bad one.
    pub fn current() -> Result<Arc<KeyRing>> {
        if let Some(ring) = INSTALLED.read().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(ring);
        }
        let ring = Arc::new(KeyRing::from_env()?);
        *INSTALLED.write().unwrap_or_else(|e| e.into_inner()) = Some(ring.clone());
        Ok(ring)
    }

    /// Seals `plain` for field `field` of the entity at `key`, with a fresh nonce.
    pub(crate) fn seal(&self, key: &str, field: &str, plain: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| Error::Encode {
            field: "nonce",
            message: format!("the OS random generator failed: {e}"),
        })?;
        self.seal_with(key, field, plain, nonce)
    }

    fn seal_with(&self, key: &str, field: &str, plain: &[u8], nonce: [u8; NONCE_LEN]) -> Result<Vec<u8>> {
        let (id, cipher) = &self.keys[0];
        let aad = associated_data(key, field);
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad: &aad })
            .map_err(|_| Error::Encode {
                field: "encrypted field",
                message: "encryption failed".into(),
            })?;
        Ok(format!("{VERSION}:{id}:{}:{}", STANDARD.encode(nonce), STANDARD.encode(sealed)).into_bytes())
    }

    /// Opens a value sealed for field `field` of the entity at `key`; the
    /// error says why not (never showing the value or a key, and at most 64
    /// characters of the key id it names: another client may have written it).
    pub(crate) fn open(&self, key: &str, field: &str, stored: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let text = std::str::from_utf8(stored).map_err(|_| "not an encrypted value".to_owned())?;
        let mut parts = text.splitn(4, ':');
        let (Some(VERSION), Some(id), Some(nonce), Some(sealed)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not an encrypted value (`v1:<key id>:<nonce>:<sealed>`)".into());
        };
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .ok_or_else(|| format!("sealed with key {}, which the key ring does not hold", Shown::new(id)))?;
        let nonce = STANDARD.decode(nonce).map_err(|_| "a bad nonce".to_owned())?;
        if nonce.len() != NONCE_LEN {
            return Err("a bad nonce".into());
        }
        let sealed = STANDARD.decode(sealed).map_err(|_| "bad ciphertext".to_owned())?;
        let aad = associated_data(key, field);
        cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                format!(
                    "does not open with key {} for this entity and field (wrong key, or copied from elsewhere)",
                    Shown::new(id)
                )
            })
    }
}

fn associated_data(key: &str, field: &str) -> Vec<u8> {
    [key.as_bytes(), b"\0", field.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(id: &str, byte: u8) -> KeyRing {
        KeyRing::new([(id, [byte; 32])]).unwrap()
    }

    #[test]
    fn the_documented_format_and_test_vector() {
        // Key id `k1`, key 32 bytes of 0x01, nonce 12 bytes of 0x02, entity key
        // `git_credential:u1:github`, field `access_token`, plaintext `ghp_secret`.
        let sealed = ring("k1", 1)
            .seal_with("git_credential:u1:github", "access_token", b"ghp_secret", [2; 12])
            .unwrap();
        let sealed = String::from_utf8(sealed).unwrap();
        assert_eq!(sealed, VECTOR);
        assert_eq!(
            ring("k1", 1)
                .open("git_credential:u1:github", "access_token", sealed.as_bytes())
                .unwrap(),
            b"ghp_secret"
        );
    }

    /// Checked against Python's `cryptography` AESGCM (the test vector of docs/GUIDE.md).
    const VECTOR: &str = "v1:k1:AgICAgICAgICAgIC:YL65Fjkyoo+2uDAmiBrU/VR7+i4Cn4j2tDM=";

    #[test]
    fn values_do_not_open_elsewhere_or_with_another_key() {
        let r = ring("k1", 1);
        let sealed = r.seal("a:1", "token", b"secret").unwrap();
        assert!(r.open("a:2", "token", &sealed).is_err(), "another entity");
        assert!(r.open("a:1", "other", &sealed).is_err(), "another field");
        assert!(
            ring("k1", 9).open("a:1", "token", &sealed).is_err(),
            "another key, same id"
        );
        let err = ring("k2", 1).open("a:1", "token", &sealed).unwrap_err();
        assert!(err.contains("\"k1\""), "{err}");
        assert_ne!(r.seal("a:1", "token", b"secret").unwrap(), sealed, "fresh nonces");
    }

    #[test]
    fn rings_rotate_and_parse_without_showing_keys() {
        let old = ring("k1", 1);
        let sealed = old.seal("a:1", "t", b"x").unwrap();
        let b64 = |b: u8| STANDARD.encode([b; 32]);
        let rotated = KeyRing::parse(&format!("k2:{},k1:{}", b64(2), b64(1))).unwrap();
        assert_eq!(rotated.open("a:1", "t", &sealed).unwrap(), b"x");
        assert!(
            String::from_utf8(rotated.seal("a:1", "t", b"x").unwrap())
                .unwrap()
                .starts_with("v1:k2:")
        );
        for bad in ["", "k1", "k1:notbase64!", &format!("k1:{}", STANDARD.encode([1; 16]))] {
            let err = KeyRing::parse(bad).unwrap_err().to_string();
            assert!(!err.contains(&b64(1)), "{err}");
        }
        assert!(!format!("{rotated:?}").contains(&b64(2)));
    }

    #[test]
    fn key_ids_that_could_look_alike_are_refused() {
        for id in ["k1\u{200b}", "k\u{202e}1", "ключ", "", &"k".repeat(65)] {
            let err = KeyRing::new([(id, [1u8; 32])]).unwrap_err();
            assert!(err.to_string().contains("printable ASCII"), "{id:?}: {err}");
        }
        assert!(KeyRing::new([("k1", [1u8; 32]), ("k1-old.2", [2u8; 32])]).is_ok());
    }

    #[test]
    fn a_ring_with_one_id_twice_is_refused() {
        let err = KeyRing::new([("k1", [1; 32]), ("k2", [2; 32]), ("k1", [3; 32])]).unwrap_err();
        assert!(err.to_string().contains("\"k1\" appears twice"), "{err}");
        let b64 = |b: u8| STANDARD.encode([b; 32]);
        let err = KeyRing::parse(&format!("k1:{},k1:{}", b64(1), b64(1))).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
    }

    #[test]
    fn a_huge_key_id_is_shown_cut() {
        let id = "k".repeat(100_000);
        let stored = format!("v1:{id}:AgICAgICAgICAgIC:YL65Fjkyoo+2uDAmiBrU/VR7+i4Cn4j2tDM=");
        let err = ring("k1", 1).open("a:1", "t", stored.as_bytes()).unwrap_err();
        assert!(err.len() < 200, "{} bytes", err.len());
        assert!(
            err.contains(&format!("\"{}\"… (100000 bytes)", "k".repeat(64))),
            "{err}"
        );
        let err = KeyRing::new([(id.as_str(), [1; 32]), (id.as_str(), [1; 32])]).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
        let err = KeyRing::parse(&format!("{id}:notbase64!")).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }
}
