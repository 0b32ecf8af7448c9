//! Reading a ledger back: every line checked, the two common ones fast.
//!
//! Resuming a million-row job reads two million lines. serde_json through the internally tagged [`Event`]
//! enum (which buffers each line before it knows the variant) takes about a microsecond a line. The two
//! lines a run writes per link, `intent` and `created`, always have one shape: serde_json's compact output,
//! fields in declaration order. A direct scan reads that shape in a fraction of the time. Any line not
//! exactly in that shape goes through serde_json, which stays the judge of what is valid: an escape in a
//! string, another event, a hand edit, a damaged byte.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::SystemTime;

use serde::de::IgnoredAny;

use super::{Event, Header, Index, LedgerError, OpenReport, parse_time};
use crate::digest::Digest;

/// The two lines a run writes for every link, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
enum Common<'a> {
    Intent { key: &'a str, at: &'a str },
    Link { key: &'a str, link_id: &'a str, payment_uri: &'a str, fingerprint: &'a str },
}

/// `line` (without its newline) if it is exactly an `intent`, `created` or `adopted` line as serde_json
/// writes it; `None` sends it to serde_json.
fn common(line: &[u8]) -> Option<Common<'_>> {
    // One check of the whole line: every string found in it is then valid UTF-8 (its ends are ASCII quotes).
    let line = std::str::from_utf8(line).ok()?;
    let mut scan = Scan { line, at: 0 };
    if scan.literal(br#"{"type":"intent","key":"#) {
        let key = scan.string()?;
        scan.field(b"fingerprint")?;
        scan.string()?;
        scan.field(b"at")?;
        let at = scan.string()?;
        scan.field(b"request")?;
        // The request is read back only when needed; here it must still be well-formed JSON.
        let rest = scan.line.get(scan.at..)?.strip_suffix('}')?;
        if !rest.starts_with('{') {
            return None;
        }
        serde_json::from_str::<IgnoredAny>(rest).ok()?;
        return Some(Common::Intent { key, at });
    }
    if !(scan.literal(br#"{"type":"created","key":"#) || scan.literal(br#"{"type":"adopted","key":"#)) {
        return None;
    }
    let key = scan.string()?;
    scan.field(b"link_id")?;
    let link_id = scan.string()?;
    scan.field(b"payment_uri")?;
    let payment_uri = scan.string()?;
    scan.field(b"fingerprint")?;
    let fingerprint = scan.string()?;
    scan.field(b"at")?;
    scan.string()?;
    (scan.literal(b"}") && scan.at == line.len()).then_some(Common::Link { key, link_id, payment_uri, fingerprint })
}

struct Scan<'a> {
    line: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    fn literal(&mut self, text: &[u8]) -> bool {
        let found = self.line.as_bytes().get(self.at..).is_some_and(|rest| rest.starts_with(text));
        if found {
            self.at += text.len();
        }
        found
    }

    /// `,"name":`
    fn field(&mut self, name: &[u8]) -> Option<()> {
        (self.literal(b",\"") && self.literal(name) && self.literal(b"\":")).then_some(())
    }

    /// A JSON string with no escapes and no control characters (anything else: serde_json's business).
    fn string(&mut self) -> Option<&'a str> {
        let start = self.at + 1;
        let rest = self.line.as_bytes().get(self.at..)?.strip_prefix(b"\"")?;
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[end] != b'"' {
            return None;
        }
        // Folded without a short cut, so the compiler checks many bytes at once.
        if rest[..end].iter().fold(false, |control, &b| control | (b < 0x20)) {
            return None;
        }
        self.at = start + end + 1;
        self.line.get(start..start + end)
    }
}

