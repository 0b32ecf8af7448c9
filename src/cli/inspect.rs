//! `validate`, `status`, `export` and `settle`: the plan and the ledger read, nothing sent. Never writes the
//! ledger but through `Book::record` (settle appends one event, under the ledger's lock).

use std::io::Write;

use super::{Ended, InspectArgs, SettleArgs, overrides, usage};
use crate::input::InputReader;
use crate::job::JobSpec;
use crate::ledger::Ledger;
use crate::outcome::Outcome;
use crate::plan::{Overrides, Plan};
use crate::rate::Rate;
use crate::runner;

/// The plan, the reader that read its input's header (for the first pass over the rows), and the ledger.
fn inspect_plan(args: &InspectArgs) -> Result<(Plan, InputReader, Option<crate::ledger::Index>), Outcome> {
    let spec = JobSpec::load(&args.job.job)?;
    let extra = Overrides { sandbox: args.sandbox, ..Overrides::default() };
    let (plan, reader) = Plan::new(spec, &overrides(&args.job, args.output.clone(), &args.limits, extra))?;
    let index = Ledger::inspect(plan.ledger_path())?.map(|(_, index, report)| {
        if report.torn_tail.is_some() {
            tracing::warn!("the ledger ends with a torn line; the next run will drop it");
        }
        index
    });
    Ok((plan, reader, index))
}

pub(super) async fn validate(args: &InspectArgs, login: bool) -> Ended {
    let (plan, mut reader, index) = inspect_plan(args)?;
    let index = index.unwrap_or_default();
    let (survey, rejections) = runner::survey(&plan, &mut reader, &index);
    let to_send = survey.new + survey.uncertain;
    // The rates the run would start from: an earlier run's learned ones, if they apply.
    let (rates, learned) = crate::decide::starting_rates(plan.rates(), plan.rates_from_flags(), index.learned.as_ref());
    // The windows start as full as the ledger's recent requests leave them: a run right after another waits
    // for them, and the ETA says so.
    let throttle = crate::throttle::Throttle::new(&rates);
    throttle.seed(index.sent().map(crate::ledger::Time::system), std::time::SystemTime::now());
    let eta = throttle.eta(to_send).unwrap_or_default();
    let limits = if rates.is_empty() {
        "no limits".to_owned()
    } else {
        let list = rates.iter().map(Rate::to_string).collect::<Vec<_>>().join(", ");
        if learned { format!("{list} (learned from the server on an earlier run)") } else { list }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}: {} rows in {}", plan.name(), survey.rows, plan.input_path().display());
    let _ = writeln!(out, "  new:              {}", survey.new);
    if survey.failed_before > 0 {
        let _ = writeln!(out, "    (of which failed before: {})", survey.failed_before);
    }
    let _ = writeln!(out, "  already created:  {}", survey.existing);
    let _ = writeln!(out, "  uncertain:        {} (reconciled before any resend)", survey.uncertain);
    let _ = writeln!(out, "  conflicts:        {}", survey.conflict);
    if survey.unsettled > 0 {
        let _ = writeln!(
            out,
            "  unsettled:        {} (answers that could not be read: linkbatch settle)",
            survey.unsettled
        );
    }
    let lifecycle = plan.lifecycle().is_some();
    if lifecycle {
        let _ = writeln!(out, "  retired:          {} ([lifecycle]: never sent again)", survey.retired);
        let _ = writeln!(
            out,
            "  to retire now:    {} as the ledger last saw them (`linkbatch retire` reads the server first)",
            survey.held.due_line()
        );
    }
    let _ = writeln!(out, "  rejected:         {}", survey.rejected);
    let _ = writeln!(
        out,
        "  ETA under {limits}: {} for {}",
        crate::progress::human(eta),
        crate::terms::count(to_send, "request", "requests")
    );
    if let Some(cap) = plan.active_links() {
        let after =
            if lifecycle { format!(", {} after `run --retire`", survey.active_once_run(true)) } else { String::new() };
        let once_run = survey.active_once_run(false);
        let _ = writeln!(out, "  active links:     {once_run} once run{after} (the account holds at most {cap})");
    }
    let amounts = first_amounts(&plan);
    if !amounts.is_empty() {
        let _ = writeln!(out, "  amounts:          {} (as a customer sees them)", amounts.join(", "));
    }
    for e in rejections.iter().take(20) {
        let _ = writeln!(out, "  line {}: {}: {}", e.line, e.field, e.reason);
    }
    if rejections.len() > 20 {
        let _ = writeln!(out, "  … and {} more rejected rows", survey.rejected - 20);
    }
    drop(out);
    runner::check_cap(&plan, &survey, lifecycle).map_err(Outcome::refused)?;
    let unwritable = if plan.deliver().is_some() { validate_mail(&plan, args.sandbox, login).await? } else { 0 };
    Ok(Outcome::complete_if(survey.rejected + survey.conflict + unwritable == 0))
}

