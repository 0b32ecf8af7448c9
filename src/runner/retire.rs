//! `retire` (and `run --retire`, before it creates): every live link of the ledger read as `refresh` reads
//! them (the list's pages, then by id what they missed, under the same throttle), then each one the job's
//! `[lifecycle]` ends deleted: `retire_intent` on disk before the `DELETE`, `retired` after. A delete whose
//! answer was lost is confirmed by a read before anything else; a link found deleted under an open
//! `retire_intent` is recorded `retired` without a second delete. Which links end is `decide::retire`'s.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use crate::api::ApiError;
use crate::api::shape::{Life, Listed};
use crate::decide::{self, AfterDelete, RowNow, Seen};
use crate::digest::Digest;
use crate::ledger::{Event, Time};
use crate::plan::Lifecycle;
use crate::row_key::RowKey;
use crate::rows::for_each_row;
use crate::summary::Retirement;
use crate::terms::{Payment, RetireReason};
use crate::told;
use crate::wait::{Attempt, Next, Retrying};

use super::pages::completed;
use super::reconcile::CLOCK_SKEW;
use super::shared::{Shared, with_retries};

/// A live link of the ledger.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub(super) key: RowKey,
    pub(super) link_id: String,
    /// A `retire_intent` with no `retired`: the rule that already chose to end it.
    retiring: Option<RetireReason>,
    /// Its row in the input now.
    row: RowNow,
}

/// The input's rows by key digest, with their capacities; `complete` is false when some row's key could
/// not be read (then no link counts as having left the input).
struct InInput {
    rows: HashMap<Digest, (RowKey, Option<u64>)>,
    complete: bool,
}

/// Reads every live link of the ledger and retires those `[lifecycle]` ends.
pub(super) async fn retire(shared: &Arc<Shared>) -> anyhow::Result<Retirement> {
    let Some(rules) = shared.plan.lifecycle().cloned() else { return Ok(Retirement::default()) };
    let input = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || in_input(&shared)).await??
    };
    if rules.prune && !input.complete {
        told::retire::prune_skipped();
    }
    let prune = rules.prune && input.complete;
    let mut candidates = candidates(shared, &input, prune)?;
    let mut done = Retirement::default();
    let due = read_all(shared, &rules, &mut candidates, &mut done).await;
    for (candidate, reason) in due {
        if shared.stop.is_stopped() {
            done.left += 1;
            continue;
        }
        match end(shared, &candidate, reason).await {
            Ok(true) => *done.retired.entry(reason).or_default() += 1,
            Ok(false) => done.left += 1,
            Err(e) => {
                told::retire::not_retired(&candidate.key, &candidate.link_id, &e);
                done.left += 1;
            }
        }
    }
    Ok(done)
}

/// The ledger's live links by id, each with its row (and so its capacity): what `listen` judges a payment
/// against. Reads the input once.
pub(super) fn watched(shared: &Shared) -> anyhow::Result<HashMap<String, Candidate>> {
    let input = in_input(shared)?;
    Ok(candidates(shared, &input, false)?.into_iter().map(|c| (c.link_id.clone(), c)).collect())
}

/// A reading `listen` recorded, judged by `[lifecycle]` at once: the link is ended now when a rule says so
/// (its capacity reached). The reason, once it is retired.
pub(super) async fn at_once(
    shared: &Shared,
    rules: &Lifecycle,
    candidate: &Candidate,
    payment: &Payment,
    life: &Life,
) -> Result<Option<RetireReason>, ApiError> {
    let now = shared.server_now().await;
    let age = life.created.and_then(|made| now.duration_since(made).ok());
    let seen = Seen { payment, multiple: life.multiple.unwrap_or(false), age, row: candidate.row };
    let Some(reason) = candidate.retiring.or_else(|| decide::retire(rules, seen)) else { return Ok(None) };
    Ok(end(shared, candidate, reason).await?.then_some(reason))
}

fn in_input(shared: &Shared) -> anyhow::Result<InInput> {
    let mut reader = shared.plan.reader()?;
    let mut found = InInput { rows: HashMap::new(), complete: true };
    for_each_row(&shared.plan, &mut reader, None, |row| {
        match row {
            Ok(row) => {
                found.rows.insert(row.key.id(), (row.key.clone(), row.capacity));
            }
            Err(e) => match &e.key {
                Some(key) => {
                    let key = RowKey::new(key.clone());
                    found.rows.insert(key.id(), (key, None));
                }
                None => found.complete = false,
            },
        }
        !shared.stop.is_stopped()
    });
    Ok(found)
}

