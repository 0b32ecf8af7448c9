//! A row's key: its text, and its [`Digest`], the identity the ledger index and the duplicate check know it
//! by. Digested once, where the key is made (a planned row, a ledger line read); everything after reads the
//! digest it carries. Written to the ledger as its text alone.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;

/// A row key and its digest.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RowKey {
    text: String,
    id: Digest,
}

impl RowKey {
    /// The key `text`, digested.
    pub fn new(text: String) -> RowKey {
        let id = Digest::of(text.as_bytes());
        RowKey { text, id }
    }

    /// The key's identity in the ledger index.
    pub fn id(&self) -> Digest {
        self.id
    }

    /// The key's text, to be filled again (a planned row's buffer reused).
    pub fn into_string(self) -> String {
        self.text
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Deref for RowKey {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl From<String> for RowKey {
    fn from(text: String) -> RowKey {
        RowKey::new(text)
    }
}

impl From<&str> for RowKey {
    fn from(text: &str) -> RowKey {
        RowKey::new(text.to_owned())
    }
}

impl fmt::Display for RowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.text.fmt(f)
    }
}

impl fmt::Debug for RowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.text.fmt(f)
    }
}

impl Serialize for RowKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for RowKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RowKey, D::Error> {
        String::deserialize(deserializer).map(RowKey::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_its_text_on_the_page_and_its_digest_in_the_index() {
        let key = RowKey::from("SUB-1002:2026-12");
        assert_eq!(key.id(), Digest::of(b"SUB-1002:2026-12"));
        assert_eq!(serde_json::to_string(&key).unwrap(), "\"SUB-1002:2026-12\"");
        let read: RowKey = serde_json::from_str("\"SUB-1002:2026-12\"").unwrap();
        assert_eq!((read.as_str(), read.id()), ("SUB-1002:2026-12", key.id()));
        assert_eq!(format!("{key} {key:?}"), "SUB-1002:2026-12 \"SUB-1002:2026-12\"");
    }
}
