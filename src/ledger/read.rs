//! Reading a ledger back: every line checked, the two common ones fast.
//!
//! Resuming a million-row job reads two million lines. `serde_json` through the internally tagged [`Event`]
//! enum (which buffers each line before it knows the variant) takes about a microsecond a line. The two
//! lines a run writes per link, `intent` and `created`, always have one shape: `serde_json`'s compact output,
//! fields in declaration order. A direct scan reads that shape in a fraction of the time. Any line not
//! exactly in that shape goes through `serde_json`, which stays the judge of what is valid: an escape in a
//! string, another event, a hand edit, a damaged byte.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender};

use serde::de::IgnoredAny;

use super::{Event, Header, Index, LedgerError, OpenReport, Time};
use crate::digest::Digest;

/// The two lines a run writes for every link, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
enum Common<'a> {
    /// `request` is still to be checked with [`valid_request`].
    Intent {
        key: &'a str,
        at: Time,
        request: &'a str,
    },
    Link {
        key: &'a str,
        link_id: &'a str,
        payment_uri: &'a str,
        fingerprint: &'a str,
        at: Time,
    },
}

/// `line` (without its newline) if it is exactly an `intent`, `created` or `adopted` line as `serde_json`
/// writes it; `None` sends it to `serde_json`.
///
/// `start` is where the event's fields begin: after the checksum (`{"sum":"…",`), or after the `{` of a line
/// without one.
fn common(line: &[u8], start: usize) -> Option<Common<'_>> {
    // One check of the whole line: every string found in it is then valid UTF-8 (its ends are ASCII quotes).
    let line = std::str::from_utf8(line).ok()?;
    let mut scan = Scan { line, at: start };
    if scan.literal(br#""type":"intent","key":"#) {
        let key = scan.string()?;
        scan.field(b"fingerprint")?;
        scan.string()?;
        scan.field(b"at")?;
        // A time that does not read goes to `serde_json`, which names the line.
        let at = Time::parse(scan.string()?)?;
        scan.field(b"request")?;
        let request = scan.line.get(scan.at..)?.strip_suffix('}')?;
        if !request.starts_with('{') {
            return None;
        }
        return Some(Common::Intent { key, at, request });
    }
    if !(scan.literal(br#""type":"created","key":"#) || scan.literal(br#""type":"adopted","key":"#)) {
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
    // Read as `serde_json` reads it, so a time that does not read stops the file on either path.
    let at = Time::parse(scan.string()?)?;
    (scan.literal(b"}") && scan.at == line.len()).then_some(Common::Link { key, link_id, payment_uri, fingerprint, at })
}

/// The request is read back only when needed, but must be well-formed JSON all the same. Checked apart from
/// [`common`], on the thread that applies lines, which has time to spare while the other parses.
fn valid_request(request: &str) -> bool {
    plain_request(request) || serde_json::from_str::<IgnoredAny>(request).is_ok()
}

/// Whether `request` has exactly the shape linkbatch writes (fields in order, numbers as integers, strings with
/// no escapes): JSON with no parser's look at it. Any other text goes to `serde_json`.
fn plain_request(request: &str) -> bool {
    let mut scan = Scan { line: request, at: 0 };
    let shape = if scan.literal(br#"{"amount":"#) {
        scan.integer()
            && scan.text(b"currency")
            && scan.text(b"title")
            && scan.text(b"description")
            && scan.field(b"multiple").is_some()
            && scan.boolean()
    } else if scan.literal(br#"{"template_id":"#) {
        scan.integer()
            && scan.field(b"team_id").is_some()
            && scan.integer()
            && scan.text(b"name")
            && scan.field(b"amount").is_some()
            && scan.integer()
            && (scan.text(b"currency") || !scan.peek_field(b"currency"))
            && scan.field(b"multiple_usage").is_some()
            && scan.boolean()
            && (scan.text(b"custom_webhook") || !scan.peek_field(b"custom_webhook"))
    } else {
        false
    };
    shape && scan.literal(b"}") && scan.at == request.len()
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

    /// Whether `,"name":` comes next (nothing is consumed).
    fn peek_field(&self, name: &[u8]) -> bool {
        Scan { line: self.line, at: self.at }.field(name).is_some()
    }

    /// `,"name":` and a plain string; nothing is consumed when the field is not next.
    fn text(&mut self, name: &[u8]) -> bool {
        let at = self.at;
        let found = self.field(name).is_some() && self.string().is_some();
        if !found {
            self.at = at;
        }
        found
    }

    /// A JSON integer as itoa writes it: `0`, or digits not starting with `0`.
    fn integer(&mut self) -> bool {
        let rest = &self.line.as_bytes()[self.at.min(self.line.len())..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let found = digits == 1 || (digits > 1 && rest[0] != b'0');
        if found {
            self.at += digits;
        }
        found
    }

    fn boolean(&mut self) -> bool {
        self.literal(b"true") || self.literal(b"false")
    }

    /// A JSON string with no escapes and no control characters (anything else: `serde_json`'s business).
    fn string(&mut self) -> Option<&'a str> {
        let start = self.at + 1;
        let rest = self.line.as_bytes().get(self.at..)?.strip_prefix(b"\"")?;
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[end] != b'"' {
            return None;
        }
        // Folded without a short cut (`|`, not `||`), so the compiler checks many bytes at once: `clippy --fix`
        // once made it `||`, which doubled this function's instructions on a resume (callgrind).
        #[allow(clippy::unnecessary_fold, clippy::needless_bitwise_bool)]
        if rest[..end].iter().fold(false, |control, &b| control | (b < 0x20)) {
            return None;
        }
        self.at = start + end + 1;
        self.line.get(start..start + end)
    }
}

/// Reads every line, changing nothing; reports a torn last line (`Opened::proceed` cuts it once a run goes
/// ahead); refuses a corrupt line anywhere else.
///
/// Two threads share the work: one reads the file and parses its lines, this one checks intents' requests and
/// applies the lines to the index (a million keys: a cache miss each). Neither waits for the other but at the
/// ends. The first corrupt line, in file order, is the one reported.
pub(super) fn read(path: &Path, file: &mut File) -> Result<(Index, OpenReport, Option<Header>), LedgerError> {
    let io = |source| LedgerError::Io { path: path.to_owned(), source };
    let corrupt = |line, reason| LedgerError::Corrupt { path: path.to_owned(), line, reason };
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut index = Index::default();
    index.path = Some(path.to_owned());
    // A finished run writes about 400 bytes per key (an intent and a created line).
    let size = file.metadata().map_err(io)?.len();
    index.reserve(usize::try_from(size / 400).unwrap_or(0));
    let parsed = std::thread::scope(|scope| {
        // Two batches queued at most: memory stays at a few chunks whatever the file's size.
        let (batches, arrived) = std::sync::mpsc::sync_channel::<Batch>(2);
        let (give_back, empty) = std::sync::mpsc::channel::<Vec<u8>>();
        let parser = std::thread::Builder::new()
            .name("ledger-reader".into())
            .spawn_scoped(scope, || parse(file, batches, empty))
            .map_err(Stop::Io)?;
        let mut failed = None;
        'batches: for batch in arrived {
            for found in batch.found {
                match found {
                    Found::Intent { key, at, offset, request, whole, line } => {
                        if valid_request(text_of(&batch.text, request)) {
                            index.on_intent(key, at, offset);
                            continue;
                        }
                        // Off the fast path after all: serde_json judges the line.
                        match serde_json::from_slice::<Event>(&batch.text[whole]) {
                            Ok(event) => index.apply(event, line, offset),
                            Err(e) => {
                                failed = Some(Stop::Corrupt(line, e.to_string()));
                                // Dropping the receiver stops the parser at its next batch.
                                break 'batches;
                            }
                        }
                    }
                    Found::Link { key, link_id, payment_uri, fingerprint, at, line } => {
                        let (link_id, payment_uri) = (text_of(&batch.text, link_id), text_of(&batch.text, payment_uri));
                        index.on_link(key, link_id, payment_uri, fingerprint, at, line);
                    }
                    Found::Event { event, line, offset } => index.apply(*event, line, offset),
                }
            }
            index.lines = batch.lines;
            let _ = give_back.send(batch.text);
        }
        let parsed =
            parser.join().unwrap_or_else(|_| Err(Stop::Io(std::io::Error::other("the ledger reader panicked"))));
        match failed {
            Some(stop) => Err(stop),
            None => parsed,
        }
    });
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(Stop::Io(e)) => return Err(io(e)),
        Err(Stop::Corrupt(line, reason)) => return Err(corrupt(line, reason)),
    };
    let mut report = OpenReport::default();
    if parsed.torn > 0 {
        report.torn_tail = Some(parsed.torn);
        report.cut_at = Some(parsed.end);
    }
    if let Err((offset, reason)) = super::back::load_open_requests(&mut index, file) {
        return Err(corrupt(line_at(file, offset).map_err(io)?, reason));
    }
    Ok((index, report, parsed.header))
}

