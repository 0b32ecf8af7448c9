//! The ledger: an append-only JSON-lines file that makes link creation (and delivery) exactly-once across
//! crashes. This folder is the only code that writes it, one idea a file: `event` (the schema), `line` (a
//! line and its checksum), `file` (a ledger recognised, made and locked; its header checked), `writer`
//! (group-commit fsync: every event is on disk before its append returns), `read` (the file read into an
//! `index`), `back` (events read back at the index's offsets), `deliveries` (each row's messages) and
//! `book` (the ledger and its index as one: every write goes through [`Book::record`]).
//!
//! This file: opening a ledger without changing it (`read_locked`), then going ahead (`Opened::proceed`:
//! a torn tail cut, a header written), and the errors. The file is locked for the life of a run; a second
//! run on it is refused.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

mod arena;
mod back;
mod book;
mod deliveries;
mod event;
mod file;
mod index;
mod line;
mod read;
mod time;
mod writer;

pub use back::ReadBack;
pub use book::Book;
pub use deliveries::{Deliveries, Reply, Round};
pub use event::{Event, Header};
pub use file::peek_header;
use file::{check_header, create, lock, starts_as_ledger};
use line::check_sum;
pub use line::{VERSION, encode};
pub use time::Time;
pub use writer::Ledger;

pub use index::{Index, KeyState, LearnedRates, LinkRecord};

/// Size and modification time of a file, as an `output` event records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Bytes in the file.
    pub bytes: u64,
    /// Its modification time, nanoseconds since 1970.
    pub modified: u128,
}

/// The stamp of the file at `path`; `None` when there is no file.
pub fn file_stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta.modified().ok()?.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_nanos();
    Some(FileStamp { bytes: meta.len(), modified })
}

/// Why the ledger cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// I/O.
    #[error("ledger {path}: {source}")]
    Io {
        /// Ledger path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line could not be written (a full disk, a quota, an I/O error): the file was cut back to its last
    /// whole line and nothing more is written to it this run.
    #[error(
        "cannot write the ledger {path}: {source}. The run stopped at once and the ledger keeps every line written \
         before; rows not sent stay pending. Free space (or fix the cause), then run again"
    )]
    Write {
        /// Ledger path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The ledger file was removed or replaced while a run held it.
    #[error(
        "the ledger {path} {why} during the run: nothing more was sent, and the output was not written. Put the \
         ledger back at {path} (every event of this run went to the file that was there), then run again"
    )]
    Moved {
        /// Ledger path.
        path: PathBuf,
        /// What happened to it.
        why: &'static str,
    },
    /// The file is not a ledger: it is left as it is, never written over.
    #[error(
        "{0} is not a linkbatch ledger (its first line is no ledger header); it was left untouched: name another --ledger"
    )]
    NotALedger(PathBuf),
    /// Another run holds the lock.
    #[error(
        "ledger {0} is in use by another linkbatch run (it is locked); wait for that run to finish, or stop the job's `linkbatch listen` while this one runs"
    )]
    Locked(PathBuf),
    /// A line other than the last cannot be read: the file is left untouched.
    #[error(
        "ledger {path}: line {line} is corrupt ({reason}); the file was left untouched — restore it or move it aside"
    )]
    Corrupt {
        /// Ledger path.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// Parser message.
        reason: String,
    },
    /// The ledger was made for another API, base URL, mode or key.
    #[error(
        "ledger {path} was made with {what}; this run would use {now}. Use another --ledger (or --output) for this run"
    )]
    Mismatch {
        /// Ledger path.
        path: PathBuf,
        /// What the ledger has.
        what: String,
        /// What this run has.
        now: String,
    },
}

/// What [`Ledger::open`] noticed and the user should hear.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// A torn last line was cut off (its text length).
    pub torn_tail: Option<usize>,
    /// Where the complete lines end, when a torn line follows them.
    cut_at: Option<u64>,
}

/// A ledger locked and read that nothing has changed yet (see [`Ledger::read_locked`]).
#[derive(Debug)]
pub struct Opened {
    path: PathBuf,
    /// `None`: there is no ledger yet.
    file: Option<File>,
    /// A torn last line to cut at this length.
    cut_at: Option<u64>,
    /// The header to write, for a ledger that has none.
    header: Option<Header>,
}

impl Opened {
    /// The run goes ahead: the ledger is made (and locked) if there was none, a torn last line is cut, a
    /// missing header written. Then events can be appended.
    pub fn proceed(self) -> Result<Ledger, LedgerError> {
        let path = self.path;
        let io = |source| LedgerError::Io { path: path.clone(), source };
        let mut file = if let Some(file) = self.file { file } else { create(&path)? };
        if let Some(end) = self.cut_at {
            // A last line cut short by a crash mid-write was never acknowledged, so its event never
            // happened: an intent's request was not sent, a lost outcome is found again by reconciliation.
            file.set_len(end).and_then(|()| file.sync_all()).map_err(io)?;
        }
        if let Some(header) = &self.header {
            let line = encode(&Event::Header(header.clone())).map_err(|e| io(e.into()))?;
            file.write_all(&line).and_then(|()| file.sync_all()).map_err(io)?;
        }
        let end = file.metadata().map_err(io)?.len();
        Ledger::start(path.clone(), file, end).map_err(io)
    }
}

