//! Rows from a spreadsheet (`.xlsx`, `.ods`), read with calamine: one sheet (`[input] sheet`, else the first),
//! its first used row the header as a CSV's, each later row a record whose line is the sheet's row number.
//! A text cell is read as it is; a number as the shortest decimal that is exactly its value (`1200.5`, and
//! `0.30000000000000004` for the `0.1 + 0.2` a formula leaves), so money is never rounded on the way in and
//! an amount with more places than its currency has is refused where the amount is read, naming the cell.
//! A date or an error cell is its row's rejection, naming the cell.

use std::path::Path;

use calamine::{Data, Range, Reader};

use super::{InputError, Record, Rejection, check_size};

/// A sheet's names for its cells: `Products!C7` for column `price` on row 7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Places {
    sheet: String,
    letters: std::collections::HashMap<String, String>,
}

impl Places {
    /// The cell of `column` on sheet row `line`, if the sheet has that column.
    pub fn of(&self, column: &str, line: u64) -> Option<String> {
        Some(format!("{}!{}{line}", self.sheet, self.letters.get(column)?))
    }
}

/// A sheet read into memory (calamine reads a sheet whole), and where the next row is.
pub(super) struct Sheet {
    /// The sheet's name, for cell references (`Products!C7`).
    pub(super) name: String,
    range: Range<Data>,
    /// The next row to read, counted within the range (the header is 0).
    next: usize,
    /// Where each wanted column is, counted within the range.
    positions: Vec<Option<usize>>,
}

/// Opens the workbook and reads the sheet: its header row's cells are the columns.
pub(super) fn open(path: &Path, wanted_sheet: Option<&str>) -> Result<(Vec<String>, Sheet), InputError> {
    let header = |message: String| InputError::Header { path: path.to_owned(), message };
    let mut workbook =
        calamine::open_workbook_auto(path).map_err(|e| header(format!("cannot read the workbook: {e}")))?;
    let names = workbook.sheet_names();
    let name = match wanted_sheet {
        Some(wanted) => names.iter().find(|n| *n == wanted).cloned().ok_or_else(|| {
            header(format!("has no sheet `{wanted}` ([input] sheet); its sheets: {}", names.join(", ")))
        })?,
        None => names.first().cloned().ok_or_else(|| header("the workbook has no sheet".into()))?,
    };
    let range = workbook.worksheet_range(&name).map_err(|e| header(format!("cannot read sheet `{name}`: {e}")))?;
    let mut columns = Vec::with_capacity(range.width());
    if let Some(first) = range.rows().next() {
        for (i, cell) in first.iter().enumerate() {
            match cell {
                Data::String(text) => columns.push(text.trim().to_owned()),
                Data::Empty => columns.push(String::new()),
                other => columns.push(number_text(other).unwrap_or_else(|| format!("column {}", i + 1))),
            }
        }
    }
    if columns.iter().all(String::is_empty) {
        return Err(header(format!("sheet `{name}` has no header row (its first used row is empty)")));
    }
    Ok((columns, Sheet { name, range, next: 1, positions: Vec::new() }))
}

impl Sheet {
    /// Chooses which columns each record carries.
    pub(super) fn select(&mut self, columns: &[String], wanted: &[String]) {
        self.positions = wanted.iter().map(|w| columns.iter().position(|c| c == w)).collect();
    }

    /// How the sheet names its cells.
    pub(super) fn places(&self, columns: &[String]) -> Places {
        let first = self.range.start().map_or(0, |(_, c)| c as usize);
        let letters = columns.iter().enumerate().map(|(i, c)| (c.clone(), letters(first + i))).collect();
        Places { sheet: self.name.clone(), letters }
    }

    /// `Products!C7`: the cell of a column (counted within the range) on a sheet row.
    fn place(&self, column: usize, line: u64) -> String {
        let first = self.range.start().map_or(0, |(_, c)| c as usize);
        format!("{}!{}{line}", self.name, letters(first + column))
    }

