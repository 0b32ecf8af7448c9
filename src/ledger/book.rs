//! The ledger and its index as one: an event recorded is on disk (fsynced) and then in the index, so the
//! index holds what the file holds by construction, not by callers pairing two calls. Every writer of a
//! ledger goes through [`Book::record`].

use std::sync::{Mutex, MutexGuard};

use super::{Event, Index, Ledger, LedgerError, ReadBack};

/// A locked, open ledger and the index of everything in it.
#[derive(Debug)]
pub struct Book {
    ledger: Ledger,
    index: Mutex<Index>,
    back: ReadBack,
}

impl Book {
    /// The ledger, with the index read from it (and any events [`Book::write_applied`] will write).
    pub fn new(ledger: Ledger, index: Index) -> Book {
        let back = ReadBack::new(ledger.path());
        Book { ledger, index: Mutex::new(index), back }
    }

    /// Whether the ledger's path still holds the file this book writes ([`Ledger::check_in_place`]).
    pub fn check_in_place(&self) -> Result<(), LedgerError> {
        self.ledger.check_in_place()
    }

    /// Events read back from the file at the index's offsets.
    pub fn read_back(&self) -> &ReadBack {
        &self.back
    }

    /// Writes `event` and, once it is on disk, applies it to the index.
    pub async fn record(&self, event: Event) -> Result<(), LedgerError> {
        let offset = self.ledger.append(&event).await?;
        self.index().record(event, offset);
        Ok(())
    }

    /// Writes events the index already applied while the ledger could not be written yet (before a run went
    /// ahead, nothing may change a file): answers kept earlier and readable now.
    pub async fn write_applied(&self, events: &[Event]) -> Result<(), LedgerError> {
        for event in events {
            self.ledger.append(event).await?;
        }
        Ok(())
    }

    /// The index. Updates are single inserts; a panic elsewhere cannot leave it half-written.
    pub fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
