//! The ledger's writer: a thread of its own commits whatever events are waiting with one fsync (group
//! commit), and each append returns once its line is on disk, with the byte offset it starts at. The lock
//! is held as long as the file is open, that is as long as the [`Ledger`].

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::{Event, LedgerError, encode};

type Job = (Vec<u8>, oneshot::Sender<std::io::Result<u64>>);

/// An open, locked ledger.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    queue: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Ledger {
    /// Starts the writer for `file` (locked, `end` bytes long) at `path`.
    pub(super) fn start(path: PathBuf, file: File, end: u64) -> std::io::Result<Ledger> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let writer =
            std::thread::Builder::new().name("ledger-writer".into()).spawn(move || write_loop(file, end, jobs))?;
        Ok(Ledger { path, queue: Some(queue), writer: Some(writer) })
    }

    /// The ledger's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an event and returns once it is on disk, with the byte offset of its line. Only a [`Book`]
    /// appends (so that its index follows), and the tests.
    pub(crate) async fn append(&self, event: &Event) -> Result<u64, LedgerError> {
        let io = |source| LedgerError::Io { path: self.path.clone(), source };
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
fn write_loop(mut file: File, mut end: u64, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        batch.extend(jobs.try_iter());
        let mut bytes = Vec::with_capacity(batch.iter().map(|(b, _)| b.len()).sum());
        let mut offsets = Vec::with_capacity(batch.len());
        for (line, _) in &batch {
            offsets.push(end + bytes.len() as u64);
            bytes.extend_from_slice(line);
        }
        let result = file.write_all(&bytes).and_then(|()| file.sync_data());
        end = match &result {
            Ok(()) => end + bytes.len() as u64,
            // Part of the batch may be on disk: the file says where the next line starts.
            Err(_) => file.metadata().map_or(end, |m| m.len()),
        };
        for ((_, done), offset) in batch.into_iter().zip(offsets) {
            let _ = done.send(match &result {
                Ok(()) => Ok(offset),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
}