impl Ledger {
    /// Opens (or creates) and locks the ledger, checks its header against `header`, and reads it.
    pub fn open(path: &Path, header: &Header) -> Result<(Ledger, Index, OpenReport), LedgerError> {
        Self::open_as(path, Some(header))
    }

    /// Opens and locks a ledger that exists, whatever its header says (for `settle`, which sends nothing
    /// and so needs no key); `None` when there is no ledger there.
    pub fn reopen(path: &Path) -> Result<Option<Book>, LedgerError> {
        match std::fs::metadata(path) {
            Ok(m) if m.len() > 0 => Self::open_as(path, None).map(|(ledger, index, _)| Some(Book::new(ledger, index))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LedgerError::Io { path: path.to_owned(), source }),
        }
    }

    fn open_as(path: &Path, header: Option<&Header>) -> Result<(Ledger, Index, OpenReport), LedgerError> {
        let (opened, index, report) = Self::read_locked(path, header)?;
        Ok((opened.proceed()?, index, report))
    }

    /// Locks and reads the ledger, changing nothing: a torn last line is not cut yet and a missing header
    /// not written, and a ledger that does not exist is not made. A run that refuses after this leaves the
    /// file as it found it; [`Opened::proceed`] makes those changes once the run goes ahead.
    pub fn read_locked(path: &Path, header: Option<&Header>) -> Result<(Opened, Index, OpenReport), LedgerError> {
        let io = |source| LedgerError::Io { path: path.to_owned(), source };
        let mut file = match OpenOptions::new().read(true).append(true).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && header.is_some() => {
                let opened = Opened { path: path.to_owned(), file: None, cut_at: None, header: header.cloned() };
                let mut index = Index::default();
                index.path = Some(path.to_owned());
                index.lines = 1;
                return Ok((opened, index, OpenReport::default()));
            }
            Err(e) => return Err(io(e)),
        };
        lock(path, &file)?;
        if !starts_as_ledger(&mut file).map_err(io)? {
            return Err(LedgerError::NotALedger(path.to_owned()));
        }
        let (mut index, report, found_header) = read::read(path, &mut file)?;
        let missing = match (&found_header, header) {
            (Some(found), Some(wanted)) => {
                check_header(path, found, wanted)?;
                None
            }
            (Some(_), None) => None,
            (None, Some(wanted)) => Some(wanted.clone()),
            (None, None) => {
                let reason = "no header line".to_owned();
                return Err(LedgerError::Corrupt { path: path.to_owned(), line: 1, reason });
            }
        };
        if missing.is_some() {
            index.lines = 1;
        }
        let opened = Opened { path: path.to_owned(), file: Some(file), cut_at: report.cut_at, header: missing };
        Ok((opened, index, report))
    }

    /// Reads a ledger without locking or changing it (for `validate` and `status`); `None` if there is none.
    pub fn inspect(path: &Path) -> Result<Option<(Header, Index, OpenReport)>, LedgerError> {
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LedgerError::Io { path: path.to_owned(), source });
            }
        };
        if !starts_as_ledger(&mut file).map_err(|source| LedgerError::Io { path: path.to_owned(), source })? {
            return Err(LedgerError::NotALedger(path.to_owned()));
        }
        let (index, report, header) = read::read(path, &mut file)?;
        Ok(header.map(|h| (h, index, report)))
    }
}

