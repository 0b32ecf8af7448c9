//! The ledger index's text arena: every link id and payment URI recorded, each written once, the URI's
//! common prefix (`https://pay.omise.co/links/`) kept once for all links; the arena doubles as the set of
//! claimed link ids. Holds text and nothing of a key's state (that is `index`'s).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use hashbrown::HashTable;

/// Link ids and payment URIs; every id ever recorded is claimed.
#[derive(Debug, Default)]
pub(super) struct Links {
    /// Records: varint id length, id, varint prefix number, varint tail code (0: the tail is the id; else
    /// length + 1), tail.
    text: Vec<u8>,
    /// The records by id, built the first time reconciliation asks (most runs never do) and kept up to date
    /// from then on.
    claimed: OnceLock<HashTable<usize>>,
    prefixes: Vec<String>,
    prefix_numbers: HashMap<String, usize>,
    hasher: std::hash::RandomState,
}

/// Past this many distinct URI prefixes, new ones are stored whole (prefix 0 is the empty one).
const MAX_PREFIXES: usize = 1024;

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get_varint(text: &[u8], at: &mut usize) -> usize {
    let mut n = 0usize;
    let mut shift = 0;
    // Records are only ever written by `put_varint` above, so every varint ends inside the arena.
    while let Some(&byte) = text.get(*at) {
        *at += 1;
        n |= usize::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            break;
        }
        shift += 7;
    }
    n
}

/// The link id of the record at `record`.
fn id_in(text: &[u8], record: usize) -> &str {
    let mut at = record;
    let len = get_varint(text, &mut at);
    // Every id was written from a `&str`, whole, so the bytes are valid UTF-8.
    std::str::from_utf8(&text[at..at + len]).unwrap_or_default()
}

impl Links {
    pub(super) fn id_at(&self, record: usize) -> &str {
        id_in(&self.text, record)
    }

    pub(super) fn uri_at(&self, record: usize) -> String {
        let mut at = record;
        let id_len = get_varint(&self.text, &mut at);
        let id = &self.text[at..at + id_len];
        at += id_len;
        let prefix = &self.prefixes[get_varint(&self.text, &mut at)];
        let tail = match get_varint(&self.text, &mut at) {
            0 => id,
            code => &self.text[at..at + code - 1],
        };
        let mut uri = String::with_capacity(prefix.len() + tail.len());
        uri.push_str(prefix);
        // Written from a `&str`, whole (see `id_in`).
        uri.push_str(std::str::from_utf8(tail).unwrap_or_default());
        uri
    }

    /// Where each record starts.
    fn records(&self) -> impl Iterator<Item = usize> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            let record = at;
            let id_len = get_varint(&self.text, &mut at);
            at += id_len;
            get_varint(&self.text, &mut at);
            at += get_varint(&self.text, &mut at).saturating_sub(1);
            (record < self.text.len()).then_some(record)
        })
    }

    fn claimed(&self) -> &HashTable<usize> {
        self.claimed.get_or_init(|| {
            let mut table = HashTable::new();
            for record in self.records() {
                let id = self.id_at(record);
                if self.find_in(&table, id).is_none() {
                    table.insert_unique(self.hasher.hash_one(id), record, |&r| self.hasher.hash_one(self.id_at(r)));
                }
            }
            table
        })
    }

    fn find_in(&self, table: &HashTable<usize>, id: &str) -> Option<usize> {
        table.find(self.hasher.hash_one(id), |&r| self.id_at(r) == id).copied()
    }

    pub(super) fn find(&self, id: &str) -> Option<usize> {
        self.find_in(self.claimed(), id)
    }

    /// Records a link: a new record, unless the claimed set is built and has the id already.
    pub(super) fn intern(&mut self, id: &str, uri: &str) -> usize {
        if let Some(record) = self.claimed.get().and_then(|table| self.find_in(table, id)) {
            return record;
        }
        if self.prefixes.is_empty() {
            self.prefixes.push(String::new());
            self.prefix_numbers.insert(String::new(), 0);
        }
        let split = uri.rfind('/').map_or(0, |i| i + 1);
        let (prefix, tail) = uri.split_at(split);
        // Most links of a ledger share one prefix: the newest is tried before the map.
        let newest = self.prefixes.len() - 1;
        let number = if newest > 0 && self.prefixes[newest] == prefix {
            newest
        } else {
            match self.prefix_numbers.get(prefix) {
                Some(&n) => n,
                None if self.prefixes.len() < MAX_PREFIXES => {
                    self.prefixes.push(prefix.to_owned());
                    self.prefix_numbers.insert(prefix.to_owned(), self.prefixes.len() - 1);
                    self.prefixes.len() - 1
                }
                None => 0,
            }
        };
        let tail = if number == 0 { uri } else { tail };
        let record = self.text.len();
        put_varint(&mut self.text, id.len());
        self.text.extend_from_slice(id.as_bytes());
        put_varint(&mut self.text, number);
        if tail == id {
            put_varint(&mut self.text, 0);
        } else {
            put_varint(&mut self.text, tail.len() + 1);
            self.text.extend_from_slice(tail.as_bytes());
        }
        if let Some(table) = self.claimed.get_mut() {
            let (text, hasher) = (&self.text, &self.hasher);
            table.insert_unique(hasher.hash_one(id), record, |&r| hasher.hash_one(id_in(text, r)));
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_round_trip_with_and_without_shared_prefixes() {
        let mut links = Links::default();
        let a = links.intern("link_test_1", "https://pay.omise.co/links/link_test_1");
        let b = links.intern("link_test_2", "https://link.omise.co/8D7B9C06");
        let c = links.intern("link_test_3", "odd");
        // The claimed set is built on first use, from every record, and kept up to date after.
        assert!(links.find("link_test_3").is_some() && links.find("link_test_4").is_none());
        assert_eq!(links.intern("link_test_1", "ignored"), a);
        links.intern("link_test_4", "https://pay.omise.co/links/link_test_4");
        assert!(links.find("link_test_4").is_some());
        assert_eq!(
            (links.id_at(a), links.uri_at(a).as_str()),
            ("link_test_1", "https://pay.omise.co/links/link_test_1")
        );
        assert_eq!((links.id_at(b), links.uri_at(b).as_str()), ("link_test_2", "https://link.omise.co/8D7B9C06"));
        assert_eq!((links.id_at(c), links.uri_at(c).as_str()), ("link_test_3", "odd"));
        assert!(links.find("link_test_2").is_some() && links.find("link_test_5").is_none());
        let long = "x".repeat(300);
        let d = links.intern(&long, &format!("https://a/{long}"));
        assert_eq!(links.id_at(d), long);
        assert_eq!(links.uri_at(d), format!("https://a/{long}"));
    }
}
