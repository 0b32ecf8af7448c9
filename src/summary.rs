//! The figures a run ends with, and the words that say them: the summary line (`Summary`), the payment
//! totals (`PaymentTotals`), what `[lifecycle]` ended (`Retirement`), the rows by status (`counts_line`).
//! The runner fills them in; it words none of them. Decides nothing but the exit status a summary means.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::decide::is_paid;
use crate::outcome::Outcome;
use crate::terms::{Payment, RetireReason, Status};

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Rows per output status.
    pub counts: BTreeMap<Status, u64>,
    /// Payment figures (`refresh` only).
    pub payments: Option<PaymentTotals>,
    /// The output CSV.
    pub output: PathBuf,
    /// Whether it was written (not when the input changed under the run).
    pub output_written: bool,
    /// Why the run stopped early (401, a ledger that cannot be written), if it did.
    pub aborted: Option<String>,
    /// Stopped by a signal.
    pub interrupted: bool,
    /// Requests sent (creates and lists).
    pub requests: u64,
    /// Rows that got their link this run (said when the output could not be written).
    pub made: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The rates kept, when a stricter server made them tighter than the job's (this run or an earlier one).
    pub pace: Option<String>,
    /// What `[lifecycle]` ended (`retire`, `run --retire`).
    pub retirement: Option<Retirement>,
}

impl Summary {
    /// How the run ended, for the exit status (docs/reference.md, "Exit codes").
    pub fn outcome(&self) -> Outcome {
        let count = |s| self.counts.get(&s).copied().unwrap_or(0);
        if let Some(reason) = &self.aborted {
            Outcome::Aborted(crate::told::run::aborted(reason))
        } else if self.interrupted {
            Outcome::Interrupted
        } else if count(Status::Failed) + count(Status::Rejected) + count(Status::Conflict) + count(Status::Pending) > 0
            || self.retirement.as_ref().is_some_and(|r| r.left > 0)
        {
            Outcome::Incomplete
        } else {
            Outcome::Complete
        }
    }

    /// One line for the end of a run.
    pub fn line(&self) -> String {
        if !self.output_written {
            return format!(
                "{} made in {:.1}s ({}), every one in the ledger; the output {} was not written",
                self.made,
                self.elapsed.as_secs_f64(),
                crate::terms::count(self.requests, "request", "requests"),
                self.output.display()
            );
        }
        let payments = self.payments.as_ref().map(|p| format!("; links: {}", p.line())).unwrap_or_default();
        let pace = self.pace.as_ref().map(|p| format!("; {p}")).unwrap_or_default();
        let retired = self.retirement.as_ref().map(|r| format!("; {}", r.line())).unwrap_or_default();
        format!(
            "{}: {} in {:.1}s ({}){retired}{payments}{pace}; output {}",
            crate::terms::count(self.counts.values().sum::<u64>(), "row", "rows"),
            counts_line(&self.counts),
            self.elapsed.as_secs_f64(),
            crate::terms::count(self.requests, "request", "requests"),
            self.output.display()
        )
    }
}

/// `60 created, 2 failed`, or `none`.
pub fn counts_line(counts: &BTreeMap<Status, u64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {}", s.name())).collect();
    if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
}

/// Payment figures of a `refresh`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentTotals {
    /// Links with at least one payment.
    pub paid: u64,
    /// Links with none.
    pub unpaid: u64,
    /// Links never read by a refresh.
    pub unknown: u64,
    /// Sum collected (net of refunds), per currency, in minor units.
    pub collected: BTreeMap<String, u64>,
    /// Sum refunded of it, per currency, in minor units.
    pub refunded: BTreeMap<String, u64>,
}

impl PaymentTotals {
    /// One more link, with the payment state the ledger holds for it (`None`: never read).
    pub fn add(&mut self, payment: Option<&Payment>) {
        match payment {
            None => self.unknown += 1,
            Some(p) if is_paid(p) => {
                self.paid += 1;
                *self.collected.entry(p.currency.clone()).or_default() += p.paid_amount;
                if p.refunded_amount > 0 {
                    *self.refunded.entry(p.currency.clone()).or_default() += p.refunded_amount;
                }
            }
            Some(_) => self.unpaid += 1,
        }
    }

    /// `12 paid, 3 unpaid; collected 1,500.00 THB, 2,000 JPY` (and `; refunded 100.00 THB` when any was).
    pub fn line(&self) -> String {
        let money = |sums: &BTreeMap<String, u64>| -> Vec<String> {
            sums.iter().map(|(code, minor)| crate::money::display(*minor, code)).collect()
        };
        let unknown = if self.unknown > 0 { format!(", {} not read", self.unknown) } else { String::new() };
        let collected = money(&self.collected);
        let collected = if collected.is_empty() { "nothing".to_owned() } else { collected.join(", ") };
        let refunded = money(&self.refunded);
        let refunded = if refunded.is_empty() { String::new() } else { format!("; refunded {}", refunded.join(", ")) };
        format!("{} paid, {} unpaid{unknown}; collected {collected}{refunded}", self.paid, self.unpaid)
    }
}

/// What a retire pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retirement {
    /// Live links read.
    pub read: u64,
    /// Links retired, by reason.
    pub retired: BTreeMap<RetireReason, u64>,
    /// Links due that are not retired yet (a refusal, a stop, a delete still unconfirmed): the next retire
    /// takes them up.
    pub left: u64,
}

impl Retirement {
    /// `retired 10 links (8 expired, 2 sold_out) of 40 read`, and what was left.
    pub fn line(&self) -> String {
        let total: u64 = self.retired.values().sum();
        let reasons: Vec<String> = self.retired.iter().map(|(r, n)| format!("{n} {}", r.name())).collect();
        let reasons = if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) };
        let left = if self.left > 0 {
            format!("; {} due but not retired yet (run retire again)", self.left)
        } else {
            String::new()
        };
        let links = if total == 1 { "link" } else { "links" };
        format!("retired {total} {links}{reasons} of {} read{left}", self.read)
    }
}

/// `3 (2 expired, 1 pruned)`, or `0`.
pub fn by_reason(total: u64, due: &BTreeMap<RetireReason, u64>) -> String {
    let reasons: Vec<String> = due.iter().map(|(r, n)| format!("{n} {}", r.name())).collect();
    if reasons.is_empty() { "0".to_owned() } else { format!("{total} ({})", reasons.join(", ")) }
}