/// The first rows' amounts as the payment page shows them (`line 2: 1,200.00 THB`), so a unit or a column
/// read wrongly shows before anything is sent.
fn first_amounts(plan: &Plan) -> Vec<String> {
    let Ok(mut reader) = plan.reader() else { return Vec::new() };
    let mut amounts = Vec::new();
    while let Some(record) = reader.next_record() {
        let Ok(row) = record.map_err(|_| ()).and_then(|r| plan.row(&r).map_err(|_| ())) else { continue };
        let amount = row.request.amount();
        let shown = match row.request.currency() {
            Some(code) => crate::money::display(amount, code),
            None => format!("{amount} (the template's currency, smallest unit)"),
        };
        amounts.push(format!("line {}: {shown}", row.line));
        if amounts.len() == 3 {
            break;
        }
    }
    amounts
}

/// `validate` of a job with `[deliver]`: every row's message written (with stand-in link fields); with
/// `--login`, then the mail server reached and the login accepted (a dry run needs no mail credentials; a
/// `--sandbox` trial's mail goes to the sandbox). Sends nothing; returns how many rows' messages cannot be
/// written.
async fn validate_mail(plan: &Plan, sandbox: bool, login: bool) -> Result<u64, Outcome> {
    let refused = crate::delivery::unwritable(plan).map_err(usage)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "  messages that cannot be written: {}", refused.len());
    for (line, _, why) in refused.iter().take(20) {
        let _ = writeln!(out, "  line {line}: {why}");
    }
    drop(out);
    if sandbox {
        println!("  mail server:      the sandbox's catcher (--sandbox)");
    } else if login {
        let mut mailer = super::deliver::mailer(plan, None, None)?;
        crate::delivery::check_server(&mut mailer).await.map_err(|e| Outcome::aborted(anyhow::anyhow!("{e}")))?;
        println!("  mail server:      {} reached, login accepted", mailer.address());
    } else {
        println!("  mail server:      not contacted (validate --login logs in, sending nothing)");
    }
    Ok(refused.len() as u64)
}

pub(super) fn export(args: &InspectArgs) -> Ended {
    let (plan, _, index) = inspect_plan(args)?;
    let index = index.ok_or_else(|| {
        usage(format!("no ledger at {}: nothing has been run for this job yet", plan.ledger_path().display()))
    })?;
    let payments = index.has_payments();
    let (counts, totals) =
        runner::write_output(&plan, &index, Some(index.last_run), payments).map_err(Outcome::Refused)?;
    let totals = totals.map(|t| format!("; links: {}", t.line())).unwrap_or_default();
    println!("{}: {}{totals}; output {}", plan.name(), runner::counts_line(&counts), plan.output_path().display());
    Ok(Outcome::Complete)
}