/// The ledger's live links, each with its key's text (read back from the ledger for a row no longer in the
/// input) and its row.
fn candidates(shared: &Shared, input: &InInput, prune: bool) -> anyhow::Result<Vec<Candidate>> {
    let live: Vec<(Digest, String, Option<RetireReason>)> = {
        let index = shared.index();
        index.live_links().filter_map(|s| Some((s.key(), index.link_id(&s.link?).to_owned(), s.retiring()))).collect()
    };
    let gone: HashSet<Digest> = live.iter().map(|(id, ..)| *id).filter(|id| !input.rows.contains_key(id)).collect();
    let mut keys = if gone.is_empty() { HashMap::new() } else { shared.book.read_back().keys_of(&gone)? };
    let mut candidates = Vec::with_capacity(live.len());
    for (id, link_id, retiring) in live {
        let (key, row) = if let Some((key, capacity)) = input.rows.get(&id) {
            (key.clone(), RowNow::Present(*capacity))
        } else if let Some(key) = keys.remove(&id) {
            // Without the prune rule (or with rows whose keys could not be read), a row not in the input is
            // judged as if it were: only its age counts.
            (key, if prune { RowNow::Gone } else { RowNow::Present(None) })
        } else {
            told::retire::keyless(&link_id);
            continue;
        };
        candidates.push(Candidate { key, link_id, retiring, row });
    }
    Ok(candidates)
}

/// Reads every candidate's link (pages first, then by id), records what it read, and returns the links
/// to end with why. Links found deleted under an open `retire_intent` are recorded `retired` here.
async fn read_all(
    shared: &Shared,
    rules: &Lifecycle,
    candidates: &mut Vec<Candidate>,
    done: &mut Retirement,
) -> Vec<(Candidate, RetireReason)> {
    let mut wanted: HashMap<String, Candidate> = candidates.drain(..).map(|c| (c.link_id.clone(), c)).collect();
    let mut due = Vec::new();
    for listed in read_pages(shared, &wanted).await {
        if let Some(candidate) = wanted.remove(&listed.id) {
            judge(shared, rules, candidate, Ok(listed), done, &mut due).await;
        }
    }
    for (_, candidate) in wanted.drain() {
        if shared.stop.is_stopped() {
            break;
        }
        let read = with_retries(shared, || shared.client.link(&candidate.link_id)).await;
        match read {
            Ok(Some(listed)) => judge(shared, rules, candidate, Ok(listed), done, &mut due).await,
            Ok(None) => break,
            Err(e) => judge(shared, rules, candidate, Err(e), done, &mut due).await,
        }
    }
    due
}

/// The list's pages from the job's first request on: the links among `wanted`, their embedded charges.
/// A page that cannot be read ends the paging (the rest are read by id).
async fn read_pages(shared: &Shared, wanted: &HashMap<String, Candidate>) -> Vec<Listed> {
    let first = shared.index().sent().min();
    let since = first.and_then(|at| at.system().checked_sub(CLOCK_SKEW)).unwrap_or(SystemTime::UNIX_EPOCH);
    let (mut pager, mut found) = (crate::api::Pager::default(), Vec::new());
    let mut pages = 0;
    while let Some(offset) = pager.next().filter(|_| found.len() < wanted.len() && pages < wanted.len()) {
        let (listed, total) = match with_retries(shared, || shared.client.payment_page(since, offset, None)).await {
            Ok(Some(page)) => page,
            Ok(None) => break,
            Err(e) => {
                told::pages::list_failed(&e);
                break;
            }
        };
        pages += 1;
        pager.read(listed.len(), total);
        found.extend(listed.into_iter().filter(|l| wanted.contains_key(&l.id)));
    }
    found
}

