//! Output and report: the output CSV written from the input and the ledger, its counts and the payment
//! totals (`summary` words them). Decides nothing of its own (the output of a row is `decide::report`); sends nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::decide::{self, Disposition};
use crate::ledger::{Index, KeyState, ReadBack};
use crate::output::{OutputRow, OutputWriter};
use crate::plan::{Plan, PlannedRow, RowError};
use crate::summary::PaymentTotals;
use crate::terms::{Payment, Status};

use crate::rows::for_each_row;

/// Rows per status, and the payment totals when the output has the refresh columns.
pub type Written = (BTreeMap<Status, u64>, Option<PaymentTotals>);

/// Writes the output CSV from the input and the ledger. `run_start`: ledger lines before the run (links
/// after it are `created`, before it `existing`); `None` reports every link as `created`. With `payments`,
/// the refresh columns are added and the payment totals returned.
pub fn write_output(plan: &Plan, index: &Index, run_start: Option<u64>, payments: bool) -> anyhow::Result<Written> {
    let mut pass = OutputPass::create(plan, run_start, payments)?;
    let mut reader = plan.reader()?;
    let mut error = None;
    for_each_row(plan, &mut reader, Some(index), |row| match pass.row(row, None, index) {
        Ok(()) => true,
        Err(e) => {
            error = Some(e);
            false
        }
    });
    if let Some(e) = error {
        return Err(crate::told::run::output_unwritable(plan.output_path(), &e));
    }
    pass.finish()
}

/// The output CSV being written, row by row, with its counts.
#[derive(Debug)]
pub struct OutputPass {
    writer: OutputWriter,
    api: crate::terms::ApiKind,
    path: PathBuf,
    run_start: Option<u64>,
    payments: bool,
    counts: BTreeMap<Status, u64>,
    totals: PaymentTotals,
    /// The plan, when its job has `[deliver]` (a row's message is written to tell a rejected one).
    deliver: Option<Box<Plan>>,
    /// The ledger, for the request a conflicting row's link was made with.
    back: ReadBack,
}

impl OutputPass {
    /// Starts the output of `plan` (at a temporary name until [`OutputPass::finish`]).
    pub fn create(plan: &Plan, run_start: Option<u64>, payments: bool) -> anyhow::Result<OutputPass> {
        let columns = if payments { crate::output::refresh_columns(plan.api()) } else { &[] };
        let path = plan.output_path().to_owned();
        let shape = (plan.deliver().is_some(), plan.lifecycle().is_some());
        let writer = OutputWriter::create(&path, plan.extra_columns(), shape, columns)
            .map_err(|e| crate::told::run::output_unwritable(&path, &e))?;
        Ok(OutputPass {
            writer,
            api: plan.api(),
            path,
            run_start,
            payments,
            counts: BTreeMap::new(),
            totals: PaymentTotals::default(),
            deliver: plan.deliver().is_some().then(|| Box::new(plan.clone())),
            back: ReadBack::new(plan.ledger_path()),
        })
    }

    /// Writes the next row (its disposition, when the caller has it already).
    pub fn row(
        &mut self,
        row: &Result<PlannedRow, RowError>,
        disposition: Option<Disposition>,
        index: &Index,
    ) -> std::io::Result<()> {
        let (mut out, payment) = output_row(row, disposition, index, &self.back, self.run_start);
        if self.payments {
            if !out.link_id.is_empty() {
                self.totals.add(payment);
            }
            out.refresh = crate::output::refresh_cells(self.api, payment);
        }
        if let (Some(plan), Ok(row)) = (&self.deliver, row) {
            out.delivery = delivery_cells(plan, row, index);
        }
        *self.counts.entry(out.status.unwrap_or(Status::Pending)).or_insert(0) += 1;
        self.writer.write(&out)
    }

    /// Puts the file in place; returns the rows per status, and the payment totals when asked for.
    pub fn finish(self) -> anyhow::Result<Written> {
        let path = self.path;
        self.writer.finish().map_err(|e| crate::told::run::output_unwritable(&path, &e))?;
        Ok((self.counts, self.payments.then_some(self.totals)))
    }
}

/// A row's `delivery`, `delivered_at` and `delivery_reply` cells: blank while it has no link; `rejected`
/// with the reason when its message cannot be written.
fn delivery_cells(plan: &Plan, row: &PlannedRow, index: &Index) -> Vec<String> {
    use crate::decide::delivery::{delivery, last_delivered, last_reply};
    use crate::terms::Delivery;
    let Some(link) = index.get(&row.key.id()).and_then(|s| s.link) else { return Vec::new() };
    let rounds = index.deliveries.of(&row.key.id());
    let at = last_delivered(rounds).map(|(at, _)| humantime::format_rfc3339_seconds(at).to_string());
    let state = delivery(rounds);
    if state == Delivery::Pending && rounds.is_empty() {
        let (uri, id) = (index.payment_uri(&link), index.link_id(&link));
        let amount = crate::mail::amount_of(row);
        let fields = crate::mail::LinkFields { payment_uri: &uri, link_id: id, amount_display: &amount };
        if let Err(refusal) = crate::mail::check(plan, row, fields, 0) {
            return vec![Delivery::Rejected.name().to_owned(), String::new(), refusal.to_string()];
        }
    }
    vec![state.name().to_owned(), at.unwrap_or_default(), last_reply(rounds).unwrap_or_default()]
}

