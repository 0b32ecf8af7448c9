//! 16-byte digests (the first half of a SHA-256): request fingerprints, and the identity of a row key in the
//! ledger index and the duplicate-key check.
//!
//! A key is held as its digest, never as its text, so a million keys cost 16 bytes each. Two keys with one
//! digest (odds about 10^-27 at a million keys) would be treated as one: the second row is refused as a
//! duplicate key or reported with the first row's link, and nothing is ever sent for it. The failure mode is
//! a missing link, never a second one.

use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use sha2::Sha256;

/// The first 16 bytes of a SHA-256.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Digest([u8; 16]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        let full = Sha256::digest(bytes);
        let mut short = [0u8; 16];
        short.copy_from_slice(&full[..16]);
        Digest(short)
    }

    /// Reads the 32-hex-digit form [`Digest`]'s `Display` writes; `None` for anything else.
    pub fn from_hex(text: &str) -> Option<Digest> {
        let text = text.as_bytes();
        if text.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        let mut bad = 0u8;
        for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
            let (high, low) = (HEX_VALUE[usize::from(pair[0])], HEX_VALUE[usize::from(pair[1])]);
            bad |= (high | low) & 0x10;
            *byte = (high << 4) | (low & 0xf);
        }
        (bad == 0).then_some(Digest(bytes))
    }

    /// A fingerprint as a ledger line spells it. Any text that is not 32 hex digits (no linkbatch writes
    /// one) gets the digest of the text itself, so it equals no real fingerprint.
    pub fn from_text(text: &str) -> Digest {
        Digest::from_hex(text).unwrap_or_else(|| Digest::of(text.as_bytes()))
    }

    /// Already uniform: the first eight bytes are a hash-table hash.
    pub fn bucket(&self) -> u64 {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(head)
    }
}

/// `bytes` as lowercase hex digits: the one encoder for a key's fingerprint and a webhook's signature.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(2 * bytes.len()), |mut hex, b| {
        // Writing to a String cannot fail.
        let _ = std::fmt::Write::write_fmt(&mut hex, format_args!("{b:02x}"));
        hex
    })
}

/// The value of each lowercase hex digit; 0x10 marks every other byte.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0x10u8; 256];
    let mut i = 0;
    while i < 16 {
        table[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    table
};

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 32];
        for (pair, byte) in text.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
        // Proven: every byte written above comes from HEX, which is ASCII.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.bucket());
    }
}

/// Written as its 32 hex digits, as every ledger line spells a fingerprint.
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Read as [`Digest::from_text`] reads it: never refused.
impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Digest;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fingerprint")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Digest, E> {
                Ok(Digest::from_text(text))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Hashes a [`Digest`] by taking its bytes as they are: a SHA-256 needs no second hash.
#[derive(Debug, Default, Clone, Copy)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `Digest::hash` feeds this hasher, through `write_u64`; anything else still hashes, slowly.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A `HashSet`/`HashMap` hasher for [`Digest`] keys.
pub type BuildDigestHasher = BuildHasherDefault<DigestHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_foreign_text() {
        let d = Digest::of(b"SKU-1");
        let text = d.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(Digest::from_hex(&text), Some(d));
        assert_eq!(Digest::from_text(&text), d);
        assert_eq!(Digest::from_hex("F".repeat(32).as_str()), None);
        assert_ne!(Digest::from_text("f"), Digest::from_text("g"));
        assert_ne!(Digest::from_text("f"), d);
    }

    #[test]
    fn serde_writes_the_hex_and_reads_it_back() {
        let d = Digest::of(b"SKU-1");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert_eq!(serde_json::from_str::<Digest>("\"f\"").unwrap(), Digest::from_text("f"));
    }
}
