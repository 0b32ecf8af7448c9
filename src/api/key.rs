//! The secret key: checked before any request (a public key is refused), told apart by mode, hashed for the
//! ledger header. Never printed: no `Display`, a redacted `Debug`, and `redact` for text that might echo it.

use std::fmt::{self, Write as _};

use sha2::{Digest, Sha256};

/// A secret key. It is never printed: not by `Debug`, not in errors.
#[derive(Clone)]
pub struct SecretKey(String);

/// Test or live, from the key's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `skey_test_…`.
    Test,
    /// `skey_live_…`.
    Live,
}

impl Mode {
    /// `test` or `live`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }
}

/// Why a key is refused before any request.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// `pkey_…`.
    #[error("the key in ${0} is a public key (pkey_…); link creation needs the secret key (skey_…)")]
    Public(String),
    /// Contains characters no HTTP header can carry.
    #[error("the key in ${0} contains spaces or control characters; it should look like skey_test_… or skey_live_…")]
    Malformed(String),
    /// Unset or empty.
    #[error("no secret key: set the environment variable ${0} (or use --sandbox to try the job without an account)")]
    Missing(String),
}

impl SecretKey {
    /// Checks a key read from `variable`.
    pub fn new(key: String, variable: &str) -> Result<SecretKey, KeyError> {
        let key = key.trim().to_owned();
        if key.is_empty() {
            return Err(KeyError::Missing(variable.to_owned()));
        }
        if key.starts_with("pkey_") {
            return Err(KeyError::Public(variable.to_owned()));
        }
        // Anything else goes to the server, whose 401 says whether it is a key: the spec refuses only
        // public keys locally. Non-printable characters cannot travel in a header at all.
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KeyError::Malformed(variable.to_owned()));
        }
        crate::redact::remember(&key);
        Ok(SecretKey(key))
    }

    /// Test or live.
    pub fn mode(&self) -> Mode {
        if self.0.starts_with("skey_live_") { Mode::Live } else { Mode::Test }
    }

    /// A short one-way hash that tells keys apart in the ledger header without revealing them.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(format!("linkbatch-ledger-key:{}", self.0).as_bytes());
        digest[..8].iter().fold(String::with_capacity(16), |mut hex, b| {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{b:02x}");
            hex
        })
    }

    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}…redacted)", if self.mode() == Mode::Live { "skey_live_" } else { "skey_test_" })
    }
}

impl SecretKey {
    /// `text` with every occurrence of the key replaced (for a server's answer kept in the ledger).
    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.0, "[secret key]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_never_printed() {
        assert_eq!(SecretKey::new("pkey_test_abc".into(), "K").unwrap_err(), KeyError::Public("K".into()));
        assert_eq!(SecretKey::new(" ".into(), "K").unwrap_err(), KeyError::Missing("K".into()));
        assert!(matches!(SecretKey::new("skey test".into(), "K"), Err(KeyError::Malformed(_))));
        let key = SecretKey::new("skey_test_Secret123".into(), "K").unwrap();
        assert!(!format!("{key:?}").contains("Secret123"));
        assert_eq!(key.mode(), Mode::Test);
        assert_eq!(SecretKey::new("skey_live_x".into(), "K").unwrap().mode(), Mode::Live);
    }

    #[test]
    fn an_echoed_key_is_redacted() {
        let key = SecretKey::new("skey_test_Secret123".into(), "K").unwrap();
        assert_eq!(key.redact("auth skey_test_Secret123 seen"), "auth [secret key] seen");
    }
}
