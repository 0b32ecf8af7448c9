//! Rows: the input streamed through the plan and the duplicate-key check, in input order. Never sends a
//! request and never writes the ledger.

use crate::input::{InputReader, Record, Rejection};
use crate::ledger::Index;
use crate::plan::{KeyGuard, Plan, PlannedRow, RowError};

/// Streams every row of `reader` through the plan and the duplicate-key check, in input order. `index`, when
/// given, is the ledger index `visit` consults, whose slots then double as the record of keys seen.
///
/// A thread of its own reads and plans the rows (templates, amounts, fingerprints) a batch at a time while
/// this one checks and visits the batch before: a resumed million-row job is two streams of work, not one.
/// `visit` borrows each row; a visited batch goes back to the planner, which drops it and reuses its room
/// (memory freed on the thread that allocated it stays cheap to allocate again).
pub fn for_each_row(
    plan: &Plan,
    reader: &mut InputReader,
    index: Option<&Index>,
    mut visit: impl FnMut(&Result<PlannedRow, RowError>) -> bool,
) {
    let mut keys = KeyGuard::new(index.map_or(0, Index::len));
    let mut check = |row: &mut Result<PlannedRow, RowError>, slot: Option<usize>| {
        if let Ok(planned) = row
            && !keys.first(planned.key.id(), slot)
        {
            let reason = format!("duplicate key `{}`: an earlier row has the same key", planned.key);
            let (line, key, extra) = (planned.line, Some(planned.key.to_string()), std::mem::take(&mut planned.extra));
            *row = Err(RowError { line, key, field: "key", reason, extra });
        }
    };
    let slot = |row: &Result<PlannedRow, RowError>| match (row, index) {
        (Ok(row), Some(index)) => index.position(&row.key.id()),
        _ => None,
    };
    let planned = std::thread::scope(|scope| {
        // A few batches ahead at most: memory stays flat whatever the input's size.
        let (batches, planned) = std::sync::mpsc::sync_channel::<Vec<Result<PlannedRow, RowError>>>(4);
        let (give_back, spent) = std::sync::mpsc::channel::<Vec<Result<PlannedRow, RowError>>>();
        let records = &mut *reader;
        let planner = std::thread::Builder::new().name("planner".into()).spawn_scoped(scope, move || {
            // One record read into, and the rows of visited batches, refilled: no allocation per cell.
            let (mut record, mut spare) = (Record::default(), Vec::new());
            loop {
                let mut batch = match spent.try_recv() {
                    Ok(mut visited) => {
                        spare.extend(visited.drain(..).filter_map(Result::ok));
                        visited
                    }
                    Err(_) => Vec::with_capacity(BATCH),
                };
                while batch.len() < BATCH
                    && let Some(read) = records.read_into(&mut record)
                {
                    batch.push(plan_record(plan, read.map(|()| &record), spare.pop()));
                }
                let last = batch.len() < BATCH;
                if batch.is_empty() || batches.send(batch).is_err() || last {
                    return;
                }
            }
        });
        if planner.is_err() {
            return false;
        }
        'batches: for mut batch in planned {
            // The batch's index lookups first, back to back: their cache misses overlap.
            let slots: Vec<Option<usize>> = batch.iter().map(slot).collect();
            for (row, slot) in batch.iter_mut().zip(slots) {
                check(row, slot);
                if !visit(row) {
                    // Dropping the receiver stops the planner at its next batch.
                    break 'batches;
                }
            }
            let _ = give_back.send(batch);
        }
        true
    });
    if !planned {
        // No thread to be had: plan on this one.
        let mut record = Record::default();
        while let Some(read) = reader.read_into(&mut record) {
            let mut row = plan_record(plan, read.map(|()| &record), None);
            let slot = slot(&row);
            check(&mut row, slot);
            if !visit(&row) {
                break;
            }
        }
    }
}

/// Rows planned ahead at a time.
const BATCH: usize = 256;

