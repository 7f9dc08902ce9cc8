//! The session token: the secret the browser holds, and its digest, the
//! only form Redis sees.

use std::fmt;

use sha2::{Digest, Sha256};

use repobox_orm::Error as OrmError;

use crate::Result;

/// The secret a browser holds for its session: 256 bits from the operating
/// system's random generator, as 64 lowercase hex characters. It is handed to
/// the caller once, by [`Session::create_user_session`](super::Session::create_user_session); Redis only ever
/// holds its SHA-256 digest. `Debug` and `Display` show a fingerprint only.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    pub(super) fn generate() -> Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| OrmError::Encode {
            field: "id",
            message: format!("the OS random generator failed: {e}"),
        })?;
        Ok(SessionToken(hex(&bytes)))
    }

    /// The token a browser sent back (its cookie's value).
    pub fn from_cookie(value: impl Into<String>) -> Self {
        SessionToken(value.into())
    }

    /// The token itself, to put in the cookie. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What Redis keys the session by: the lowercase hex SHA-256 of the
    /// token's UTF-8 bytes (`session:<digest>`).
    pub fn digest(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes()))
    }

    /// The first 8 characters of the digest: enough to tell sessions apart in
    /// a log, not enough to find one.
    pub fn fingerprint(&self) -> String {
        self.digest()[..8].to_owned()
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionToken({}…)", self.fingerprint())
    }
}

impl fmt::Display for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session {}…", self.fingerprint())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_lowercase_hex_sha256_of_the_token() {
        // The test vector of the README: what the web app must compute too.
        let token = SessionToken::from_cookie("4d6f6e6b65792d746f6b656e2d666f722d7465737473");
        assert_eq!(
            token.digest(),
            "436eec33f95b0667331e4d3ab6b3e719aca76847905751f9756186201ab78dad"
        );
        assert_eq!(token.fingerprint(), "436eec33");
        assert_eq!(format!("{token:?}"), "SessionToken(436eec33…)");
        assert!(!format!("{token}").contains(token.expose()));
        let fresh = SessionToken::generate().unwrap();
        assert_eq!(fresh.expose().len(), 64);
        assert_ne!(fresh, SessionToken::generate().unwrap());
    }
}