pub(super) fn status(args: &InspectArgs) -> Ended {
    let (plan, mut reader, index) = inspect_plan(args)?;
    let index = index.unwrap_or_default();
    let (survey, _) = runner::survey(&plan, &mut reader, &index);
    let failed = survey.failed_before;
    // One table, its counts right-aligned, so the columns line up whatever the numbers' widths.
    let mut table: Vec<(&str, u64, &str)> = vec![
        ("created", survey.by_latest_run, "(by the latest run)"),
        ("existing", survey.existing - survey.by_latest_run, "(by earlier runs)"),
        ("uncertain", survey.uncertain, ""),
        ("failed", failed, ""),
        ("pending", survey.new - failed, ""),
        ("conflict", survey.conflict, ""),
    ];
    if survey.unsettled > 0 {
        table.push(("unsettled", survey.unsettled, "(answers that could not be read: linkbatch settle)"));
    }
    if plan.lifecycle().is_some() {
        table.push(("retired", survey.retired, ""));
    }
    table.push(("rejected", survey.rejected, ""));
    let width = table.iter().map(|(_, n, _)| n.to_string().len()).max().unwrap_or(1);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}: {} rows, ledger {}", plan.name(), survey.rows, plan.ledger_path().display());
    for (label, count, note) in table {
        let label = format!("{label}:");
        let line = format!("  {label:<10} {count:>width$}   {note}");
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if index.has_payments() {
        let _ = writeln!(out, "  payments:  {}", survey.payments.line());
    }
    if plan.deliver().is_some() {
        let asked = crate::decide::delivery::Asked::default();
        let reader = plan.reader()?;
        let due = crate::delivery::count_due(&plan, reader, &index, asked, std::time::SystemTime::now());
        let _ = writeln!(
            out,
            "  messages:  {} delivered, {} pending, {} uncertain, {} failed, {} rejected",
            due.settled.delivered, due.pending, due.settled.uncertain, due.settled.failed, due.rejected
        );
    }
    Ok(Outcome::Complete)
}

/// Whether the row can be settled: it has no link, a request of it is open, and a link id given is no
/// other key's.
fn settleable(index: &crate::ledger::Index, row: &crate::plan::PlannedRow, args: &SettleArgs) -> Result<(), Outcome> {
    let state = index.get(&row.key.id());
    if let Some(link) = state.and_then(|s| s.link) {
        return Err(usage(format!("`{}` already has link {}: nothing to settle", args.key, index.link_id(&link))));
    }
    if state.is_none_or(|s| s.unsettled().is_none() && s.open_since().is_none()) {
        return Err(usage(format!("`{}` has no open request: nothing to settle", args.key)));
    }
    if let Some(id) = args.link_id.as_deref().filter(|id| index.is_claimed(id)) {
        return Err(usage(format!("link {id} belongs to another key of this ledger")));
    }
    Ok(())
}

/// `settle`: the user's word on a row linkbatch left open (an answer it could not read, or one it could not
/// reconcile), recorded in the ledger as `settled`. The row must be in the input and open; a link id must
/// not belong to another key. Sends nothing.
pub(super) async fn settle(args: &SettleArgs) -> Ended {
    let (plan, _, _) = inspect_plan(&args.inspect)?;
    let Some(book) = Ledger::reopen(plan.ledger_path())? else {
        return Err(usage(format!("no ledger at {}: nothing to settle", plan.ledger_path().display())));
    };
    let mut reader = plan.reader()?;
    let mut found = None;
    crate::rows::for_each_row(&plan, &mut reader, None, |row| {
        if let Ok(row) = row
            && *row.key == *args.key
        {
            found = Some(row.clone());
        }
        found.is_none()
    });
    let row =
        found.ok_or_else(|| usage(format!("no row of {} has the key `{}`", plan.input_path().display(), args.key)))?;
    settleable(&book.index(), &row, args)?;
    let event = crate::ledger::Event::Settled {
        key: row.key.clone(),
        link_id: args.link_id.clone(),
        payment_uri: args.payment_uri.clone(),
        fingerprint: row.fingerprint(),
        at: crate::ledger::Time::now(),
    };
    book.record(event).await.map_err(Outcome::from)?;
    match &args.link_id {
        Some(id) => println!("{}: `{}` settled with link {id}; the next run reports it", plan.name(), row.key),
        None => println!("{}: `{}` settled as never made; the next run sends it", plan.name(), row.key),
    }
    Ok(Outcome::Complete)
}