fn plan_record(
    plan: &Plan,
    record: Result<&Record, Rejection>,
    spare: Option<PlannedRow>,
) -> Result<PlannedRow, RowError> {
    match record {
        Err(Rejection { partial: Some(partial), reason, .. }) => Err(plan.partly_read(&partial, reason)),
        Err(Rejection { line, reason, partial: None }) => {
            Err(RowError { line, key: None, field: "input", reason, extra: Vec::new() })
        }
        Ok(record) => plan.row_reusing(record, spare),
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;
    use crate::job::{JobSpec, MINIMAL as JOB};
    use crate::plan::Overrides;

    /// `rows` rows (row `i` has key `k{i}`, except as `key` says), planned and visited until `stop` rows were.
    fn visit(rows: usize, key: impl Fn(usize) -> usize, stop: usize) -> Vec<(u64, Result<String, String>)> {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("rows.csv");
        let mut text = String::from("id,amount,title\n");
        for i in 0..rows {
            // Every 100th row has a bad amount.
            let amount = if i % 100 == 99 { "lots" } else { "10.00" };
            writeln!(text, "k{},{amount},Row {i}", key(i)).unwrap();
        }
        std::fs::write(&input, text).unwrap();
        let overrides = Overrides { input: Some(input), ..Overrides::default() };
        let (plan, mut reader) = Plan::new(JobSpec::parse(JOB).unwrap(), &overrides).unwrap();
        let mut seen = Vec::new();
        for_each_row(&plan, &mut reader, None, |row| {
            seen.push(match row {
                Ok(row) => (row.line, Ok(row.key.to_string())),
                Err(e) => (e.line, Err(e.field.to_owned())),
            });
            seen.len() < stop
        });
        seen
    }

    #[test]
    fn rows_come_in_input_order_across_batches_with_duplicates_and_errors_named() {
        let rows = 3 * BATCH + 17;
        // Row 700 repeats row 5's key: the later one is the duplicate, however far apart the batches.
        let seen = visit(rows, |i| if i == 700 { 5 } else { i }, usize::MAX);
        assert_eq!(seen.len(), rows);
        for (i, (line, row)) in seen.iter().enumerate() {
            assert_eq!(*line, i as u64 + 2);
            match i {
                700 => assert_eq!(row, &Err("key".to_owned())),
                _ if i % 100 == 99 => assert_eq!(row, &Err("amount".to_owned())),
                _ => assert_eq!(row, &Ok(format!("k{i}"))),
            }
        }
    }

    #[test]
    fn a_row_planned_into_a_spare_is_the_row_planned_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("rows.csv");
        std::fs::write(
            &input,
            "id,amount,title,note\nlong-key-number-one,123450,A,a long note here\nk2,1,B,\nk3,x,C,n\n",
        )
        .unwrap();
        let job = format!("{JOB}[output]\ncolumns = [\"note\", \"amount\"]\n");
        let overrides = Overrides { input: Some(input), ..Overrides::default() };
        let (plan, mut reader) = Plan::new(JobSpec::parse(&job).unwrap(), &overrides).unwrap();
        let records: Vec<Record> = std::iter::from_fn(|| reader.next_record()).map(Result::unwrap).collect();
        let fresh = |i: usize| plan.row(&records[i]);
        for (spare, record) in [(0, 1), (1, 0), (0, 0)] {
            let reused = plan.row_reusing(&records[record], fresh(spare).ok()).unwrap();
            let again = fresh(record).unwrap();
            assert_eq!(
                (reused.line, &reused.key, reused.key.id(), &reused.request, reused.fingerprint(), &reused.extra),
                (again.line, &again.key, again.key.id(), &again.request, again.fingerprint(), &again.extra)
            );
        }
        // A row that fails with a spare fails as it does afresh, naming the same field and keeping its cells.
        let failed = plan.row_reusing(&records[2], fresh(0).ok()).unwrap_err();
        assert_eq!(failed, fresh(2).unwrap_err());
        assert_eq!(failed.extra, ["n", "x"]);
    }

    #[test]
    fn a_visit_that_says_stop_is_the_last() {
        let seen = visit(3 * BATCH, |i| i, BATCH + 3);
        assert_eq!(seen.len(), BATCH + 3);
        assert_eq!(seen.last().map(|(line, _)| *line), Some(BATCH as u64 + 4));
    }
}