    /// The sheet's row number (1-based) of a row counted within the range.
    fn line(&self, row: usize) -> u64 {
        self.range.start().map_or(0, |(r, _)| u64::from(r)) + row as u64 + 1
    }

    pub(super) fn read_into(&mut self, wanted: &[String], into: &mut Record) -> Option<Result<(), Rejection>> {
        loop {
            // Cell by cell (`Range::get` is a slice index): `rows().nth` would walk from the top every row.
            let at = self.next;
            if at >= self.range.height() {
                return None;
            }
            let line = self.line(at);
            self.next += 1;
            let cell = |column: usize| self.range.get((at, column)).unwrap_or(&Data::Empty);
            if (0..self.range.width()).all(|c| matches!(cell(c), Data::Empty)) {
                continue;
            }
            into.line = line;
            into.cells.clear();
            for (name, position) in wanted.iter().zip(&self.positions) {
                match position.map(|p| (p, text_of(cell(p)))) {
                    None | Some((_, Ok(None))) => into.cells.push(None),
                    Some((_, Ok(Some(text)))) => {
                        if let Err(reason) = check_size(name, text.len()) {
                            return Some(Err(Rejection { line, reason, partial: None }));
                        }
                        into.cells.push(Some(text));
                    }
                    Some((p, Err(what))) => {
                        let reason =
                            format!("column `{name}` ({}) holds {what}: write the value as text", self.place(p, line));
                        return Some(Err(Rejection { line, reason, partial: None }));
                    }
                }
            }
            return Some(Ok(()));
        }
    }
}

/// A cell as text: `None` when empty, `Err` with what it holds when it has no text linkbatch can take.
fn text_of(cell: &Data) -> Result<Option<String>, String> {
    match cell {
        Data::Empty => Ok(None),
        Data::String(text) | Data::DateTimeIso(text) | Data::DurationIso(text) => Ok(Some(text.clone())),
        Data::Bool(b) => Ok(Some(b.to_string())),
        Data::Int(_) | Data::Float(_) => Ok(number_text(cell)),
        Data::DateTime(_) => Err("a date (a number of days, as the sheet stores it)".into()),
        Data::Error(e) => Err(format!("an error ({e})")),
    }
}

/// A number cell as the shortest decimal that reads back as exactly its value (Rust's `Display` of an
/// `f64` is that shortest round-trip form, never an exponent): `1200.5`, `1200`, `0.30000000000000004`.
fn number_text(cell: &Data) -> Option<String> {
    match cell {
        Data::Int(n) => Some(n.to_string()),
        Data::Float(f) if f.is_finite() => Some(f.to_string()),
        _ => None,
    }
}

/// `0` → `A`, `25` → `Z`, `26` → `AA`.
fn letters(mut column: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + u8::try_from(column % 26).unwrap_or(0));
        if column < 26 {
            break;
        }
        column = column / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_lettered_as_spreadsheets_do() {
        assert_eq!([0, 2, 25, 26, 27, 701, 702].map(letters), ["A", "C", "Z", "AA", "AB", "ZZ", "AAA"]);
    }

    #[test]
    fn numbers_become_their_shortest_exact_decimal() {
        assert_eq!(number_text(&Data::Float(1200.0)).as_deref(), Some("1200"));
        assert_eq!(number_text(&Data::Float(1200.505)).as_deref(), Some("1200.505"));
        assert_eq!(number_text(&Data::Float(0.1 + 0.2)).as_deref(), Some("0.30000000000000004"));
        assert_eq!(number_text(&Data::Float(1e21)).as_deref(), Some("1000000000000000000000"));
        assert_eq!(number_text(&Data::Int(-7)).as_deref(), Some("-7"));
    }

    #[test]
    fn dates_and_errors_have_no_text() {
        assert!(text_of(&Data::Error(calamine::CellErrorType::Div0)).unwrap_err().contains("#DIV/0!"));
        assert_eq!(text_of(&Data::Bool(true)), Ok(Some("true".into())));
        assert_eq!(text_of(&Data::Empty), Ok(None));
    }
}
