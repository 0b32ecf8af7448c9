//! The output CSV: one row per input row, in input order, with each row's payment URI or why it has none.
//!
//! The column list lives here and nowhere else. The file is written to a temporary name and renamed into
//! place, so a reader never sees half of it; cells a spreadsheet would run as a formula are neutralised.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::terms::{ApiKind, Payment, Status};

/// The fixed columns, in order; the job's extra input columns follow.
pub const COLUMNS: [&str; 10] =
    ["line", "key", "status", "link_id", "payment_uri", "amount", "currency", "title", "error_code", "error_message"];

/// Columns a job with `[deliver]` adds, after the job's extra columns.
pub const DELIVERY_COLUMNS: [&str; 3] = ["delivery", "delivered_at", "delivery_reply"];

/// Columns a job with `[lifecycle]` adds, after delivery's.
pub const LIFECYCLE_COLUMNS: [&str; 2] = ["retired_reason", "retired_at"];

/// The header an output has: the fixed columns, the job's own, then delivery's when the job delivers (and
/// after them a refresh's payment columns).
pub fn header(extra_columns: &[String], delivery: bool, lifecycle: bool) -> Vec<String> {
    let delivery = DELIVERY_COLUMNS.iter().take(if delivery { DELIVERY_COLUMNS.len() } else { 0 });
    let lifecycle = LIFECYCLE_COLUMNS.iter().take(if lifecycle { LIFECYCLE_COLUMNS.len() } else { 0 });
    COLUMNS
        .iter()
        .copied()
        .chain(extra_columns.iter().map(String::as_str))
        .chain(delivery.copied())
        .chain(lifecycle.copied())
        .map(str::to_owned)
        .collect()
}

/// Columns `refresh` adds, per API (`link_status` for Links+: the output already has a `status` column, the
/// row's).
pub fn refresh_columns(api: ApiKind) -> &'static [&'static str] {
    match api {
        ApiKind::Links => &["used", "charges", "paid_amount", "last_paid_at", "refunded_amount"],
        ApiKind::LinksPlus => &["link_status", "charges", "paid_amount"],
    }
}

/// The refresh cells of one row, in [`refresh_columns`] order; blank when the link was never read.
pub fn refresh_cells(api: ApiKind, payment: Option<&Payment>) -> Vec<String> {
    let Some(p) = payment else { return Vec::new() };
    match api {
        ApiKind::Links => vec![
            p.used.map(|u| u.to_string()).unwrap_or_default(),
            p.charges.to_string(),
            p.paid_amount.to_string(),
            p.last_paid_at.clone().unwrap_or_default(),
            p.refunded_amount.to_string(),
        ],
        ApiKind::LinksPlus => {
            vec![p.link_status.clone().unwrap_or_default(), p.charges.to_string(), p.paid_amount.to_string()]
        }
    }
}

/// One output row, borrowing from the input row and the ledger index.
#[derive(Debug, Clone, Default)]
pub struct OutputRow<'a> {
    /// Input line.
    pub line: u64,
    /// Row key.
    pub key: &'a str,
    /// Status.
    pub status: Option<Status>,
    /// Link id.
    pub link_id: &'a str,
    /// Payment URI.
    pub payment_uri: String,
    /// Amount in minor units (blank for a rejected row).
    pub amount: Option<u64>,
    /// Currency.
    pub currency: &'a str,
    /// Title (Links+: name).
    pub title: &'a str,
    /// Error code.
    pub error_code: Cow<'a, str>,
    /// Error message.
    pub error_message: Cow<'a, str>,
    /// The job's extra columns.
    pub extra: &'a [String],
    /// The delivery columns, when written.
    pub delivery: Vec<String>,
    /// The lifecycle columns (`retired_reason`, `retired_at`), when the row's link was retired.
    pub retired: Vec<String>,
    /// The refresh columns, when written.
    pub refresh: Vec<String>,
}

