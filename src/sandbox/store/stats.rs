//! What the sandbox reports of itself (`GET /__sandbox/stats`): links held, duplicates, requests and
//! windows, the figures tests assert on from the server's side. Reads the store; changes nothing.

use std::collections::{BTreeMap, HashMap};

use super::Store;

impl Store {
    /// The figures a test asserts on, from the server's side.
    pub(crate) fn stats(&self) -> Stats {
        let mut identical: HashMap<(&str, &str, &str, u64, &str), usize> = HashMap::new();
        let mut per_title: BTreeMap<String, usize> = BTreeMap::new();
        let (mut classic, mut plus, mut deleted) = (0, 0, 0);
        let mut deletes = Deletes::default();
        for account in self.accounts.values() {
            for link in &account.links {
                deletes.requests += u64::from(link.delete_requests);
                deletes.asked_twice += usize::from(link.delete_requests > 1);
                deletes.paid_single_use += usize::from(link.deleted && !link.multiple && !link.charges.is_empty());
                deletes.active += usize::from(link.is_active());
                if link.deleted {
                    deleted += 1;
                    continue;
                }
                classic += 1;
                *identical.entry(("links", &link.title, &link.description, link.amount, link.currency)).or_default() +=
                    1;
                *per_title.entry(link.title.clone()).or_default() += 1;
            }
            for link in &account.plus {
                plus += 1;
                *identical.entry(("links_plus", &link.name, "", link.amount, link.currency)).or_default() += 1;
                *per_title.entry(link.name.clone()).or_default() += 1;
            }
        }
        let windows = self
            .limits
            .iter()
            .enumerate()
            .map(|(i, rate)| WindowStats {
                limit: rate.to_string(),
                max_in_window: self.accounts.values().map(|a| a.windows[i].max_seen).max().unwrap_or(0),
            })
            .collect();
        Stats {
            links_held: classic + plus,
            classic_links: classic,
            plus_links: plus,
            deleted_links: deleted,
            creates: self.counters.creates,
            payments: self.counters.payments,
            refunds: self.counters.refunds,
            updates: self.counters.updates,
            requests: self.counters.by_status.clone(),
            rate_limited: self.counters.rate_limited,
            faults: self.counters.faults.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            windows,
            identical_groups: identical.values().filter(|&&n| n > 1).count(),
            identical_extra: identical.values().map(|&n| n.saturating_sub(1)).sum(),
            links_per_title: per_title,
            mail: 0,
            deletes,
        }
    }
}

/// The largest number of requests one key sent within any window of one configured limit.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct WindowStats {
    /// The limit, as written (`60/min`).
    pub limit: String,
    /// Most requests (admitted or refused) from one key inside any one window of that length.
    pub max_in_window: usize,
}

/// `GET /__sandbox/stats`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Links that exist and are not deleted, both APIs.
    pub links_held: usize,
    /// Classic links held.
    pub classic_links: usize,
    /// Links+ links held.
    pub plus_links: usize,
    /// Classic links deleted.
    pub deleted_links: usize,
    /// Create requests that stored a link (including those whose answer a fault then lost).
    pub creates: u64,
    /// Simulated payments.
    pub payments: u64,
    /// Simulated refunds.
    #[serde(default)]
    pub refunds: u64,
    /// Links changed in place (`PATCH /links/{id}`).
    #[serde(default)]
    pub updates: u64,
    /// Answers by HTTP status, plus `dropped` for connections closed without one.
    pub requests: BTreeMap<String, u64>,
    /// 429s served because a key was over a window (not counting the `429` fault).
    pub rate_limited: u64,
    /// Faults served, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Per configured limit, the busiest window seen.
    pub windows: Vec<WindowStats>,
    /// Groups of two or more links with identical (title, description, amount, currency).
    pub identical_groups: usize,
    /// Links beyond the first in each such group.
    pub identical_extra: usize,
    /// Links held per title (Links+: per name).
    pub links_per_title: BTreeMap<String, usize>,
    /// Messages the mail catcher kept.
    #[serde(default)]
    pub mail: u64,
    /// What `DELETE /links/{id}` did, and the active links the cap counts.
    #[serde(default)]
    pub deletes: Deletes,
}

/// The classic links' deletes, as the server saw them.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Deletes {
    /// `DELETE` requests that reached a link of the store (one for a link already gone counts too).
    pub requests: u64,
    /// Links that were asked to be deleted more than once.
    pub asked_twice: usize,
    /// Deleted single-use links that had been paid.
    pub paid_single_use: usize,
    /// Links the account's cap counts now (`--active-links`): multiple-use, or single-use and unpaid.
    pub active: usize,
}
