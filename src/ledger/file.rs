//! The ledger file itself: whether a file is a ledger, its header, a new one made, the lock that keeps a
//! second run out, and a header checked against the run's. Reads only the first line; writes nothing but a
//! new, empty file.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use super::{Event, Header, LedgerError};

/// Whether the file is empty, starts with a ledger header line, or holds only the torn start of one (a crash
/// while the header was written). Leaves the file at its start.
pub(super) fn starts_as_ledger(file: &mut File) -> std::io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    const HEADERS: [&str; 2] = [r#"{"sum":""#, r#"{"type":"header""#];
    file.seek(SeekFrom::Start(0))?;
    let first = first_line(&mut *file)?;
    file.seek(SeekFrom::Start(0))?;
    if let Some(line) = first.strip_suffix(b"\n") {
        return Ok(header_of(line).is_some());
    }
    let text = String::from_utf8_lossy(&first);
    Ok(HEADERS.iter().any(|h| text.starts_with(h) || h.starts_with(text.as_ref())))
}

/// The first line of a ledger, its newline kept (none: the line is torn), at most 64 KiB of it.
fn first_line(file: impl std::io::Read) -> std::io::Result<Vec<u8>> {
    use std::io::{BufRead, BufReader};
    let mut line = Vec::new();
    BufReader::new(file.take(64 * 1024)).read_until(b'\n', &mut line)?;
    Ok(line)
}

/// The header a line holds, if it is a header line.
pub(super) fn header_of(line: &[u8]) -> Option<Header> {
    match serde_json::from_slice::<Event>(line) {
        Ok(Event::Header(header)) => Some(header),
        _ => None,
    }
}

/// The header of the ledger at `path`, from its first line alone (`None`: no ledger, or no header).
pub fn peek_header(path: &Path) -> Option<Header> {
    header_of(&first_line(File::open(path).ok()?).ok()?)
}

/// A new ledger, locked, and its folder. Empty, or another run made it since it was found missing.
pub(super) fn create(path: &Path) -> Result<File, LedgerError> {
    let io = |source| LedgerError::Io { path: path.to_owned(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file = OpenOptions::new().read(true).append(true).create(true).open(path).map_err(io)?;
    lock(path, &file)?;
    // Made by another run between the read and now: its lines were not read, so stop.
    if file.metadata().map_err(io)?.len() > 0 {
        return Err(LedgerError::Locked(path.to_owned()));
    }
    Ok(file)
}

/// Takes the ledger's lock: one run at a time per ledger.
pub(super) fn lock(path: &Path, file: &File) -> Result<(), LedgerError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(LedgerError::Locked(path.to_owned())),
        Err(TryLockError::Error(source)) => Err(LedgerError::Io { path: path.to_owned(), source }),
    }
}

/// Refuses a ledger made for another API, mode, key or base URL.
pub(super) fn check_header(path: &Path, found: &Header, wanted: &Header) -> Result<(), LedgerError> {
    let mismatch = |what: String, now: String| Err(LedgerError::Mismatch { path: path.to_owned(), what, now });
    if found.api != wanted.api {
        return mismatch(format!("the {} API", found.api.name()), format!("the {} API", wanted.api.name()));
    }
    if found.mode != wanted.mode {
        let mode = |m: Option<crate::terms::Mode>| m.map_or("unknown", crate::terms::Mode::name);
        return mismatch(format!("a {}-mode key", mode(found.mode)), format!("a {}-mode key", mode(wanted.mode)));
    }
    if found.key_hash != wanted.key_hash {
        return mismatch("a different secret key (another account)".into(), "this key".into());
    }
    if found.base_url != wanted.base_url {
        return mismatch(format!("base URL {}", found.base_url), format!("base URL {}", wanted.base_url));
    }
    Ok(())
}
