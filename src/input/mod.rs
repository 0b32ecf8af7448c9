//! Streaming rows from CSV (header, quotes, CRLF, UTF-8 BOM) or JSONL (one object per line), and from a
//! spreadsheet's sheet (`sheet`).
//!
//! Memory never grows with a CSV or JSONL file: one record at a time, holding only the columns the job uses
//! (a sheet is read whole, as calamine reads it). A bad line is a [`Rejection`] with its line number, and
//! reading goes on; only a file that cannot be opened at all, or a header that cannot be read, is an error for
//! the whole job.

mod sheet;

pub use sheet::Places;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::terms::InputFormat;

/// One input row: its line number and the cells the job asked for, in the order asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// 1-based line where the row starts (the CSV header is line 1).
    pub line: u64,
    /// Wanted cells; `None` when the row has no such value.
    pub cells: Vec<Option<String>>,
}

/// A line that cannot become a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// 1-based line.
    pub line: u64,
    /// What is wrong, naming the column where there is one.
    pub reason: String,
    /// The cells that could be read, the faulty ones empty, when the row itself could be read: its key
    /// and copied columns still name it in the output.
    pub partial: Option<Record>,
}

/// The input cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Open or read failure.
    #[error("cannot read input {path}: {source}")]
    Io {
        /// The input file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Header missing or unreadable.
    #[error("input {path}: {message}")]
    Header {
        /// The input file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Neither `.csv`, `.jsonl`, `.xlsx` nor `.ods`, and no `format` given.
    #[error(
        "input {0}: cannot tell the format from the extension; set `format = \"csv\"`, `\"jsonl\"`, `\"xlsx\"` or \
         `\"ods\"` under [input]"
    )]
    UnknownFormat(PathBuf),
    /// `[input] sheet` for an input that has no sheets.
    #[error("input {0}: [input] sheet names a sheet, and only a spreadsheet (.xlsx, .ods) has sheets")]
    SheetOfText(PathBuf),
}

/// What identifies the input a run read: the file at its path (device and inode), its size and its
/// modification time. Another file moved into place, or the same file rewritten, gives another stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    /// The stamp of the file now at `path`.
    pub fn of(path: &Path) -> std::io::Result<Stamp> {
        std::fs::metadata(path).map(|m| Stamp::from(&m))
    }

    /// What differs from `before`, in words (`None`: nothing).
    pub fn change_since(&self, before: &Stamp) -> Option<&'static str> {
        if (self.device, self.inode) != (before.device, before.inode) {
            Some("another file was put in its place")
        } else if self.len != before.len {
            Some("its size changed")
        } else if self.modified != before.modified {
            Some("it was written to")
        } else {
            None
        }
    }
}

impl From<&std::fs::Metadata> for Stamp {
    fn from(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp { device: m.dev(), inode: m.ino(), len: m.len(), modified: m.modified().ok() }
    }
}

/// Picks the format from the job or the extension.
pub fn detect_format(path: &Path, format: Option<InputFormat>) -> Result<InputFormat, InputError> {
    if let Some(format) = format {
        return Ok(format);
    }
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("csv") => Ok(InputFormat::Csv),
        Some("jsonl" | "ndjson") => Ok(InputFormat::Jsonl),
        Some("xlsx" | "xlsm") => Ok(InputFormat::Xlsx),
        Some("ods") => Ok(InputFormat::Ods),
        _ => Err(InputError::UnknownFormat(path.to_owned())),
    }
}

enum Source {
    Csv { reader: csv::Reader<File>, record: csv::ByteRecord, positions: Vec<Option<usize>> },
    Jsonl { reader: BufReader<File>, line: u64, buffer: Vec<u8> },
    Sheet(Box<sheet::Sheet>),
}

/// A streaming reader over an input file.
pub struct InputReader {
    path: PathBuf,
    columns: Vec<String>,
    wanted: Vec<String>,
    source: Source,
}

impl std::fmt::Debug for InputReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputReader").field("path", &self.path).field("columns", &self.columns).finish()
    }
}

