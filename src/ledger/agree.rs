//! The ledger's direct scanner (the fast path of `read`) and `serde_json` build the same index from the same
//! file: a property test over random histories of a few keys.

use proptest::prelude::*;

use super::index::Index;
use super::{Event, Time, encode, read};
use crate::digest::Digest;
use crate::request::{ClassicRequest, LinkRequest};
use crate::row_key::RowKey;

fn at(secs: u64) -> Time {
    Time::from(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + secs))
}

/// One event of a key's history: `kind` picks which, `n` varies its values.
fn event(key: u8, kind: u8, n: u16) -> Event {
    let key = RowKey::from(format!("k{key}"));
    let secs = u64::from(n);
    let fingerprint = Digest::from_text(&format!("{:032x}", u128::from(n) * 7919));
    let request = LinkRequest::Classic(ClassicRequest {
        amount: u64::from(n) + 100,
        currency: "thb".into(),
        title: format!("t \"{n}\""),
        description: "d\\nü".into(),
        multiple: n.is_multiple_of(2),
        metadata: std::collections::BTreeMap::new(),
    });
    let link = format!("link_test_{n}");
    match kind % 6 {
        0 | 1 => Event::Intent { key, fingerprint, at: at(secs), request },
        2 => Event::Created {
            key,
            payment_uri: format!("https://pay.example/{link}"),
            link_id: link,
            fingerprint,
            at: at(secs),
        },
        3 => {
            Event::Failed { key, fingerprint, code: "invalid_amount".into(), message: format!("no {n}"), at: at(secs) }
        }
        4 => Event::Unsent { key, at: at(secs), reason: "refused".into() },
        _ => Event::Deleted { key, link_id: link, at: at(secs) },
    }
}

/// What the index says of each key, in the order of the keys.
fn seen(index: &Index, keys: u8) -> Vec<String> {
    (0..keys)
        .map(|k| match index.get(&Digest::of(format!("k{k}").as_bytes())) {
            None => "none".to_owned(),
            Some(s) => format!(
                "{:?} {:?} {:?} {:?} {:?}",
                s.link.map(|l| (index.link_id(&l).to_owned(), index.payment_uri(&l), l.line(), l.fingerprint)),
                s.open_since(),
                s.open_request(),
                s.failed(),
                s.unsettled()
            ),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_direct_scanner_and_serde_agree(history in proptest::collection::vec((0u8..4, 0u8..6, 0u16..5000), 0..60)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let mut bytes = encode(&Event::Header(super::tests::header())).unwrap();
        let events: Vec<Event> = history.iter().map(|&(key, kind, n)| event(key, kind, n)).collect();
        let mut by_serde = Index::default();
        by_serde.record(Event::Header(super::tests::header()), 0);
        for event in &events {
            let offset = bytes.len() as u64;
            let line = encode(event).unwrap();
            // serde_json reads the line back as the slow path would, checksum field and all.
            let parsed: Event = serde_json::from_slice(&line).unwrap();
            by_serde.record(parsed, offset);
            bytes.extend_from_slice(&line);
        }
        std::fs::write(&path, &bytes).unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        let (mut direct, _, _) = read::read(&path, &mut file).unwrap();
        // The file's own open requests are read back from it; serde's index holds them from the events.
        let mut file = std::fs::File::open(&path).unwrap();
        super::back::load_open_requests(&mut by_serde, &mut file).unwrap();
        super::back::load_open_requests(&mut direct, &mut file).unwrap();
        prop_assert_eq!(seen(&direct, 4), seen(&by_serde, 4));
        prop_assert_eq!(direct.lines, by_serde.lines);
        prop_assert_eq!(direct.sent().collect::<Vec<_>>(), by_serde.sent().collect::<Vec<_>>());
    }
}
