//! The secret key: checked before any request (a public key is refused), told apart by mode, hashed for the
//! ledger header. Never printed: no `Display`, a redacted `Debug`, and `redact` for text that might echo it.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::terms::Mode;

/// A secret key. It is never printed: not by `Debug`, not in errors.
#[derive(Clone)]
pub struct SecretKey(String);

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
    #[error("no {what}: set the environment variable ${variable} (or use --sandbox to try the job without an account)")]
    Missing {
        /// The variable.
        variable: String,
        /// "secret key" or "Payment Links+ API key".
        what: &'static str,
    },
}

impl SecretKey {
    /// Checks a key read from `variable`; `what` names it in the refusal ("secret key", "Payment Links+ API
    /// key").
    pub fn new(key: String, variable: &str, what: &'static str) -> Result<SecretKey, KeyError> {
        let key = key.trim().to_owned();
        if key.is_empty() {
            return Err(KeyError::Missing { variable: variable.to_owned(), what });
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

    /// Test or live, as the key's prefix says; `None` when it says neither (a Payment Links+ API key).
    pub fn mode(&self) -> Option<Mode> {
        if self.0.starts_with("skey_live_") {
            Some(Mode::Live)
        } else if self.0.starts_with("skey_test_") {
            Some(Mode::Test)
        } else {
            None
        }
    }

    /// A short one-way hash that tells keys apart in the ledger header without revealing them.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(format!("linkbatch-ledger-key:{}", self.0).as_bytes());
        crate::digest::hex(&digest[..8])
    }

    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.mode() {
            Some(Mode::Live) => "skey_live_",
            Some(Mode::Test) => "skey_test_",
            None => "",
        };
        write!(f, "SecretKey({prefix}…redacted)")
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
        assert_eq!(
            SecretKey::new("pkey_test_abc".into(), "K", "secret key").unwrap_err(),
            KeyError::Public("K".into())
        );
        assert_eq!(
            SecretKey::new(" ".into(), "K", "secret key").unwrap_err(),
            KeyError::Missing { variable: "K".into(), what: "secret key" }
        );
        assert!(matches!(SecretKey::new("skey test".into(), "K", "secret key"), Err(KeyError::Malformed(_))));
        let key = SecretKey::new("skey_test_Secret123".into(), "K", "secret key").unwrap();
        assert_eq!(format!("{key:?}"), "SecretKey(skey_test_…redacted)");
        assert_eq!(key.mode(), Some(Mode::Test));
        assert_eq!(SecretKey::new("skey_live_x".into(), "K", "secret key").unwrap().mode(), Some(Mode::Live));
        let plus = SecretKey::new("lp_9f2c1e7a55".into(), "K", "Payment Links+ API key").unwrap();
        assert_eq!((plus.mode(), format!("{plus:?}")), (None, "SecretKey(…redacted)".to_owned()));
    }

    #[test]
    fn an_echoed_key_is_redacted() {
        let key = SecretKey::new("skey_test_Secret123".into(), "K", "secret key").unwrap();
        assert_eq!(key.redact("auth skey_test_Secret123 seen"), "auth [secret key] seen");
    }
}