/// Complete lines of the ledger and what the parser found on them.
struct Batch {
    text: Vec<u8>,
    found: Vec<Found>,
    /// Lines in the file up to the end of this batch.
    lines: u64,
}

/// One line, parsed.
enum Found {
    /// `request` and the `whole` line are spans of the batch's text.
    Intent {
        key: Digest,
        at: Time,
        offset: u64,
        request: Range<usize>,
        whole: Range<usize>,
        line: u64,
    },
    /// `link_id` and `payment_uri` are spans of the batch's text.
    Link {
        key: Digest,
        link_id: Range<usize>,
        payment_uri: Range<usize>,
        fingerprint: Digest,
        at: Time,
        line: u64,
    },
    Event {
        event: Box<Event>,
        line: u64,
        offset: u64,
    },
}

/// Why the parser stopped early.
enum Stop {
    Io(std::io::Error),
    Corrupt(u64, String),
}

/// What the parser saw of the whole file.
struct Parsed {
    header: Option<Header>,
    /// Bytes in complete lines.
    end: u64,
    /// Bytes after the last newline (a torn line).
    torn: usize,
}

/// Bytes read at a time.
const CHUNK: usize = 1 << 22;

/// Reads the file in chunks of whole lines, parses each line and sends the chunks on.
fn parse(file: &mut File, batches: SyncSender<Batch>, empty: Receiver<Vec<u8>>) -> Result<Parsed, Stop> {
    let (mut header, mut line, mut base) = (None, 0u64, 0u64);
    let mut carry = Vec::new();
    // The last intent's key and digest: its `created` line mostly follows, and need not hash the key again.
    let (mut last_key, mut last_digest) = (Vec::new(), Digest::of(b""));
    let mut digest = |key: &str| {
        if key.as_bytes() != last_key {
            last_key.clear();
            last_key.extend_from_slice(key.as_bytes());
            last_digest = Digest::of(key.as_bytes());
        }
        last_digest
    };
    loop {
        let mut text = empty.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        text.clear();
        text.append(&mut carry);
        let end_of_file = loop {
            if text.len() == text.capacity() {
                // A line longer than the buffer: room for more of it.
                text.reserve(text.capacity().max(CHUNK));
            }
            let room = (text.capacity() - text.len()) as u64;
            let before = text.len();
            let read = file.by_ref().take(room).read_to_end(&mut text).map_err(Stop::Io)? as u64;
            if read < room {
                break true;
            }
            if memchr::memchr(b'\n', &text[before..]).is_some() {
                break false;
            }
        };
        let complete = memchr::memrchr(b'\n', &text).map_or(0, |i| i + 1);
        carry.extend_from_slice(&text[complete..]);
        text.truncate(complete);
        let mut found = Vec::with_capacity(complete / 200);
        let mut start = 0;
        for newline in memchr::memchr_iter(b'\n', &text) {
            let bytes = &text[start..newline];
            let offset = base + start as u64;
            start = newline + 1;
            line += 1;
            let fields = fields_start(bytes, header.as_ref(), line)?;
            found.push(match common(bytes, fields).filter(|_| line > 1 && bytes.first() == Some(&b'{')) {
                Some(Common::Intent { key, at, request }) => {
                    let whole = start - bytes.len() - 1..start - 1;
                    Found::Intent { key: digest(key), at, offset, request: span(&text, request), whole, line }
                }
                Some(Common::Link { key, link_id, payment_uri, fingerprint, at }) => Found::Link {
                    key: digest(key),
                    link_id: span(&text, link_id),
                    payment_uri: span(&text, payment_uri),
                    fingerprint: Digest::from_text(fingerprint),
                    at,
                    line,
                },
                None => {
                    let event =
                        serde_json::from_slice::<Event>(bytes).map_err(|e| Stop::Corrupt(line, e.to_string()))?;
                    if line == 1 {
                        let Event::Header(found) = &event else {
                            return Err(Stop::Corrupt(line, "the first line is not a linkbatch ledger header".into()));
                        };
                        header = Some(found.clone());
                    }
                    Found::Event { event: Box::new(event), line, offset }
                }
            });
        }
        base += complete as u64;
        if batches.send(Batch { text, found, lines: line }).is_err() || end_of_file {
            return Ok(Parsed { header, end: base, torn: carry.len() });
        }
    }
}