/// A cell a spreadsheet would evaluate (`=`, `+`, `-`, `@`, tab, carriage return): written with a `'` before it.
fn is_formula(cell: &str) -> bool {
    cell.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// Appends one cell of a CSV row, neutralised (`'` before a formula, see [`is_formula`]), exactly as the `csv` crate writes it: quoted (quotes
/// doubled) only when it holds a comma, a quote or a line break. By hand, because a million-row output spent
/// more time in the general writer's per-field state machine than in anything else on its thread.
fn push_cell(row: &mut Vec<u8>, cell: &str) {
    let bytes = cell.as_bytes();
    let formula = is_formula(cell);
    // Folded without a short cut, so the compiler checks many bytes at once.
    let quoted = bytes.iter().fold(false, |q, &b| q | matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if !quoted {
        if formula {
            row.push(b'\'');
        }
        row.extend_from_slice(bytes);
        return;
    }
    row.push(b'"');
    if formula {
        row.push(b'\'');
    }
    for piece in bytes.split_inclusive(|&b| b == b'"') {
        row.extend_from_slice(piece);
        if piece.ends_with(b"\"") {
            row.push(b'"');
        }
    }
    row.push(b'"');
}

/// Writes the output CSV atomically.
pub struct OutputWriter {
    path: PathBuf,
    extra_columns: usize,
    delivery_columns: usize,
    lifecycle_columns: usize,
    refresh_columns: usize,
    temporary: PathBuf,
    /// `None` once finished.
    spool: Option<Spool>,
    /// The row being written, its room reused.
    row: Vec<u8>,
}

impl Drop for OutputWriter {
    fn drop(&mut self) {
        // Not finished (a draft given up, an error): the temporary file goes, the old output stays.
        if self.spool.take().is_some() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

impl std::fmt::Debug for OutputWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputWriter").field("path", &self.path).finish()
    }
}

impl OutputWriter {
    /// Starts a new output at a temporary name beside `path`: the fixed columns, `extra_columns`, the
    /// delivery columns when `delivery`, the lifecycle's when `lifecycle`, then `refresh_columns`.
    pub fn create(
        path: &Path,
        extra_columns: &[String],
        (delivery, lifecycle): (bool, bool),
        refresh_columns: &[&str],
    ) -> io::Result<OutputWriter> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("output.csv");
        let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let mut writer = OutputWriter {
            path: path.to_owned(),
            extra_columns: extra_columns.len(),
            delivery_columns: if delivery { DELIVERY_COLUMNS.len() } else { 0 },
            lifecycle_columns: if lifecycle { LIFECYCLE_COLUMNS.len() } else { 0 },
            refresh_columns: refresh_columns.len(),
            spool: Some(Spool::new(File::create(&temporary)?)?),
            temporary,
            row: Vec::new(),
        };
        let header = self::header(extra_columns, delivery, lifecycle);
        writer.write_cells(header.iter().map(String::as_str).chain(refresh_columns.iter().copied()))?;
        Ok(writer)
    }

    /// Appends a row.
    pub fn write(&mut self, row: &OutputRow<'_>) -> io::Result<()> {
        let mut line = itoa::Buffer::new();
        let mut amount = itoa::Buffer::new();
        let fixed = [
            line.format(row.line),
            row.key,
            row.status.map_or("", Status::name),
            row.link_id,
            &row.payment_uri,
            row.amount.map_or("", |a| amount.format(a)),
            row.currency,
            row.title,
            &row.error_code,
            &row.error_message,
        ];
        self.row.clear();
        for text in fixed {
            self.cell(text);
        }
        // A row rejected before its columns could be read has no extra cells: keep the shape with blanks.
        (0..self.extra_columns).for_each(|i| self.cell(row.extra.get(i).map_or("", String::as_str)));
        (0..self.delivery_columns).for_each(|i| self.cell(row.delivery.get(i).map_or("", String::as_str)));
        (0..self.lifecycle_columns).for_each(|i| self.cell(row.retired.get(i).map_or("", String::as_str)));
        (0..self.refresh_columns).for_each(|i| self.cell(row.refresh.get(i).map_or("", String::as_str)));
        self.end_row()
    }

    fn write_cells<'c>(&mut self, cells: impl Iterator<Item = &'c str>) -> io::Result<()> {
        self.row.clear();
        cells.for_each(|text| self.cell(text));
        self.end_row()
    }

    /// Adds a cell and its comma to the row being written.
    fn cell(&mut self, text: &str) {
        push_cell(&mut self.row, text);
        self.row.push(b',');
    }

    /// The row's last comma becomes its line end; the row goes to the file.
    fn end_row(&mut self) -> io::Result<()> {
        self.row.pop();
        self.row.push(b'\n');
        let spool = self.spool.as_mut().ok_or_else(|| io::Error::other("output already finished"))?;
        spool.write_all(&self.row)
    }

    /// Flushes, syncs and renames into place.
    pub fn finish(mut self) -> io::Result<PathBuf> {
        let spool = self.spool.take().ok_or_else(|| io::Error::other("output already finished"))?;
        let result =
            spool.finish().and_then(|file| file.sync_all()).and_then(|()| std::fs::rename(&self.temporary, &self.path));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&self.temporary);
            return Err(e);
        }
        Ok(self.path.clone())
    }
}

/// A file written by a thread of its own, in blocks of [`Spool::BLOCK`] bytes: formatting rows and the
/// kernel's copy of them into the page cache overlap (a million-row output is 160 MB).
struct Spool {
    block: Vec<u8>,
    /// `None` once finished.
    full: Option<SyncSender<Vec<u8>>>,
    /// Blocks written, back for reuse.
    empty: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<io::Result<File>>>,
}

