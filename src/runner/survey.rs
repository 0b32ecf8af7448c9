//! The survey: the counts of what a run would do, read from the rows and the ledger, the account's cap
//! checked against them, and the output drafted on the way while every row is settled. Above `rows` and
//! `report`, which it uses. Never sends a request and never writes the ledger.

use std::collections::BTreeSet;

use crate::decide::{Disposition, Task, Work, disposition};
use crate::input::InputReader;
use crate::ledger::{Index, KeyState};
use crate::plan::{Plan, PlannedRow, RowError};
use crate::request::LinkRequest;
use crate::told;

use super::held::{Held, Holding};
use super::pages::Wanted;
use super::report::OutputPass;
use crate::rows::for_each_row;
use crate::summary::PaymentTotals;

/// Counts of a survey: what a run would do, with no request sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    /// Rows read (good and bad).
    pub rows: u64,
    /// Rows to send.
    pub new: u64,
    /// Rows whose link exists.
    pub existing: u64,
    /// Of those, links the latest run made (the rest are from earlier runs).
    pub by_latest_run: u64,
    /// Rows whose outcome is unknown (reconciled first on the next run).
    pub uncertain: u64,
    /// Rows that failed on an earlier run (sent again).
    pub failed_before: u64,
    /// Rows changed since their link was made.
    pub conflict: u64,
    /// Rows whose create's answer could not be read: waiting to be settled by hand.
    pub unsettled: u64,
    /// Active links the job would hold once run: multiple-use links, and single-use ones not known to be used
    /// (the Links guide: the account's cap counts these).
    pub active_links: u64,
    /// Rows whose link `[lifecycle]` ended.
    pub retired: u64,
    /// Links beyond the input's rows that hold places, and those `[lifecycle]` would retire now (counted
    /// when the job has a cap or `[lifecycle]`).
    pub held: Held,
    /// Bad rows.
    pub rejected: u64,
    /// Links+ (team, template) pairs the rows to send use, checked before the first create.
    pub templates: BTreeSet<(u64, u64)>,
    /// For a refresh by pages: the links that want reading, gathered on the survey's pass so the refresh
    /// reads the input no second time for them.
    pub wanted: Wanted,
    /// The payments the ledger holds for the rows whose link exists (`status` says them); totalled only when
    /// the ledger holds any reading.
    pub payments: PaymentTotals,
}

impl Survey {
    /// Active links the job would hold once run: its rows' and the ledger's others', less those a retire
    /// first (`run --retire`) frees.
    pub fn active_once_run(&self, retire_first: bool) -> u64 {
        let freed = if retire_first { self.held.due_total() } else { 0 };
        (self.active_links + self.held.elsewhere).saturating_sub(freed)
    }
}

/// The account's cap (`[limits] active_links`): a job that would hold more active links than the account
/// may is refused before anything is sent, with the numbers, instead of failing row by row past the cap.
/// The links of the job's earlier inputs count too; with `retire_first`, not those `[lifecycle]` ends first.
pub fn check_cap(plan: &Plan, survey: &Survey, retire_first: bool) -> Result<(), anyhow::Error> {
    let held = survey.active_once_run(retire_first);
    let freed = (retire_first && survey.held.due_total() > 0).then(|| survey.held.due_total());
    match plan.active_links() {
        Some(cap) if held > cap => Err(told::run::over_cap(held, cap, freed, survey.held.elsewhere)),
        _ => Ok(()),
    }
}

/// Counts what a run would do, without sending anything.
pub fn survey(plan: &Plan, reader: &mut InputReader, index: &Index) -> (Survey, Vec<RowError>) {
    let (survey, rejections, _) = survey_drafting(plan, reader, index, None, None);
    (survey, rejections)
}

/// [`survey`], writing the output on the way for as long as every row is settled (its link exists, or it
/// conflicts, or it is rejected). When the whole input is settled the run has nothing to send, and the
/// draft (as of ledger line `index.lines`) is its output: a finished job run again reads its input once.
///
/// `pages`: for a refresh by pages, the ledger line its reading starts after (`decide::task`'s
/// `refresh_since`): the links it would read are gathered into `Survey::wanted`.
pub fn survey_drafting(
    plan: &Plan,
    reader: &mut InputReader,
    index: &Index,
    mut draft: Option<OutputPass>,
    pages: Option<u64>,
) -> (Survey, Vec<RowError>, Option<OutputPass>) {
    let mut survey = Survey::default();
    let mut rejections = Vec::new();
    let mut holding = Holding::new(plan, std::time::SystemTime::now());
    // Only a ledger that holds readings has payments to total (`status` says them then, and only then).
    let payments = index.has_payments();
    for_each_row(plan, reader, Some(index), |row| {
        survey.rows += 1;
        let disposition = match &row {
            Err(e) => {
                holding.rejected(e);
                survey.rejected += 1;
                if rejections.len() < 1000 {
                    rejections.push(e.clone());
                }
                None
            }
            Ok(row) => {
                let state = index.get(&row.key.id());
                holding.row(row, state, &mut survey.held);
                if let Some(since) = pages {
                    want(row, state, index, since, &mut survey.wanted);
                }
                let disposition = disposition(row, state);
                // A single-use link stops counting against the account's cap once paid.
                let paid = || state.and_then(|s| s.payment()).is_some_and(|(p, _)| crate::decide::is_paid(p));
                // A retired link is deleted: it holds no place.
                let holds = !matches!(disposition, Disposition::Retired(_));
                survey.active_links += u64::from(holds && (row.request.multiple() || !paid()));
                if let (Disposition::New | Disposition::Uncertain(_), LinkRequest::Plus(r)) =
                    (&disposition, &row.request)
                {
                    survey.templates.insert((r.team_id, r.template_id));
                }
                match &disposition {
                    Disposition::Existing(link) => {
                        survey.existing += 1;
                        if payments {
                            survey.payments.add(state.and_then(|s| s.payment()).map(|(p, _)| p));
                        }
                        survey.by_latest_run += u64::from(index.last_run > 0 && link.line() > index.last_run);
                    }
                    Disposition::Conflict(_) => survey.conflict += 1,
                    Disposition::Unsettled => survey.unsettled += 1,
                    Disposition::Retired(_) => survey.retired += 1,
                    Disposition::Uncertain(_) => {
                        survey.uncertain += 1;
                        // Something to send: the output is written after the run. Dropping the draft
                        // removes its file.
                        draft = None;
                    }
                    Disposition::New => {
                        survey.new += 1;
                        draft = None;
                        if index.get(&row.key.id()).is_some_and(|s| s.failed().is_some()) {
                            survey.failed_before += 1;
                        }
                    }
                }
                Some(disposition)
            }
        };
        // A draft that cannot be written is dropped: the run writes the output afresh at its end.
        if let Some(pass) = &mut draft
            && let Err(e) = pass.row(row, disposition, index)
        {
            told::run::draft_dropped(&e);
            draft = None;
        }
        true
    });
    holding.finish(plan, index, &mut survey.held);
    (survey, rejections, draft)
}

/// The row's link, if a refresh by pages would read it (`decide::task`'s rule).
fn want(row: &PlannedRow, state: Option<&KeyState>, index: &Index, since: u64, wanted: &mut Wanted) {
    let Some(Task::Refresh(link)) =
        crate::decide::task(Work::Refresh { by_id: false, events: false }, row, state, since, None)
    else {
        return;
    };
    let team = match &row.request {
        LinkRequest::Plus(request) => Some(request.team_id),
        LinkRequest::Classic(_) => None,
    };
    wanted.entry(team).or_default().insert(index.link_id(&link).to_owned(), row.key.clone());
}
