//! The ledger's writer: a thread of its own commits whatever events are waiting with one fsync (group
//! commit), and each append returns once its line is on disk, with the byte offset it starts at. The lock
//! is held as long as the file is open, that is as long as the [`Ledger`].

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::{Event, LedgerError, encode};

type Job = (Vec<u8>, oneshot::Sender<std::io::Result<u64>>);

/// An open, locked ledger.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    /// The device and inode of the file locked: a file removed or put in its place under a run is not it.
    identity: Option<(u64, u64)>,
    queue: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Ledger {
    /// Starts the writer for `file` (locked, `end` bytes long) at `path`.
    pub(super) fn start(path: PathBuf, file: File, end: u64) -> std::io::Result<Ledger> {
        let identity = file.metadata().ok().map(|m| (m.dev(), m.ino()));
        let (queue, jobs) = mpsc::channel::<Job>();
        let writer =
            std::thread::Builder::new().name("ledger-writer".into()).spawn(move || write_loop(file, end, jobs))?;
        Ok(Ledger { path, identity, queue: Some(queue), writer: Some(writer) })
    }

    /// The ledger's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file at the ledger's path is still the one this run locked and writes. A ledger
    /// removed (its lines would go on into a file no later run can find) or replaced (another ledger's
    /// lines, or none) under a run is an error naming the path.
    pub fn check_in_place(&self) -> Result<(), LedgerError> {
        let now = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
        let why = match now {
            Ok(now) if Some(now) == self.identity || self.identity.is_none() => return Ok(()),
            Ok(_) => "was replaced by another file",
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "was removed",
            Err(_) => "can no longer be read",
        };
        Err(LedgerError::Moved { path: self.path.clone(), why })
    }

    /// Appends an event and returns once it is on disk, with the byte offset of its line. Only a [`Book`]
    /// appends (so that its index follows), and the tests.
    pub(crate) async fn append(&self, event: &Event) -> Result<u64, LedgerError> {
        let io = |source| LedgerError::Write { path: self.path.clone(), source };
        let line = encode(event).map_err(|e| io(e.into()))?;
        let (done, wait) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or_else(|| io(std::io::Error::other("ledger closed")))?;
        queue.send((line, done)).map_err(|_| io(std::io::Error::other("ledger writer stopped")))?;
        wait.await.map_err(|_| io(std::io::Error::other("ledger writer stopped")))?.map_err(io)
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what it holds, then the file (and its lock) closes.
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Group commit: take every waiting event, write them, one fsync, then acknowledge them all, each with the
/// offset its line starts at (`end`: the file's length).
///
/// A write or sync that fails (a full disk, a quota, an I/O error) leaves the file as it was before the
/// batch, cut back to its last whole line, and no line is written after it: the run is aborted by the first
/// error, and every later append gets the same one. Space that comes back mid-run can then never put a line
/// after a torn one, which the next run would have to refuse as corrupt.
fn write_loop(mut file: File, mut end: u64, jobs: mpsc::Receiver<Job>) {
    let mut failed: Option<std::io::Error> = None;
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        batch.extend(jobs.try_iter());
        let result = match &failed {
            Some(e) => Err(copy(e)),
            None => write_batch(&mut file, end, &batch),
        };
        match &result {
            Ok(_) => end += batch.iter().map(|(b, _)| b.len() as u64).sum::<u64>(),
            Err(e) if failed.is_none() => {
                cut_back(&file, end);
                failed = Some(copy(e));
            }
            Err(_) => {}
        }
        for (i, (_, done)) in batch.into_iter().enumerate() {
            let _ = done.send(match &result {
                Ok(offsets) => Ok(offsets[i]),
                Err(e) => Err(copy(e)),
            });
        }
    }
}

/// Writes one batch at `end` and syncs it; the offset of each line.
fn write_batch(file: &mut File, end: u64, batch: &[Job]) -> std::io::Result<Vec<u64>> {
    let mut bytes = Vec::with_capacity(batch.iter().map(|(b, _)| b.len()).sum());
    let mut offsets = Vec::with_capacity(batch.len());
    for (line, _) in batch {
        offsets.push(end + bytes.len() as u64);
        bytes.extend_from_slice(line);
    }
    file.write_all(&bytes).and_then(|()| file.sync_data()).map(|()| offsets)
}

/// The file cut back to `end`, where the failed batch began: none of its lines was acknowledged, so none
/// of their events happened (an intent's request was not sent; a link's `created` is found again by
/// reconciliation). Should the cut fail too, whatever part of the batch reached the disk is its last line,
/// which the next run cuts as a torn tail.
fn cut_back(file: &File, end: u64) {
    if file.set_len(end).and_then(|()| file.sync_all()).is_err() {
        tracing::debug!("could not cut the ledger back to byte {end} after a failed write");
    }
}

fn copy(e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), e.to_string())
}