/// One candidate's reading: recorded as `refreshed`, then judged by the rules.
async fn judge(
    shared: &Shared,
    rules: &Lifecycle,
    candidate: Candidate,
    read: Result<Listed, ApiError>,
    done: &mut Retirement,
    due: &mut Vec<(Candidate, RetireReason)>,
) {
    let (payment, life) = match read {
        Ok(listed) => {
            let life = listed.life.clone();
            match completed(shared, listed).await {
                Ok(Some(payment)) => (payment, life),
                Ok(None) => return,
                Err(e) => return unread(&candidate, &e, done),
            }
        }
        // A link gone from the server (404): deleted, by this job or by hand.
        Err(ApiError::Permanent { status: 404, .. }) => (Payment::default(), Life { deleted: true, ..Life::default() }),
        Err(e) => return unread(&candidate, &e, done),
    };
    done.read += 1;
    if life.deleted {
        // The delete of an earlier retire reached the server: recorded now, never sent again.
        if let Some(reason) = candidate.retiring {
            if retired(shared, &candidate, reason).await {
                *done.retired.entry(reason).or_default() += 1;
            }
        } else {
            told::retire::deleted_outside(&candidate.key, &candidate.link_id);
        }
        return;
    }
    let event = Event::Refreshed {
        key: candidate.key.clone(),
        link_id: candidate.link_id.clone(),
        payment: payment.clone(),
        at: Time::now(),
    };
    if shared.record(event).await.is_err() {
        return;
    }
    let now = shared.server_now().await;
    let age = life.created.and_then(|made| now.duration_since(made).ok());
    let seen = Seen { payment: &payment, multiple: life.multiple.unwrap_or(false), age, row: candidate.row };
    // An open intent's rule stands: its link is ended once, whatever the readings say now.
    if let Some(reason) = candidate.retiring.or_else(|| decide::retire(rules, seen)) {
        due.push((candidate, reason));
    }
}

fn unread(candidate: &Candidate, error: &ApiError, done: &mut Retirement) {
    told::retire::unread(&candidate.key, &candidate.link_id, error);
    if candidate.retiring.is_some() {
        done.left += 1;
    }
}

/// Ends one link: `retire_intent` (unless one is open already), the delete, then `retired`. `Ok(false)`
/// when the link is left for the next retire (a stop, a refusal, a delete still unconfirmed).
async fn end(shared: &Shared, candidate: &Candidate, reason: RetireReason) -> Result<bool, ApiError> {
    if candidate.retiring.is_none() {
        let intent = Event::RetireIntent {
            key: candidate.key.clone(),
            link_id: candidate.link_id.clone(),
            reason,
            at: Time::now(),
        };
        if shared.record(intent).await.is_err() {
            return Ok(false);
        }
    }
    let mut retrying = Retrying::new(&shared.stop, shared.plan.retry().delays());
    loop {
        let Some(turn) = shared.turn().await else { return Ok(false) };
        let answer = shared.sent(turn, shared.client.delete(&candidate.link_id)).await;
        match decide::after_delete(&answer) {
            AfterDelete::Retired => return Ok(retired(shared, candidate, reason).await),
            AfterDelete::GiveUp => return answer.map(|()| false),
            AfterDelete::Confirm => match with_retries(shared, || shared.client.link(&candidate.link_id)).await {
                Ok(Some(listed)) if listed.life.deleted => return Ok(retired(shared, candidate, reason).await),
                Err(ApiError::Permanent { status: 404, .. }) => return Ok(retired(shared, candidate, reason).await),
                // Not deleted: the delete never took effect, and is sent again below.
                Ok(Some(_)) => {}
                Ok(None) => return Ok(false),
                Err(e) => return Err(e),
            },
            AfterDelete::Again => {}
        }
        let error = answer.err().unwrap_or(ApiError::Uncertain { reason: told::retire::NOT_DELETED.into() });
        match retrying.after(Attempt::after(decide::read_again(&error), error)).await {
            Next::Again => {}
            Next::Done(error) => return Err(error),
            Next::Stopped => return Ok(false),
        }
    }
}

/// Records `retired`; false when the ledger could not take it (the run is aborted then).
async fn retired(shared: &Shared, candidate: &Candidate, reason: RetireReason) -> bool {
    let event =
        Event::Retired { key: candidate.key.clone(), link_id: candidate.link_id.clone(), reason, at: Time::now() };
    let ok = shared.record(event).await.is_ok();
    if ok {
        told::retire::retired(&candidate.key, &candidate.link_id, reason.name());
    }
    ok
}