impl InputReader {
    /// Opens the file and reads its header (CSV, fields separated by `delimiter`) or the keys of its first
    /// object (JSONL).
    pub fn open(path: &Path, format: InputFormat, delimiter: u8) -> Result<InputReader, InputError> {
        Self::open_sheet(path, format, delimiter, None)
    }

    /// [`Self::open`], reading the sheet named `sheet` of a spreadsheet (its first sheet when `None`).
    pub fn open_sheet(
        path: &Path,
        format: InputFormat,
        delimiter: u8,
        sheet: Option<&str>,
    ) -> Result<InputReader, InputError> {
        let io = |source| InputError::Io { path: path.to_owned(), source };
        let header = |message: String| InputError::Header { path: path.to_owned(), message };
        if matches!(format, InputFormat::Xlsx | InputFormat::Ods) {
            // calamine opens the file itself; opened here first, so a missing file says so as for a CSV.
            File::open(path).map_err(io)?;
            let (columns, sheet) = sheet::open(path, sheet)?;
            return Ok(InputReader {
                path: path.to_owned(),
                columns,
                wanted: Vec::new(),
                source: Source::Sheet(Box::new(sheet)),
            });
        }
        if sheet.is_some() {
            return Err(InputError::SheetOfText(path.to_owned()));
        }
        let file = File::open(path).map_err(io)?;
        let (columns, source) = match format {
            InputFormat::Csv => {
                // `\n` as the terminator keeps line numbers right for CRLF files too (csv starts a CRLF record
                // at the previous line's `\n`); the `\r` left on each last field is cut in `field`.
                let mut reader = csv::ReaderBuilder::new()
                    .flexible(true)
                    .delimiter(delimiter)
                    .terminator(csv::Terminator::Any(b'\n'))
                    .from_reader(file);
                let raw = reader.byte_headers().map_err(|e| header(format!("cannot read the header line: {e}")))?;
                let mut columns = Vec::with_capacity(raw.len());
                let last = raw.len().saturating_sub(1);
                for (i, name) in raw.iter().enumerate() {
                    let name = std::str::from_utf8(field(name, i == last))
                        .map_err(|_| header(format!("header column {} is not valid UTF-8", i + 1)))?;
                    columns.push(name.trim_start_matches('\u{feff}').trim().to_owned());
                }
                if columns.iter().all(String::is_empty) {
                    return Err(header("the header line is empty".into()));
                }
                (columns, Source::Csv { reader, record: csv::ByteRecord::new(), positions: Vec::new() })
            }
            InputFormat::Jsonl => {
                let mut first = BufReader::new(file);
                let columns = first_object_keys(&mut first).map_err(io)?.map_err(header)?;
                let file = File::open(path).map_err(io)?;
                (columns, Source::Jsonl { reader: BufReader::new(file), line: 0, buffer: Vec::new() })
            }
            InputFormat::Xlsx | InputFormat::Ods => unreachable!("a spreadsheet is opened above"),
        };
        Ok(InputReader { path: path.to_owned(), columns, wanted: Vec::new(), source })
    }

    /// The stamp of the file this reader reads (the one it opened, whatever is at its path now).
    pub fn stamp(&self) -> std::io::Result<Stamp> {
        let file = match &self.source {
            Source::Csv { reader, .. } => reader.get_ref(),
            Source::Jsonl { reader, .. } => reader.get_ref(),
            // Read whole when opened: the file at the path then is the one read.
            Source::Sheet(_) => return Stamp::of(&self.path),
        };
        file.metadata().map(|m| Stamp::from(&m))
    }

    /// The columns the file has (CSV header, or the first JSONL object's keys).
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Chooses which columns each [`Record`] carries, in this order. Every name must be in [`Self::columns`].
    pub fn select(&mut self, wanted: Vec<String>) {
        match &mut self.source {
            Source::Csv { positions, .. } => {
                *positions = wanted.iter().map(|w| self.columns.iter().position(|c| c == w)).collect();
            }
            Source::Sheet(sheet) => sheet.select(&self.columns, &wanted),
            Source::Jsonl { .. } => {}
        }
        self.wanted = wanted;
    }

    /// The next row, or `None` at the end of the file.
    pub fn next_record(&mut self) -> Option<Result<Record, Rejection>> {
        let mut record = Record::default();
        Some(self.read_into(&mut record)?.map(|()| record))
    }

