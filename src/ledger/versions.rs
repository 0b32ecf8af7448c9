//! Ledgers of both format versions, as files (`tests/fixtures/ledger/`): one line of every kind of event,
//! read as before and written back byte for byte. Version 1 lines carry no checksum; version 2 lines begin
//! with `{"sum":"…",`. The files were written by [`every_event`] with the encoder of the commit that added
//! them; a change to an event's schema that would change its bytes, or stop an old file from reading, fails
//! here. `LINKBATCH_BLESS=1 cargo test ledger::versions` writes them again, for a deliberate format change.

use std::path::PathBuf;

use super::{Event, Header, Time, encode};
use crate::digest::Digest;
use crate::rate::Rate;
use crate::request::{ClassicRequest, LinkRequest, PlusRequest};
use crate::terms::Payment;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ledger").join(name)
}

fn header(version: u32) -> Event {
    Event::Header(Header {
        version,
        api: crate::terms::ApiKind::Links,
        base_url: "https://api.omise.co".into(),
        mode: Some(crate::terms::Mode::Test),
        key_hash: "5d0f4a3e9b1c2d7e8f60718293a4b5c6".into(),
        auth: None,
    })
}

const KEY: &str = "SUB-1002:2026-12";
const LINK: &str = "link_test_60avk3o7u16dfvc881y";
const URI: &str = "https://pay.omise.co/links/60avk3o7u16dfvc881y";

fn at_text(second: u32) -> String {
    format!("2026-11-30T04:44:{second:02}.029Z")
}

fn at(second: u32) -> Time {
    Time::parse(&at_text(second)).expect("an RFC 3339 time")
}

fn classic() -> LinkRequest {
    LinkRequest::Classic(ClassicRequest {
        amount: 99000,
        currency: "thb".into(),
        title: "Premium plan - 2026-12".into(),
        description: "Monthly payment for the Premium plan, 2026-12 (SUB-1002) \"quoted\" ü".into(),
        multiple: false,
        metadata: [("billing_month".to_owned(), "2026-12".to_owned())].into_iter().collect(),
    })
}

fn fingerprint() -> Digest {
    classic().fingerprint()
}

fn rate(text: &str) -> Rate {
    text.parse().expect("a rate")
}

/// One event of every kind, with the values a run writes, in an order a ledger could hold them.
pub(super) fn every_event(version: u32) -> Vec<Event> {
    [vec![header(version)], made(), answered(), changed(), read(), mailed()].concat()
}

/// A run's requests and their outcomes.
fn made() -> Vec<Event> {
    let plus = LinkRequest::Plus(PlusRequest {
        template_id: 123,
        team_id: 456,
        name: "VIP".into(),
        amount: 250000,
        currency: Some("thb".into()),
        multiple_usage: true,
        custom_webhook: None,
    });
    vec![
        Event::Run { at: at(0), version: "0.1.0".into() },
        Event::Intent { key: KEY.into(), fingerprint: fingerprint(), at: at(1), request: classic() },
        Event::Unsent { key: KEY.into(), at: at(1), reason: "no server answered at api.omise.co".into() },
        Event::Intent { key: "T-9".into(), fingerprint: plus.fingerprint(), at: at(2), request: plus },
        Event::Created {
            key: KEY.into(),
            link_id: LINK.to_owned(),
            payment_uri: URI.into(),
            fingerprint: fingerprint(),
            at: at(3),
        },
        Event::Adopted {
            key: "A-1".into(),
            link_id: "link_test_adopted".into(),
            payment_uri: "https://pay.omise.co/links/adopted".into(),
            fingerprint: fingerprint(),
            at: at(4),
        },
        Event::Failed {
            key: "F-1".into(),
            fingerprint: fingerprint(),
            code: "invalid_amount".into(),
            message: "amount must be at least 2000".into(),
            at: at(5),
        },
    ]
}

/// Answers that could not be read or matched, and how they were settled.
fn answered() -> Vec<Event> {
    vec![
        Event::Unreadable {
            key: "U-1".into(),
            fingerprint: fingerprint(),
            answer_to: crate::terms::AnswerTo::Create,
            status: 200,
            missing: "id".into(),
            body: "{\"object\":\"link\"}".into(),
            at: at(6),
        },
        Event::Unreadable {
            key: "R-1".into(),
            fingerprint: fingerprint(),
            answer_to: crate::terms::AnswerTo::Recover,
            status: 0,
            missing: "2 links that could each be this row's".into(),
            body: String::new(),
            at: at(6),
        },
        Event::Unmatched { key: "R-2".into(), fingerprint: fingerprint(), candidates: 3, at: at(6) },
        Event::Settled {
            key: "U-1".into(),
            link_id: Some("link_test_settled".into()),
            payment_uri: Some("https://pay.omise.co/links/settled".into()),
            fingerprint: fingerprint(),
            at: at(7),
        },
        Event::Settled { key: "U-2".into(), link_id: None, payment_uri: None, fingerprint: fingerprint(), at: at(8) },
    ]
}

/// A changed row's link updated, replaced or kept; the output and a learned rate.
fn changed() -> Vec<Event> {
    vec![
        Event::UpdateIntent { key: KEY.into(), link_id: LINK.to_owned(), fingerprint: fingerprint(), at: at(9) },
        Event::Updated { key: KEY.into(), link_id: LINK.to_owned(), fingerprint: fingerprint(), at: at(10) },
        Event::ReplaceIntent {
            key: "A-1".into(),
            link_id: "link_test_adopted".into(),
            fingerprint: fingerprint(),
            at: at(11),
        },
        Event::Deleted { key: "A-1".into(), link_id: "link_test_adopted".into(), at: at(12) },
        Event::ReplaceRefused {
            key: KEY.into(),
            link_id: LINK.to_owned(),
            reason: "the link has been paid".into(),
            at: at(13),
        },
        Event::Output { bytes: 4711, modified: 1_764_477_896_029_000_000, at: at(14) },
        Event::Learned {
            job_rates: vec![rate("60/min"), rate("1000/h")],
            rates: vec![rate("30/min"), rate("1000/h")],
            was: rate("60/min"),
            now: rate("30/min"),
            at: at(15),
        },
    ]
}

