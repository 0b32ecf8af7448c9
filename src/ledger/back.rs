//! Events read back from the ledger file at the byte offsets the index keeps: the request a link was made
//! with (to say what changed in a conflict, or to reconcile an open request), and the answers kept for
//! rows waiting to be settled. The index never touches a file; a [`ReadBack`] opens the ledger once, on
//! first need, however many rows ask.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use std::collections::{HashMap, HashSet};

use super::{Event, Index, KeyState};
use crate::digest::Digest;
use crate::request::LinkRequest;
use crate::row_key::RowKey;

/// The ledger file, opened for reading on first need.
#[derive(Debug)]
pub struct ReadBack {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl ReadBack {
    /// Reads back from the ledger at `path`; nothing is opened yet.
    pub fn new(path: &Path) -> ReadBack {
        ReadBack { path: path.to_owned(), file: Mutex::new(None) }
    }

    fn event_at(&self, offset: u64) -> Result<Event, String> {
        let mut file = self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if file.is_none() {
            *file = Some(File::open(&self.path).map_err(|e| e.to_string())?);
        }
        let Some(file) = file.as_mut() else { return Err("the ledger could not be opened".into()) };
        read_event_at(file, offset)
    }

    /// The request the key's link was made with, read back from its `intent` line.
    pub fn request_of(&self, index: &Index, state: &KeyState) -> Option<LinkRequest> {
        match self.event_at(index.intent_offset(state)?).ok()? {
            Event::Intent { request, .. } => Some(request),
            _ => None,
        }
    }

    /// The keys' texts of the digests in `wanted`, read from the lines that name them (`retire`: links whose
    /// rows left the input, which the index knows by digest alone). One pass over the file.
    pub fn keys_of(&self, wanted: &HashSet<Digest>) -> std::io::Result<HashMap<Digest, RowKey>> {
        #[derive(serde::Deserialize)]
        struct Keyed<'a> {
            #[serde(borrow)]
            key: Option<std::borrow::Cow<'a, str>>,
        }
        let mut found = HashMap::new();
        let mut reader = BufReader::new(File::open(&self.path)?);
        let mut line = Vec::new();
        while found.len() < wanted.len() {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            // A line that does not read (a torn tail) names no key; the ledger was checked when it was read.
            let Ok(Keyed { key: Some(key) }) = serde_json::from_slice::<Keyed<'_>>(&line) else { continue };
            let id = Digest::of(key.as_bytes());
            if wanted.contains(&id) && !found.contains_key(&id) {
                found.insert(id, RowKey::new(key.into_owned()));
            }
        }
        Ok(found)
    }

    /// The answers kept for rows waiting to be settled (`unreadable` events), so that a later linkbatch can
    /// try to read them again. Nearly always none: the file is opened only when there is one.
    pub fn kept_answers(&self, index: &Index) -> Vec<Event> {
        index.kept_offsets().into_iter().filter_map(|offset| self.event_at(offset).ok()).collect()
    }
}

/// After reading the file: the request of every intent still open, for reconciliation. Returns the byte
/// offset of an intent line that cannot be read back.
pub(super) fn load_open_requests(index: &mut Index, file: &mut File) -> Result<(), (u64, String)> {
    for (slot, offset) in index.open_intents() {
        match read_event_at(file, offset) {
            Ok(Event::Intent { request, fingerprint, .. }) => {
                index.set_open_request(slot, request, fingerprint);
            }
            Ok(_) => return Err((offset, "not an intent".into())),
            Err(reason) => return Err((offset, reason)),
        }
    }
    Ok(())
}

/// Reads and parses the event on the line that starts at byte `offset`.
fn read_event_at(file: &mut File, offset: u64) -> Result<Event, String> {
    file.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
    let mut line = Vec::new();
    BufReader::new(file).read_until(b'\n', &mut line).map_err(|e| e.to_string())?;
    serde_json::from_slice(&line).map_err(|e| e.to_string())
}