/// Where a complete line's event fields start, its checksum checked. A line with a wrong checksum is damage,
/// never a torn write (that has no newline); one without a checksum is only right in a version 1 ledger.
fn fields_start(bytes: &[u8], header: Option<&Header>, line: u64) -> Result<usize, Stop> {
    match super::check_sum(bytes) {
        Ok(Some(fields)) => Ok(fields),
        Ok(None) if header.is_none_or(|h| h.version < 2) => Ok(1),
        Ok(None) => Err(Stop::Corrupt(line, "it has no checksum".into())),
        Err(reason) => Err(Stop::Corrupt(line, reason)),
    }
}

/// The text at `span` of a batch: cut by the parser at ASCII quotes or braces from a line it checked as UTF-8
/// whole, so it is UTF-8 too.
fn text_of(text: &[u8], span: Range<usize>) -> &str {
    std::str::from_utf8(&text[span]).unwrap_or_default()
}

/// Where `inner`, a slice of `outer`, sits in it.
fn span(outer: &[u8], inner: &str) -> Range<usize> {
    // Address arithmetic only: `inner` was cut from `outer` by the parser.
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    start..start + inner.len()
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
    use crate::digest::Digest;
    use crate::ledger::Time;
    use crate::request::LinkRequest;
    use crate::row_key::RowKey;

    /// How [`Digest::of`]`(b"f")` is written.
    const F: &str = "252f10c83610ebca1a059c0bae8255eb";

    fn lines() -> Vec<(Event, Option<Common<'static>>)> {
        let request = crate::ledger::tests::request();
        let at = Time::now();
        let intent = |key: &str| Event::Intent {
            key: key.into(),
            fingerprint: request.fingerprint(),
            at,
            request: request.clone(),
        };
        let created = |key: &str| Event::Created {
            key: key.into(),
            link_id: "link_1".into(),
            payment_uri: "https://pay/l/link_1".into(),
            fingerprint: Digest::of(b"f"),
            at,
        };
        vec![
            (
                intent("a"),
                Some(Common::Intent {
                    key: "a",
                    at,
                    request: r#"{"amount":100,"currency":"thb","title":"t","description":"d","multiple":false}"#,
                }),
            ),
            (
                created("b"),
                Some(Common::Link {
                    key: "b",
                    link_id: "link_1",
                    payment_uri: "https://pay/l/link_1",
                    fingerprint: F,
                    at,
                }),
            ),
            // Escapes and other events are serde_json's.
            (intent("quote\"d"), None),
            (created("tab\there"), None),
            (Event::Run { at, version: "1".into() }, None),
        ]
    }

    /// The fast path whole: the line's shape, then its request.
    fn fast(line: &[u8]) -> Option<Common<'_>> {
        let start = crate::ledger::check_sum(line).ok()?.unwrap_or(1);
        common(line, start).filter(|found| match found {
            Common::Intent { request, .. } => valid_request(request),
            Common::Link { .. } => true,
        })
    }

    #[test]
    fn the_fast_path_reads_what_serde_json_writes_and_nothing_else() {
        for (event, expected) in lines() {
            let text = serde_json::to_string(&event).unwrap();
            assert_eq!(fast(text.as_bytes()), expected, "{text}");
            // The same line as a ledger writes it, with its checksum first.
            let line = crate::ledger::encode(&event).unwrap();
            assert_eq!(fast(line.strip_suffix(b"\n").unwrap()), expected, "{}", String::from_utf8_lossy(&line));
        }
        // Anything off the exact shape falls back, so serde_json decides.
        let created = r#"{"type":"created","key":"b","link_id":"l","payment_uri":"u","fingerprint":"f","at":"2026-12-02T10:00:00.000Z"}"#;
        assert!(fast(created.as_bytes()).is_some());
        for damaged in [
            created.replace("2026-12-02T10:00:00.000Z", "x"),
            created.replace('}', "} "),
            created.replace('}', r#","extra":1}"#),
            created.replace(r#""u""#, r"7"),
            created.replace("\"l\"", "\"l"),
            r#"{"type":"intent","key":"a","fingerprint":"f","at":"x","request":{"amount":}}"#.into(),
            r#"{"type":"intent","key":"a","fingerprint":"f","at":"x","request":{}"#.into(),
            r#"{"type":"intent","key":"a","fingerprint":"f","at":"x","request":5}"#.into(),
        ] {
            assert_eq!(fast(damaged.as_bytes()), None, "{damaged}");
        }
    }

    #[test]
    fn plain_requests_are_json_and_the_rest_is_left_to_serde_json() {
        use crate::request::{ClassicRequest, PlusRequest};
        let mut requests = Vec::new();
        for text in ["t", "", "quote\"d", "tab\there", "ünï €"] {
            requests.push(LinkRequest::Classic(ClassicRequest {
                amount: 0,
                currency: "thb".into(),
                title: text.into(),
                description: "d".into(),
                multiple: true,
                metadata: std::collections::BTreeMap::new(),
            }));
            for (currency, custom_webhook) in
                [(None, None), (Some("usd".to_owned()), Some(format!("https://h/{text}")))]
            {
                requests.push(LinkRequest::Plus(PlusRequest {
                    template_id: 123,
                    team_id: 456,
                    name: text.into(),
                    amount: 10_000,
                    currency,
                    multiple_usage: false,
                    custom_webhook,
                }));
            }
        }
        for request in &requests {
            let text = serde_json::to_string(request).unwrap();
            let escaped = text.contains('\\');
            assert_eq!(plain_request(&text), !escaped, "{text}");
            assert!(valid_request(&text), "{text}");
            // Damaged anywhere, it is neither plain nor valid.
            let chars: Vec<char> = text.chars().collect();
            for cut in [1, chars.len() / 2, chars.len() - 1] {
                let damaged: String = chars[..cut].iter().chain(&chars[cut + 1..]).collect();
                if serde_json::from_str::<IgnoredAny>(&damaged).is_err() {
                    assert!(!plain_request(&damaged) && !valid_request(&damaged), "{damaged}");
                }
            }
        }
        for odd in [
            r#"{"amount":012,"currency":"thb","title":"t","description":"d","multiple":true}"#,
            r#"{"amount":1.5,"currency":"thb","title":"t","description":"d","multiple":true}"#,
        ] {
            assert!(!plain_request(odd), "{odd}");
        }
        // Valid JSON of another shape is still valid: serde_json says so.
        assert!(valid_request(r#"{"amount": 1, "extra": [true, null]}"#));
    }

    type ReadBack = Result<(Index, OpenReport, Option<Header>), LedgerError>;

    /// A ledger of `keys` intent and created lines, then `tail`, read with `read`.
    fn read_back(keys: usize, tail: &str) -> (ReadBack, u64, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let request = crate::ledger::tests::request();
        // Written by hand without checksums, as a version 1 ledger is.
        let header = Header { version: 1, ..crate::ledger::tests::header() };
        let mut text = serde_json::to_string(&Event::Header(header)).unwrap() + "\n";
        for i in 0..keys {
            let key = RowKey::from(format!("key-{i}"));
            let fingerprint = request.fingerprint();
            let intent = Event::Intent { key: key.clone(), fingerprint, at: Time::now(), request: request.clone() };
            let link_id = format!("link_{i}");
            let payment_uri = format!("https://pay/l/{link_id}");
            let created = Event::Created { key, link_id, payment_uri, fingerprint, at: Time::now() };
            for event in [intent, created] {
                text += &serde_json::to_string(&event).unwrap();
                text.push('\n');
            }
        }
        text += tail;
        std::fs::write(&path, &text).unwrap();
        let mut file = File::options().read(true).write(true).open(&path).unwrap();
        let result = read(&path, &mut file);
        // What a run that goes ahead leaves: the torn line cut.
        if result.is_ok() {
            let (opened, _, _) = crate::ledger::Ledger::read_locked(&path, None).unwrap();
            drop(opened.proceed().unwrap());
        }
        let size = std::fs::metadata(&path).unwrap().len();
        (result, size, dir)
    }

    #[test]
    fn reads_across_chunks_and_past_a_line_longer_than_one() {
        // 12,000 keys fill more than one chunk; a `run` line bigger than a chunk makes the buffer grow.
        let keys = 12_000;
        let long = serde_json::to_string(&Event::Run { at: Time::now(), version: "v".repeat(CHUNK + 10) }).unwrap();
        let torn = r#"{"type":"intent","key":"cut"#;
        let (result, size, _dir) = read_back(keys, &format!("{long}\n{torn}"));
        let (index, report, header) = result.unwrap();
        assert!(header.is_some());
        assert_eq!(index.len(), keys);
        assert_eq!(index.lines, 2 + 2 * keys as u64);
        assert_eq!(index.last_run, index.lines);
        assert_eq!(report.torn_tail, Some(torn.len()));
        for i in [0, keys / 2, keys - 1] {
            let state = index.get(&Digest::of(format!("key-{i}").as_bytes())).unwrap();
            let link = state.link.unwrap();
            assert_eq!(index.link_id(&link), format!("link_{i}"));
            assert_eq!(index.payment_uri(&link), format!("https://pay/l/link_{i}"));
            assert_eq!(link.line(), 3 + 2 * i as u64);
            let back = crate::ledger::ReadBack::new(index.path.as_ref().unwrap());
            assert_eq!(back.request_of(&index, state), Some(crate::ledger::tests::request()));
        }
        // The torn line is cut from the file.
        let (_, whole, _) = read_back(keys, &format!("{long}\n"));
        assert_eq!(size, whole);
    }

    #[test]
    fn a_corrupt_line_in_a_later_chunk_is_named_by_its_line() {
        let keys = 10_000;
        // Broken anywhere, or only in an intent's request (checked on the other thread), it is the same.
        let bad_request = r#"{"type":"intent","key":"z","fingerprint":"f","at":"x","request":{"amount":}}"#;
        for bad in ["{not json", bad_request] {
            let (result, _, _) = read_back(keys, &format!("{bad}\n"));
            match result {
                Err(LedgerError::Corrupt { line, .. }) => assert_eq!(line, 2 + 2 * keys as u64),
                other => panic!("expected a corrupt line, got {:?}", other.map(|_| ())),
            }
        }
    }
}