impl Spool {
    const BLOCK: usize = 1 << 20;

    fn new(mut file: File) -> io::Result<Spool> {
        // Two blocks queued at most: memory stays at a few blocks however fast rows come.
        let (full, blocks) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let (give_back, empty) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("output-writer".into()).spawn(move || {
            for mut block in blocks {
                file.write_all(&block)?;
                block.clear();
                let _ = give_back.send(block);
            }
            Ok(file)
        })?;
        Ok(Spool { block: Vec::with_capacity(Self::BLOCK), full: Some(full), empty, thread: Some(thread) })
    }

    /// Hands the current block to the writer thread.
    fn send(&mut self) -> io::Result<()> {
        let next = self.empty.try_recv().unwrap_or_else(|_| Vec::with_capacity(Self::BLOCK));
        let block = std::mem::replace(&mut self.block, next);
        let sent = self.full.as_ref().is_some_and(|full| full.send(block).is_ok());
        if sent {
            return Ok(());
        }
        // The thread stopped at a write error; it says which.
        self.full = None;
        Err(self.join().err().unwrap_or_else(|| io::Error::other("output writer stopped")))
    }

    fn join(&mut self) -> io::Result<File> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("output writer panicked")),
            None => Err(io::Error::other("output writer already stopped")),
        }
    }

    /// Writes what is left and waits for the thread: the file, complete, or the first write error.
    fn finish(mut self) -> io::Result<File> {
        if !self.block.is_empty() {
            self.send()?;
        }
        self.full = None;
        self.join()
    }
}

impl Write for Spool {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.block.len() + bytes.len() > Self::BLOCK && !self.block.is_empty() {
            self.send()?;
        }
        self.block.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    /// Blocks go to the file as they fill, and the rest at [`Spool::finish`]: an output is only read once
    /// it is renamed into place.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // Not finished: let the thread end (its file is being removed) rather than outlive the writer.
        self.full = None;
        let _ = self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The neutralising rule on its own, as the oracle for the row writer.
    fn neutralise(cell: &str) -> Cow<'_, str> {
        if is_formula(cell) { Cow::Owned(format!("'{cell}")) } else { Cow::Borrowed(cell) }
    }

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(neutralise("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise("-5"), "'-5");
        assert_eq!(neutralise("@SUM"), "'@SUM");
        assert_eq!(neutralise("Gold plan"), "Gold plan");
    }

    #[test]
    fn rows_are_written_as_the_csv_crate_writes_them() {
        // Every awkward byte in every position, and cells a spreadsheet would run.
        let pieces = ["", "a", ",", "\"", "\"\"", "\n", "\r", "\r\n", " ", "=1+2", "-5", "@x", "\tt", "é", "a,b\"c"];
        let mut cells: Vec<String> = pieces.iter().map(std::string::ToString::to_string).collect();
        for a in pieces {
            for b in pieces {
                cells.push(format!("{a}x{b}"));
            }
        }
        let mut ours = Vec::new();
        let mut theirs = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
        for row in cells.chunks(7) {
            let mut line = Vec::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push(b',');
                }
                push_cell(&mut line, cell);
            }
            line.push(b'\n');
            ours.extend_from_slice(&line);
            theirs.write_record(row.iter().map(|c| neutralise(c).into_owned())).unwrap();
        }
        let theirs = theirs.into_inner().unwrap();
        assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(theirs).unwrap());
    }

    #[test]
    fn spool_writes_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spooled");
        let mut spool = Spool::new(File::create(&path).unwrap()).unwrap();
        let mut expected = Vec::new();
        // Pieces of every size up to past a block, so blocks are cut at every kind of boundary.
        for n in (0..3000usize).chain([Spool::BLOCK + 7]) {
            let piece: Vec<u8> = (0..n).map(|i| (i * 31 + n) as u8).collect();
            spool.write_all(&piece).unwrap();
            expected.extend_from_slice(&piece);
        }
        spool.finish().unwrap();
        assert!(expected.len() > 4 * Spool::BLOCK);
        assert!(std::fs::read(&path).unwrap() == expected);
    }

    #[test]
    fn spool_reports_a_failed_write() {
        // Linux's /dev/full refuses every write with "no space left on device".
        let Ok(full) = File::options().write(true).open("/dev/full") else { return };
        let mut spool = Spool::new(full).unwrap();
        let block = vec![b'x'; Spool::BLOCK];
        let error = (0..8)
            .map(|_| spool.write_all(&block))
            .find_map(Result::err)
            .or_else(|| spool.finish().err())
            .expect("a write to /dev/full fails");
        assert_eq!(error.raw_os_error(), Some(28), "{error}");
    }
}