/// Reads every line; cuts a torn last line (when `repair`); refuses a corrupt line anywhere else.
pub(super) fn read(
    path: &Path,
    file: &mut File,
    repair: bool,
) -> Result<(Index, OpenReport, Option<Header>), LedgerError> {
    let io = |source| LedgerError::Io { path: path.to_owned(), source };
    let corrupt = |line, reason| LedgerError::Corrupt { path: path.to_owned(), line, reason };
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut index = Index::default();
    index.path = Some(path.to_owned());
    // A finished run writes about 400 bytes per key (an intent and a created line).
    let size = file.metadata().map_err(io)?.len();
    index.reserve(usize::try_from(size / 400).unwrap_or(0));
    let mut header = None;
    let mut line: u64 = 0;
    // `buffer[..filled]` holds the file from byte `base`; complete lines before `start` are applied.
    let mut buffer = vec![0u8; 1 << 22];
    let (mut base, mut filled, mut start) = (0u64, 0usize, 0usize);
    loop {
        if filled == buffer.len() {
            if start == 0 {
                buffer.resize(buffer.len() * 2, 0);
            } else {
                buffer.copy_within(start..filled, 0);
                base += start as u64;
                filled -= start;
                start = 0;
            }
        }
        let read = match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        let scanned = filled;
        filled += read;
        for newline in memchr::memchr_iter(b'\n', &buffer[scanned..filled]) {
            let end = scanned + newline;
            let text = &buffer[start..end];
            let offset = base + start as u64;
            start = end + 1;
            line += 1;
            match common(text).filter(|_| line > 1) {
                Some(Common::Intent { key, at }) => {
                    let at = parse_time(at).unwrap_or(SystemTime::UNIX_EPOCH);
                    index.on_intent(Digest::of(key.as_bytes()), at, offset);
                }
                Some(Common::Link { key, link_id, payment_uri, fingerprint }) => {
                    let fingerprint = Digest::from_text(fingerprint);
                    index.on_link(Digest::of(key.as_bytes()), link_id, payment_uri, fingerprint, line);
                }
                None => {
                    let event = serde_json::from_slice::<Event>(text).map_err(|e| corrupt(line, e.to_string()))?;
                    if line == 1 {
                        let Event::Header(found) = &event else {
                            return Err(corrupt(line, "the first line is not a linkbatch ledger header".into()));
                        };
                        header = Some(found.clone());
                    }
                    index.apply(event, line, offset);
                }
            }
            index.lines = line;
        }
    }
    let mut report = OpenReport::default();
    if start < filled {
        // A last line cut short by a crash mid-write was never acknowledged, so its event never
        // happened: an intent's request was not sent, a lost outcome is found again by reconciliation.
        if repair {
            file.set_len(base + start as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        report.torn_tail = Some(filled - start);
    }
    if let Err((offset, reason)) = index.load_open_requests(file) {
        return Err(corrupt(line_at(file, offset).map_err(io)?, reason));
    }
    Ok((index, report, header))
}

/// The 1-based line that starts at byte `offset`.
fn line_at(file: &mut File, offset: u64) -> std::io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut before = Vec::new();
    file.take(offset).read_to_end(&mut before)?;
    Ok(memchr::memchr_iter(b'\n', &before).count() as u64 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::now;

    fn lines() -> Vec<(Event, Option<Common<'static>>)> {
        let request = crate::ledger::tests::request();
        let at: &'static str = Box::leak(now().into_boxed_str());
        let intent = |key: &str| Event::Intent {
            key: key.into(),
            fingerprint: request.fingerprint().to_string(),
            at: at.into(),
            request: request.clone(),
        };
        let created = |key: &str| Event::Created {
            key: key.into(),
            link_id: "link_1".into(),
            payment_uri: "https://pay/l/link_1".into(),
            fingerprint: "f".into(),
            at: at.into(),
        };
        vec![
            (intent("a"), Some(Common::Intent { key: "a", at })),
            (
                created("b"),
                Some(Common::Link {
                    key: "b",
                    link_id: "link_1",
                    payment_uri: "https://pay/l/link_1",
                    fingerprint: "f",
                }),
            ),
            // Escapes and other events are serde_json's.
            (intent("quote\"d"), None),
            (created("tab\there"), None),
            (Event::Run { at: at.into(), version: "1".into() }, None),
        ]
    }

    #[test]
    fn the_fast_path_reads_what_serde_json_writes_and_nothing_else() {
        for (event, expected) in lines() {
            let text = serde_json::to_string(&event).unwrap();
            assert_eq!(common(text.as_bytes()), expected, "{text}");
        }
        // Anything off the exact shape falls back, so serde_json decides.
        let created = r#"{"type":"created","key":"b","link_id":"l","payment_uri":"u","fingerprint":"f","at":"x"}"#;
        assert!(common(created.as_bytes()).is_some());
        for damaged in [
            created.replace("}", "} "),
            created.replace(r#""at":"x""#, r#""at":"x","extra":1"#),
            created.replace(r#""u""#, r#"7"#),
            created.replace("\"l\"", "\"l"),
            r#"{"type":"intent","key":"a","fingerprint":"f","at":"x","request":{"amount":}}"#.into(),
            r#"{"type":"intent","key":"a","fingerprint":"f","at":"x","request":{}"#.into(),
            r#"{"type":"intent","key":"a","fingerprint":"f","at":"x","request":5}"#.into(),
        ] {
            assert_eq!(common(damaged.as_bytes()), None, "{damaged}");
        }
    }
}