    /// Reads the next row into `record`, reusing its room (a million rows, no allocation per cell); `None`
    /// at the end of the file.
    pub fn read_into(&mut self, into: &mut Record) -> Option<Result<(), Rejection>> {
        match &mut self.source {
            Source::Csv { reader, record, positions } => {
                let csv = CsvSource { reader, record, positions, columns: &self.columns, wanted: &self.wanted };
                csv.read_into(into)
            }
            Source::Jsonl { reader, line, buffer } => read_jsonl(reader, line, buffer, &self.wanted, into),
            Source::Sheet(sheet) => sheet.read_into(&self.wanted, into),
        }
    }

    /// How a spreadsheet names its cells (`Products!C7`); `None` for CSV and JSONL, whose line and column
    /// name say where a value is.
    pub fn places(&self) -> Option<Places> {
        let Source::Sheet(sheet) = &self.source else { return None };
        Some(sheet.places(&self.columns))
    }
}

/// The CSV reader's state, borrowed for one record.
struct CsvSource<'a> {
    reader: &'a mut csv::Reader<File>,
    record: &'a mut csv::ByteRecord,
    positions: &'a [Option<usize>],
    columns: &'a [String],
    wanted: &'a [String],
}

impl CsvSource<'_> {
    fn read_into(self, into: &mut Record) -> Option<Result<(), Rejection>> {
        // A loop, not a call per blank line: a file of a million blank lines is still one frame deep.
        loop {
            match self.reader.read_byte_record(self.record) {
                Ok(false) => return None,
                Err(e) => {
                    let line = e.position().map_or(0, csv::Position::line);
                    // An I/O error mid-file ends the stream; csv reports it once.
                    return Some(Err(Rejection { line, reason: format!("unreadable CSV: {e}"), partial: None }));
                }
                Ok(true) => {}
            }
            let line = self.record.position().map_or(0, csv::Position::line);
            if self.record.len() != self.columns.len() {
                if self.record.len() == 1 && self.record.get(0).is_some_and(|f| field(f, true).is_empty()) {
                    continue;
                }
                let reason = format!("row has {} fields, the header has {}", self.record.len(), self.columns.len());
                return Some(Err(Rejection { line, reason, partial: None }));
            }
            let cells = self.cells(line, into);
            if self.record.as_slice().len() > MAX_CELL {
                // A huge record read once must not keep its room for the rest of the file.
                *self.record = csv::ByteRecord::new();
            }
            return Some(cells);
        }
    }

    /// The wanted cells of the record just read, into `into` (its strings reused).
    fn cells(&self, line: u64, into: &mut Record) -> Result<(), Rejection> {
        into.line = line;
        into.cells.resize_with(self.positions.len(), || None);
        let last = self.record.len().saturating_sub(1);
        let wanted = self.wanted.iter().zip(self.positions.iter());
        for ((name, position), cell) in wanted.zip(into.cells.iter_mut()) {
            let Some(bytes) = position.and_then(|p| self.record.get(p).map(|f| field(f, p == last))) else {
                *cell = None;
                continue;
            };
            check_size(name, bytes.len()).map_err(|reason| Rejection { line, reason, partial: None })?;
            let text = std::str::from_utf8(bytes).map_err(|_| Rejection {
                line,
                reason: format!("column `{name}` is not valid UTF-8"),
                partial: None,
            })?;
            let cell = cell.get_or_insert_with(String::new);
            cell.clear();
            cell.push_str(text);
        }
        Ok(())
    }
}

/// The most a cell may hold: far more than any link field (a description is at most 1000 characters), far
/// less than what would cost the machine its memory.
pub const MAX_CELL: usize = 64 * 1024;

fn check_size(name: &str, bytes: usize) -> Result<(), String> {
    if bytes > MAX_CELL {
        return Err(format!("column `{name}` holds {bytes} bytes, more than any link field can ({MAX_CELL} at most)"));
    }
    Ok(())
}

