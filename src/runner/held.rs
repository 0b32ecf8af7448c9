//! What a survey counts beyond its input's rows: the live links of the ledger whose rows are not in this
//! input (last month's, a product removed), which hold places under the account's cap all the same, and the
//! links `[lifecycle]` would retire now, judged by `decide::retire` on what the ledger last read of them
//! (their latest `refreshed` payments, their age since the ledger learned of them). `retire` reads the
//! server before it deletes anything; these counts only say what to expect.

use std::collections::{BTreeMap, HashSet};
use std::time::SystemTime;

use crate::decide::{self, RowNow, Seen};
use crate::digest::Digest;
use crate::ledger::{Index, KeyState, ReadBack};
use crate::plan::{Lifecycle, Plan, PlannedRow, RowError};
use crate::row_key::RowKey;
use crate::terms::{Payment, RetireReason};

/// The survey's view of the links it holds, row by row, then the ledger's rest.
pub(super) struct Holding<'a> {
    rules: Option<&'a Lifecycle>,
    /// The input's keys, when anything beyond the input counts (a cap or `[lifecycle]`).
    keys: Option<HashSet<Digest>>,
    /// Every row's key could be read: a key not among them has left the input.
    complete: bool,
    now: SystemTime,
}

/// Links beyond the input and links due, as [`Holding::finish`] counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// Live links of the ledger whose rows are not in this input and still hold a place.
    pub elsewhere: u64,
    /// Links `[lifecycle]` would retire now, by reason, as the ledger last saw them.
    pub due: BTreeMap<RetireReason, u64>,
}

impl Held {
    /// How many links a `retire` would free.
    pub fn due_total(&self) -> u64 {
        self.due.values().sum()
    }

    /// `3 (2 expired, 1 pruned)`.
    pub fn due_line(&self) -> String {
        crate::summary::by_reason(self.due_total(), &self.due)
    }
}

impl<'a> Holding<'a> {
    pub(super) fn new(plan: &'a Plan, now: SystemTime) -> Holding<'a> {
        let rules = plan.lifecycle();
        let beyond = rules.is_some() || plan.active_links().is_some();
        Holding { rules, keys: beyond.then(HashSet::new), complete: true, now }
    }

    /// A good row, with its key's state.
    pub(super) fn row(&mut self, row: &PlannedRow, state: Option<&KeyState>, held: &mut Held) {
        if let Some(keys) = &mut self.keys {
            keys.insert(row.key.id());
        }
        if let Some(state) = state.filter(|s| s.retired().is_none()) {
            let present = RowNow::Present(row.capacity);
            self.judge(state, row.request.multiple(), present, held);
        }
    }

    /// A rejected row: its key, if it could be read, is still in the input.
    pub(super) fn rejected(&mut self, error: &RowError) {
        let Some(keys) = &mut self.keys else { return };
        match &error.key {
            Some(key) => {
                keys.insert(RowKey::new(key.clone()).id());
            }
            None => self.complete = false,
        }
    }

    /// The ledger's live links whose rows were not in the input. Their requests are read back only where
    /// whether they are multiple-use matters (a paid link).
    pub(super) fn finish(mut self, plan: &Plan, index: &Index, held: &mut Held) {
        let Some(keys) = self.keys.take() else { return };
        let back = ReadBack::new(plan.ledger_path());
        let gone =
            if self.rules.is_some_and(|r| r.prune) && self.complete { RowNow::Gone } else { RowNow::Present(None) };
        for state in index.live_links().filter(|s| !keys.contains(&s.key())) {
            let paid = state.payment().is_some_and(|(p, _)| decide::is_paid(p));
            // A link whose request cannot be read back counts as single-use: paid, it holds no place and
            // no rule ends it.
            let multiple = paid && back.request_of(index, state).is_some_and(|r| r.multiple());
            held.elsewhere += u64::from(multiple || !paid);
            self.judge(state, multiple, gone, held);
        }
    }

    fn judge(&self, state: &KeyState, multiple: bool, row: RowNow, held: &mut Held) {
        let (Some(rules), Some(link)) = (self.rules, state.link) else { return };
        let unread = Payment::default();
        let payment = state.payment().map_or(&unread, |(p, _)| p);
        let age = self.now.duration_since(link.made().system()).ok();
        // An open `retire_intent`'s rule stands, as it does in `retire`.
        if let Some(reason) = state.retiring().or_else(|| decide::retire(rules, Seen { payment, multiple, age, row })) {
            *held.due.entry(reason).or_default() += 1;
        }
    }
}