#[cfg(test)]
mod agree;
#[cfg(test)]
mod versions;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::request::{ClassicRequest, LinkRequest};

    pub(super) fn header() -> Header {
        Header {
            version: VERSION,
            api: crate::terms::ApiKind::Links,
            base_url: "http://127.0.0.1:1".into(),
            mode: Some(crate::terms::Mode::Test),
            key_hash: "h".into(),
            auth: None,
        }
    }

    /// A small classic request, for ledger tests.
    pub(super) fn request() -> LinkRequest {
        LinkRequest::Classic(ClassicRequest {
            amount: 100,
            currency: "thb".into(),
            title: "t".into(),
            description: "d".into(),
            multiple: false,
            metadata: std::collections::BTreeMap::new(),
        })
    }

    fn intent(key: &str) -> Event {
        let request = request();
        Event::Intent { key: key.into(), fingerprint: request.fingerprint(), at: Time::now(), request }
    }

    #[tokio::test]
    async fn reopens_with_intents_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        {
            let (ledger, _, _) = Ledger::open(&path, &header()).unwrap();
            ledger.append(&intent("a")).await.unwrap();
            ledger.append(&intent("b")).await.unwrap();
            ledger
                .append(&Event::Created {
                    key: "a".into(),
                    link_id: "link_1".into(),
                    payment_uri: "u".into(),
                    fingerprint: Digest::of(b"f"),
                    at: Time::now(),
                })
                .await
                .unwrap();
        }
        let (_ledger, index, _) = Ledger::open(&path, &header()).unwrap();
        let a = index.get(&Digest::of(b"a")).unwrap();
        assert_eq!(index.link_id(&a.link.unwrap()), "link_1");
        assert_eq!(index.payment_uri(&a.link.unwrap()), "u");
        assert!(a.open_since().is_none());
        // An intent left open is read back whole, for reconciliation.
        let b = index.get(&Digest::of(b"b")).unwrap();
        assert!(b.open_since().is_some());
        let Event::Intent { request, .. } = intent("b") else { unreachable!() };
        assert_eq!(b.open_request().map(|(r, _)| r), Some(&request));
        assert!(index.is_claimed("link_1"));
        assert_eq!(index.lines, 4);
    }

    #[test]
    fn second_open_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let _first = Ledger::open(&path, &header()).unwrap();
        assert!(matches!(Ledger::open(&path, &header()), Err(LedgerError::Locked(_))));
    }

    #[test]
    fn torn_tail_is_cut_and_corrupt_middle_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        drop(Ledger::open(&path, &header()).unwrap());
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(r#"{"type":"intent","key":"a","#);
        std::fs::write(&path, &text).unwrap();
        let (_, _, report) = Ledger::open(&path, &header()).unwrap();
        assert!(report.torn_tail.is_some());
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("garbage\n{\"type\":\"failed\",\"key\":\"a\",\"fingerprint\":\"f\",\"code\":\"c\",\"message\":\"m\",\"at\":\"x\"}\n");
        std::fs::write(&path, &text).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(Ledger::open(&path, &header()), Err(LedgerError::Corrupt { line: 2, .. })));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_checksum_tells_damage_from_a_torn_write() {
        let line = encode(&intent("a")).unwrap();
        let body = line.strip_suffix(b"\n").unwrap();
        assert_eq!(check_sum(body), Ok(Some(super::line::SUM_PREFIX)));
        // `jq` reads it, and serde_json reads the event with the sum ignored.
        assert!(matches!(serde_json::from_slice::<Event>(body), Ok(Event::Intent { .. })));
        // (A flip inside `{"sum":"` leaves a line without a checksum: the reader refuses it in a version 2
        // ledger, as the next test shows for the whole file.)
        for at in [10, 20, body.len() / 2, body.len() - 2] {
            let mut flipped = body.to_vec();
            flipped[at] ^= 0x04;
            assert!(check_sum(&flipped).is_err(), "a flip at {at} is seen");
        }
        assert_eq!(check_sum(br#"{"type":"run","at":"x","version":"1"}"#), Ok(None), "version 1 lines have none");
        // Bit 5 of a hex letter changes its case: the same number to `from_str_radix`, damage all the same.
        let with_letter = ["a", "b", "c", "d"]
            .iter()
            .map(|key| encode(&intent(key)).unwrap())
            .find(|line| line[8..16].iter().any(u8::is_ascii_lowercase))
            .expect("one of four sums has a hex letter (each has odds of 1 in 43 to have none)");
        let mut upper = with_letter.strip_suffix(b"\n").unwrap().to_vec();
        upper[8..16].make_ascii_uppercase();
        assert!(check_sum(&upper).is_err(), "an upper-case sum is seen");
    }

    #[test]
    fn a_damaged_line_is_corrupt_even_last_but_a_torn_one_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        {
            let (ledger, _, _) = Ledger::open(&path, &header()).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(ledger.append(&intent("a"))).unwrap();
        }
        let good = std::fs::read(&path).unwrap();
        // The last complete line with one byte changed: damage, not a crash. The file is left as it was.
        let mut damaged = good.clone();
        let at = damaged.len() - 10;
        damaged[at] ^= 0x01;
        std::fs::write(&path, &damaged).unwrap();
        assert!(matches!(Ledger::open(&path, &header()), Err(LedgerError::Corrupt { line: 2, .. })));
        assert_eq!(std::fs::read(&path).unwrap(), damaged);
        // The same line without its newline: a write cut short, dropped.
        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        let (_, index, report) = Ledger::open(&path, &header()).unwrap();
        assert!(report.torn_tail.is_some() && index.is_empty());
    }

    #[test]
    fn refuses_another_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        drop(Ledger::open(&path, &header()).unwrap());
        let live = Header { mode: Some(crate::terms::Mode::Live), ..header() };
        assert!(matches!(Ledger::open(&path, &live), Err(LedgerError::Mismatch { .. })));
    }
}