/// A refresh.
fn read() -> Vec<Event> {
    let paid = Payment {
        used: Some(true),
        charges: 1,
        paid_amount: 99000,
        refunded_amount: 1000,
        refunded_charges: 0,
        currency: "thb".into(),
        last_paid_at: Some(at_text(40)),
        link_status: None,
    };
    vec![
        Event::RefreshStarted { at: at(16) },
        Event::Refreshed { key: KEY.into(), link_id: LINK.to_owned(), payment: paid, at: at(17) },
        Event::RefreshFinished { at: at(18) },
    ]
}

/// Two rounds of a row's messages.
fn mailed() -> Vec<Event> {
    vec![
        Event::DeliverIntent {
            key: KEY.into(),
            round: 0,
            message_id: "<lb.67a4b309dca746ba27f72ccced22d67a.0@example.co.th>".into(),
            at: at(19),
        },
        Event::DeliverCommit { key: KEY.into(), round: 0, at: at(20) },
        Event::DeliverDeferred {
            key: KEY.into(),
            round: 0,
            code: 451,
            reply: "4.3.0 try again later".into(),
            at: at(21),
        },
        Event::Delivered { key: KEY.into(), round: 0, reply: "250 2.0.0 OK: queued as Q000001".into(), at: at(22) },
        Event::DeliverIntent {
            key: KEY.into(),
            round: 1,
            message_id: "<lb.67a4b309dca746ba27f72ccced22d67a.1@example.co.th>".into(),
            at: at(23),
        },
        Event::DeliverFailed {
            key: KEY.into(),
            round: 1,
            code: 550,
            reply: "5.1.1 mailbox unavailable".into(),
            at: at(24),
        },
    ]
}

/// A version 1 line: the event's JSON alone.
fn version_1_line(event: &Event) -> Vec<u8> {
    let mut line = serde_json::to_vec(event).unwrap();
    line.push(b'\n');
    line
}

fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|&b| b == b'\n').collect()
}

/// The event of a line of either version (a version 2 line without its checksum field).
fn parse(line: &[u8]) -> Event {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let json = match super::check_sum(line).unwrap() {
        Some(start) => [b"{".as_slice(), &line[start..]].concat(),
        None => line.to_vec(),
    };
    serde_json::from_slice(&json).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)))
}

#[test]
fn both_format_versions_are_read_and_written_byte_for_byte() {
    let written: [(u32, Vec<u8>); 2] = [
        (1, every_event(1).iter().flat_map(version_1_line).collect()),
        (2, every_event(2).iter().flat_map(|e| encode(e).unwrap()).collect()),
    ];
    for (version, bytes) in &written {
        let path = fixture(&format!("v{version}.jsonl"));
        if std::env::var_os("LINKBATCH_BLESS").is_some() {
            std::fs::write(&path, bytes).unwrap();
        }
        let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Every line reads, and writes back as it was.
        for line in lines(&stored) {
            let event = parse(line);
            let again = if *version == 1 { version_1_line(&event) } else { encode(&event).unwrap() };
            assert_eq!(String::from_utf8_lossy(&again), String::from_utf8_lossy(line));
        }
        assert_eq!(String::from_utf8_lossy(&stored), String::from_utf8_lossy(bytes), "v{version}.jsonl");
        assert_eq!(lines(&stored).len(), every_event(*version).len());
    }
}

#[test]
fn both_format_versions_give_the_same_index() {
    use crate::digest::Digest;
    use crate::terms::{AnswerTo, Unread};
    let mut seen = Vec::new();
    for version in [1, 2] {
        let path = fixture(&format!("v{version}.jsonl"));
        let (header, index, report) = super::Ledger::inspect(&path).unwrap().unwrap();
        assert_eq!(header.version, version);
        assert_eq!(report.torn_tail, None);
        let key = Digest::of(b"SUB-1002:2026-12");
        let state = index.get(&key).unwrap();
        let link = state.link.unwrap();
        let facts = (
            index.lines,
            index.link_id(&link).to_owned(),
            index.payment_uri(&link),
            state.payment().map(|(p, _)| p.paid_amount),
            index.deliveries.of(&key).len(),
            index.learned.clone(),
            index.get(&Digest::of(b"U-1")).and_then(|s| s.link).map(|l| index.link_id(&l).to_owned()),
            index.get(&Digest::of(b"A-1")).and_then(|s| s.link).is_none(),
            [&b"R-1"[..], b"R-2"].map(|k| index.get(&Digest::of(k)).and_then(|s| s.unsettled().cloned())),
        );
        seen.push(facts);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[1].0, 29);
    assert_eq!(seen[1].1, "link_test_60avk3o7u16dfvc881y");
    assert_eq!(seen[1].3, Some(99000));
    assert_eq!(seen[1].4, 2, "rounds 0 and 1");
    assert!(seen[1].7, "the adopted link was deleted");
    let old = Unread {
        answer_to: AnswerTo::Recover,
        status: 0,
        missing: "2 links that could each be this row's".into(),
        candidates: None,
    };
    let unmatched = Unread { answer_to: AnswerTo::Recover, status: 0, missing: String::new(), candidates: Some(3) };
    // `decide::report`'s tests hold that a user reads the same words of both.
    assert_eq!(seen[1].8, [Some(old), Some(unmatched)]);
}