/// The next JSONL record (blank lines skipped), its cells read by name.
fn read_jsonl(
    reader: &mut BufReader<File>,
    line: &mut u64,
    buffer: &mut Vec<u8>,
    wanted: &[String],
    into: &mut Record,
) -> Option<Result<(), Rejection>> {
    loop {
        if buffer.capacity() > 16 * MAX_CELL {
            // A huge line read once must not keep its room for the rest of the file.
            *buffer = Vec::new();
        }
        buffer.clear();
        match reader.read_until(b'\n', buffer) {
            Ok(0) => return None,
            Err(e) => {
                return Some(Err(Rejection {
                    line: *line + 1,
                    reason: format!("unreadable line: {e}"),
                    partial: None,
                }));
            }
            Ok(_) => {}
        }
        *line += 1;
        let Ok(text) = std::str::from_utf8(buffer) else {
            return Some(Err(Rejection { line: *line, reason: "line is not valid UTF-8".into(), partial: None }));
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let object = match json_object(text) {
            Ok(object) => object,
            Err(reason) => return Some(Err(Rejection { line: *line, reason, partial: None })),
        };
        let (cells, fault) = json_cells(&object, wanted);
        let record = Record { line: *line, cells };
        return Some(match fault {
            None => {
                *into = record;
                Ok(())
            }
            Some(reason) => Err(Rejection { line: *line, reason, partial: Some(record) }),
        });
    }
}

/// A CSV field with the `\r` of a CRLF line end removed from the record's last field.
fn field(bytes: &[u8], last: bool) -> &[u8] {
    if last { bytes.strip_suffix(b"\r").unwrap_or(bytes) } else { bytes }
}

/// The keys of the first non-blank line's object (sorted, as the rows' are looked up by name), or what is
/// wrong with that line, with its number.
fn first_object_keys(reader: &mut impl BufRead) -> std::io::Result<Result<Vec<String>, String>> {
    let mut buffer = Vec::new();
    let mut line = 0u64;
    loop {
        buffer.clear();
        if reader.read_until(b'\n', &mut buffer)? == 0 {
            return Ok(Err("no JSON object found: the file has no non-blank line".into()));
        }
        line += 1;
        let text = String::from_utf8_lossy(&buffer);
        if text.trim().is_empty() {
            continue;
        }
        return Ok(json_object(text.trim()).map(|object| object.into_keys().collect()).map_err(|reason| {
            format!("line {line}: {reason}; the first non-blank line must be an object, e.g. {{\"id\": 1}}")
        }));
    }
}

/// One line's object, its values kept as the JSON text they were written as: a number is never read through
/// a binary float (`123456789012345.67` stays exactly that).
fn json_object(text: &str) -> Result<BTreeMap<String, &RawValue>, String> {
    match serde_json::from_str::<BTreeMap<String, &RawValue>>(text) {
        Ok(object) => Ok(object),
        Err(e) if e.is_data() && serde_json::from_str::<&RawValue>(text).is_ok() => {
            Err("line is not a JSON object".into())
        }
        Err(e) => Err(format!("malformed JSON: {e}")),
    }
}

/// The wanted cells of one object, and what is wrong with the first one that cannot be used (that cell
/// left empty, the others read all the same).
fn json_cells(object: &BTreeMap<String, &RawValue>, wanted: &[String]) -> (Vec<Option<String>>, Option<String>) {
    let mut fault = None;
    let cells = wanted
        .iter()
        .map(|name| {
            let cell = json_cell(name, object.get(name).map(|raw| raw.get()));
            cell.unwrap_or_else(|reason| {
                fault.get_or_insert(reason);
                None
            })
        })
        .collect();
    (cells, fault)
}

/// One value as a cell's text: a string, a number as written, a boolean; `null` or absent is no value.
fn json_cell(name: &str, text: Option<&str>) -> Result<Option<String>, String> {
    let Some(text) = text else { return Ok(None) };
    check_size(name, text.len())?;
    match text.as_bytes().first() {
        Some(b'n') => Ok(None),
        Some(b'"') => serde_json::from_str::<String>(text).map(Some).map_err(|e| format!("field `{name}`: {e}")),
        Some(b't' | b'f') => Ok(Some(text.to_owned())),
        Some(b'{' | b'[') => {
            Err(format!("field `{name}` is an object or array; only strings, numbers and booleans can be used"))
        }
        _ => crate::money::decimal_text(text).map(Some).map_err(|e| format!("field `{name}`: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(contents: &[u8], ext: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(ext).tempfile().unwrap();
        f.write_all(contents).unwrap();
        f
    }

    fn all(reader: &mut InputReader) -> Vec<Result<Record, Rejection>> {
        std::iter::from_fn(|| reader.next_record()).collect()
    }

    #[test]
    fn csv_with_bom_crlf_quotes_and_a_bad_row() {
        let f = file(
            b"\xef\xbb\xbfid,title\r\n1,\"Hello, \"\"world\"\"\"\r\n2\r\n3,\xff\r\n\r\n4,\"two\r\nlines\"\r\n5,x\r\n",
            ".csv",
        );
        let mut r = InputReader::open(f.path(), InputFormat::Csv, b',').unwrap();
        assert_eq!(r.columns(), ["id", "title"]);
        r.select(vec!["title".into(), "id".into()]);
        let rows = all(&mut r);
        assert_eq!(rows[0], Ok(Record { line: 2, cells: vec![Some("Hello, \"world\"".into()), Some("1".into())] }));
        assert_eq!(rows[1].as_ref().unwrap_err().line, 3);
        assert!(rows[2].as_ref().unwrap_err().reason.contains("`title` is not valid UTF-8"));
        assert_eq!(rows[3], Ok(Record { line: 6, cells: vec![Some("two\r\nlines".into()), Some("4".into())] }));
        assert_eq!(rows[4].as_ref().unwrap().line, 8);
        assert_eq!(rows.len(), 5);
    }

    #[test]
    fn a_million_blank_lines_are_skipped_not_recursed_into() {
        let mut contents = b"id,title\r\n".to_vec();
        contents.extend(std::iter::repeat_n(b"\r\n".as_slice(), 1_000_000).flatten());
        contents.extend_from_slice(b"1,t\r\n");
        let f = file(&contents, ".csv");
        // On a thread with a small stack, as the planner's is.
        let rows = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut r = InputReader::open(f.path(), InputFormat::Csv, b',').unwrap();
                r.select(vec!["title".into()]);
                all(&mut r)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(rows, [Ok(Record { line: 1_000_002, cells: vec![Some("t".into())] })]);
    }

    #[test]
    fn a_reused_record_reads_what_fresh_ones_do() {
        let contents =
            b"id,title,extra\r\n1,\"long title, quoted\",x\r\n2,\r\n\r\n3,\xff,y\r\n4,t,\r\n5,\"a\r\nb\",z\r\n";
        let f = file(contents, ".csv");
        let open = || {
            let mut r = InputReader::open(f.path(), InputFormat::Csv, b',').unwrap();
            r.select(vec!["extra".into(), "title".into(), "absent".into()]);
            r
        };
        let fresh = all(&mut open());
        let mut reused = Vec::new();
        let (mut reader, mut record) = (open(), Record::default());
        while let Some(read) = reader.read_into(&mut record) {
            reused.push(read.map(|()| record.clone()));
        }
        assert_eq!(reused, fresh);
        assert_eq!(fresh.len(), 5);
        assert_eq!(fresh[3], Ok(Record { line: 6, cells: vec![Some(String::new()), Some("t".into()), None] }));
    }

    #[test]
    fn jsonl_types_and_malformed_lines() {
        let f =
            file(b"{\"id\": 7, \"ok\": true, \"amt\": 19.99}\n\n{broken\n{\"id\": \"x\", \"amt\": [1]}\n", ".jsonl");
        let mut r = InputReader::open(f.path(), detect_format(f.path(), None).unwrap(), b',').unwrap();
        r.select(vec!["id".into(), "ok".into(), "amt".into()]);
        let rows = all(&mut r);
        assert_eq!(
            rows[0],
            Ok(Record { line: 1, cells: vec![Some("7".into()), Some("true".into()), Some("19.99".into())] })
        );
        assert_eq!(rows[1].as_ref().unwrap_err().line, 3);
        assert!(rows[2].as_ref().unwrap_err().reason.contains("`amt`"));
    }
}