/// Links an existing output CSV names that the ledger does not hold: how many, and the first (key, link id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingLinks {
    /// Rows of the output whose link the ledger lacks.
    pub count: u64,
    /// The first of them: key and link id.
    pub first: (String, String),
}

/// Reads the output CSV at `path` (if there is one) and finds the links it names that `index` never held: a
/// ledger emptied, cut short or replaced since that output was written. Such a ledger must not be run on: its
/// rows would be sent again (docs/reference.md, "Fail closed").
pub fn links_missing_from(index: &Index, path: &std::path::Path) -> std::io::Result<Option<MissingLinks>> {
    let mut reader = match csv::Reader::from_path(path) {
        Ok(reader) => reader,
        Err(e) if matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound) => {
            return Ok(None);
        }
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let headers = reader.headers().map_err(std::io::Error::other)?.clone();
    let column = |name| headers.iter().position(|h| h == name);
    let (Some(key), Some(link)) = (column("key"), column("link_id")) else { return Ok(None) };
    let mut missing: Option<MissingLinks> = None;
    for record in reader.records() {
        let record = record.map_err(std::io::Error::other)?;
        let id = record.get(link).unwrap_or_default();
        if id.is_empty() || index.is_claimed(id) {
            continue;
        }
        if let Some(m) = &mut missing {
            m.count += 1;
        } else {
            let first = (record.get(key).unwrap_or_default().to_owned(), id.to_owned());
            missing = Some(MissingLinks { count: 1, first });
        }
    }
    Ok(missing)
}

/// What changed in a conflicting row since its link was made (read back from the ledger).
pub fn conflict_changes(row: &PlannedRow, index: &Index, back: &ReadBack) -> String {
    index
        .get(&row.key.id())
        .and_then(|state| back.request_of(index, state))
        .map_or_else(|| crate::told::row::UNKNOWN_CHANGE.into(), |before| row.request.changes_from(&before))
}

/// The output row of an input row, and its link's payment state; `disposition` is the row's, when the caller
/// has it already.
fn output_row<'a>(
    row: &'a Result<PlannedRow, RowError>,
    disposition: Option<Disposition>,
    index: &'a Index,
    back: &ReadBack,
    run_start: Option<u64>,
) -> (OutputRow<'a>, Option<&'a Payment>) {
    let row = match row {
        Err(e) => {
            let report = decide::rejected(e);
            let out = OutputRow {
                line: e.line,
                key: e.key.as_deref().unwrap_or_default(),
                status: Some(report.status),
                error_code: report.error_code.into(),
                error_message: e.reason.as_str().into(),
                extra: &e.extra,
                ..OutputRow::default()
            };
            return (out, None);
        }
        Ok(row) => row,
    };
    let state = index.get(&row.key.id());
    let disposition = disposition.unwrap_or_else(|| decide::disposition(row, state));
    let (link_id, changes) = match &disposition {
        Disposition::Conflict(link) => (index.link_id(link), conflict_changes(row, index, back)),
        _ => ("", String::new()),
    };
    let api = match row.request {
        crate::request::LinkRequest::Classic(_) => crate::terms::ApiKind::Links,
        crate::request::LinkRequest::Plus(_) => crate::terms::ApiKind::LinksPlus,
    };
    let report = decide::report(&disposition, state, run_start, (api, link_id), &changes);
    let mut out = OutputRow {
        line: row.line,
        key: &row.key,
        status: Some(report.status),
        amount: Some(row.request.amount()),
        currency: row.request.currency().unwrap_or_default(),
        title: row.request.title(),
        extra: &row.extra,
        ..OutputRow::default()
    };
    if let Some(link) = report.link {
        out.link_id = index.link_id(&link);
        out.payment_uri = index.payment_uri(&link);
    }
    if let Some((reason, at)) = state.and_then(KeyState::retired).filter(|_| report.status == Status::Retired) {
        out.retired = vec![reason.name().to_owned(), at.to_string()];
    }
    // Most rows have no error: keep their cells borrowed and empty.
    if !report.error_code.is_empty() {
        out.error_code = report.error_code.into();
        out.error_message = report.error_message.into();
    }
    (out, state.and_then(|s| s.payment()).map(|(p, _)| p))
}
