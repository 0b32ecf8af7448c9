//! Dispatch: the workers, and the steps `decide` chooses carried out in order (what they share is in
//! `shared`). Decides nothing itself, and sends no create without its `intent` on disk.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use crate::api::ApiError;
use crate::decide::{self, Abort, Answer, Creating, Replace, Step, Task};
use crate::ledger::{Event, Time};
use crate::plan::PlannedRow;
use crate::request::LinkRequest;
use crate::terms::{AnswerTo, OpenIntent};
use crate::told;
use crate::wait::{Attempt, Next, Retrying};

use super::reconcile::reconcile;
use super::shared::{BreakerTurn, Halt, Shared, with_retries};

/// One row and what to do with it.
pub(super) type Job = (PlannedRow, Task);

/// Starts `count` workers pulling jobs from one queue; the queue takes `2 × count` jobs before the producer
/// waits.
pub(super) fn spawn_workers(
    shared: &Arc<Shared>,
    count: usize,
) -> (tokio::sync::mpsc::Sender<Job>, Vec<tokio::task::JoinHandle<()>>) {
    let (queue, jobs) = tokio::sync::mpsc::channel::<Job>(count.saturating_mul(2).max(1));
    let jobs = Arc::new(tokio::sync::Mutex::new(jobs));
    let workers = (0..count)
        .map(|_| {
            let (shared, jobs) = (shared.clone(), jobs.clone());
            tokio::spawn(async move {
                loop {
                    let next = jobs.lock().await.recv().await;
                    let Some((row, task)) = next else { break };
                    if shared.stop.is_stopped() {
                        break;
                    }
                    work(&shared, row, task).await;
                }
            })
        })
        .collect();
    (queue, workers)
}

async fn work(shared: &Shared, row: PlannedRow, task: Task) {
    let link_id = |link| shared.index().link_id(&link).to_owned();
    match task {
        Task::Create { open, replace } => {
            if let Some(old) = replace.map(link_id)
                && !replaced(shared, &row, &old).await
            {
                shared.progress.failed();
                return;
            }
            create(shared, &row, open).await;
        }
        Task::Refresh(link) => refresh_one(shared, &row, &link_id(link)).await,
        Task::Update(link) => update(shared, &row, &link_id(link)).await,
    }
}

/// `--update-changed`: the link changed in place. `update_intent` first, then the PATCH (the same body is
/// safe to send again, so it is retried directly), then `updated`: a crash in between sends the PATCH again.
async fn update(shared: &Shared, row: &PlannedRow, link_id: &str) {
    let LinkRequest::Classic(request) = &row.request else { return };
    let (key, fingerprint) = (row.key.clone(), row.fingerprint());
    let intent = Event::UpdateIntent {
        key: key.clone(),
        link_id: link_id.to_owned(),
        fingerprint,
        at: crate::ledger::Time::now(),
    };
    if shared.record(intent).await.is_err() {
        return;
    }
    match with_retries(shared, || shared.client.update(link_id, &request.description, &request.metadata)).await {
        Ok(Some(_)) => {
            let updated =
                Event::Updated { key, link_id: link_id.to_owned(), fingerprint, at: crate::ledger::Time::now() };
            if shared.record(updated).await.is_ok() {
                told::row::updated(said(row), link_id);
                shared.progress.created();
            }
        }
        Ok(None) => {}
        Err(e) => {
            told::row::not_updated(said(row), link_id, &e);
            shared.progress.failed();
        }
    }
}

/// Carries out the steps of one row's create until it has a link, fails for good, or the run stops.
async fn create(shared: &Shared, row: &PlannedRow, open: Option<OpenIntent>) {
    let policy = shared.plan.retry();
    // A request still in the server's hands could land after a list that missed it: give it time.
    let grace = shared.plan.timeout().min(Duration::from_secs(2));
    let mut creating = Creating::new(&row.request, row.fingerprint(), open, policy.delays(), policy.attempts, grace);
    let mut step = creating.first();
    let mut breaker_turn: Option<BreakerTurn<'_>> = None;
    let mut waits = Retrying::new(&shared.stop, std::iter::empty());
    // The last answer was lost: it may have been a refusal the server counted and the breaker never heard.
    let mut unheard = false;
    loop {
        if shared.stop.is_stopped() {
            return;
        }
        // Kept from a send until the breaker hears its answer (done or failed), and no longer; a lost answer
        // keeps it through the reconciliation into the next send, so that no more than the breaker's limit of
        // creates whose answer could be a refusal are ever out at once.
        if !matches!(step, Step::Done | Step::Fail { .. }) && !unheard {
            breaker_turn = None;
        }
        step = match step {
            Step::Reconcile => match reconcile_step(shared, row, &mut creating, &mut unheard).await {
                Some(next) => next,
                None => return,
            },
            Step::Send => {
                if breaker_turn.is_none() {
                    breaker_turn = Some(shared.breaker_turn().await);
                }
                if shared.stop.is_stopped() {
                    // The breaker tripped while this create waited its turn.
                    return;
                }
                match send_step(shared, row, &mut creating, &mut unheard).await {
                    Some(next) => next,
                    None => return,
                }
            }
            // The create's delays are its own decision's (`Creating` holds the policy's backoff); the one
            // backoff loop carries the wait out.
            Step::Wait { delay, then } => match waits.after(Attempt::<()>::After(delay)).await {
                Next::Stopped => return,
                Next::Again | Next::Done(()) => then.into(),
            },
            Step::Done => {
                shared.breaker().success(breaker_turn.as_ref().map(|t| t.turn));
                shared.progress.created();
                return;
            }
            Step::Fail { code, message, abort } => {
                fail(shared, row, &code, &message).await;
                if abort {
                    shared.abort(Abort::Refused(told::run::refusal(&code, &message)));
                } else if let Some(reason) = shared.breaker().failure(&code) {
                    shared.abort(Abort::Breaker(reason));
                }
                return;
            }
            Step::LeaveOpen { reason } => {
                // Never resolved: as far as the breaker knows, a refusal.
                if unheard && counted_lost(shared) {
                    return;
                }
                // The intent stays open: the next run reconciles it.
                told::row::left_open(said(row), policy.attempts, &reason);
                shared.progress.failed();
                return;
            }
            Step::Abort { reason } => {
                shared.abort(Abort::Refused(reason));
                return;
            }
            Step::Unreadable { answer_to, status, missing, body } => {
                stop_unread(shared, row, answer_to, status, missing, body).await;
                return;
            }
        };
    }
}

/// The loop of one create, with the retry policy's backoff.
type CreateLoop<'r> = Creating<'r, backon::ExponentialBackoff>;

/// Looks for the link of the open request; the next step, or `None` when the run is stopping.
async fn reconcile_step(
    shared: &Shared,
    row: &PlannedRow,
    creating: &mut CreateLoop<'_>,
    unheard: &mut bool,
) -> Option<Step> {
    let intent = creating.open().cloned()?;
    match reconcile(shared, row, &intent).await {
        Ok(adopted) => {
            // A lost answer with no link behind it may have been a refusal: the breaker counts it, and the
            // place it kept goes back (the next send takes its turn afresh).
            if std::mem::take(unheard) && !adopted && counted_lost(shared) {
                return None;
            }
            Some(creating.after(Answer::Reconciled { adopted }))
        }
        Err(Halt::Api(e)) => {
            told::row::not_reconciled(said(row), &e);
            // The server went away with the answer: it is the outage's, not a refusal the breaker counts.
            if matches!(e, ApiError::Unreachable { .. }) {
                *unheard = false;
            }
            Some(creating.after(Answer::ReconcileFailed(&e)))
        }
        Err(Halt::Ledger(_) | Halt::Stopped) => None,
    }
}

/// Sends the create; the next step, or `None` when the run is stopping. `unheard` says whether its answer
/// was lost.
async fn send_step(
    shared: &Shared,
    row: &PlannedRow,
    creating: &mut CreateLoop<'_>,
    unheard: &mut bool,
) -> Option<Step> {
    *unheard = false;
    match send(shared, row).await {
        Ok(()) => Some(creating.after(Answer::Created)),
        Err((Halt::Api(e), sent)) => {
            told::row::create_failed(said(row), &e);
            *unheard = matches!(e, ApiError::Uncertain { .. });
            Some(creating.after(Answer::CreateFailed(&e, sent)))
        }
        Err((Halt::Ledger(_) | Halt::Stopped, _)) => None,
    }
}

/// A lost answer counted by the breaker; true when that tripped it (the run is then aborted).
fn counted_lost(shared: &Shared) -> bool {
    let tripped = shared.breaker().lost();
    tripped.map(|reason| shared.abort(Abort::Breaker(reason))).is_some()
}

/// An answer that cannot be read (docs/reference.md, "Fail closed"): kept in the ledger with its body, and the
/// run stopped with the row named and the way out. The row's intent stays open.
async fn stop_unread(
    shared: &Shared,
    row: &PlannedRow,
    answer_to: AnswerTo,
    status: u16,
    missing: String,
    body: String,
) {
    let reason = decide::unreadable_stop(row.line, &row.key, answer_to, status, &missing);
    told::row::unreadable(said(row), &reason);
    let event = Event::Unreadable {
        key: row.key.clone(),
        fingerprint: row.fingerprint(),
        answer_to,
        status,
        missing,
        body,
        at: crate::ledger::Time::now(),
    };
    if shared.record(event).await.is_ok() {
        shared.abort(Abort::Unreadable(reason));
    }
    shared.progress.failed();
}

/// How a row is named in what is said of it.
fn said(row: &PlannedRow) -> told::Row<'_> {
    told::Row { line: row.line, key: &row.key }
}

/// One create: the content shard (shared), the turn, the `intent` on disk, the request, and `created` on
/// disk when a link came back. A failure comes back with the time the request left.
async fn send(shared: &Shared, row: &PlannedRow) -> Result<(), (Halt, SystemTime)> {
    let _content = shared.content_lock(&row.request).read().await;
    // The turn first, then the intent: its time is the time the request leaves, and a run stopped while
    // waiting leaves no intent behind (the row stays pending, not uncertain). Lock order everywhere:
    // content shard, then probe, then throttle; nothing holding the probe waits for a shard.
    let Some(turn) = shared.turn().await else { return Err((Halt::Stopped, SystemTime::now())) };
    // The server's time: an uncertain request is looked for in a window of the server's clock.
    let at = Time::from(shared.server_now().await);
    let intent =
        Event::Intent { key: row.key.clone(), fingerprint: row.fingerprint(), at, request: row.request.clone() };
    shared.record(intent).await.map_err(|e| (e.into(), at.system()))?;
    let turn = shared.restamp(turn);
    let link = match shared.sent(turn, shared.client.create(&row.request)).await {
        Ok(link) => link,
        Err(error @ (ApiError::Unreachable { .. } | ApiError::Untrusted { .. })) => {
            // Not a byte of the request left: the row is pending again, not uncertain.
            let unsent = Event::Unsent { key: row.key.clone(), at, reason: error.to_string() };
            shared.record(unsent).await.map_err(|e| (e.into(), at.system()))?;
            return Err((error.into(), at.system()));
        }
        Err(error) => return Err((error.into(), at.system())),
    };
    let sent_metadata = matches!(&row.request, LinkRequest::Classic(r) if !r.metadata.is_empty());
    if sent_metadata && link.metadata.is_none() && !shared.metadata_unheld.swap(true, Ordering::Relaxed) {
        told::row::metadata_unheld();
    }
    let created = Event::Created {
        key: row.key.clone(),
        link_id: link.id,
        payment_uri: link.payment_uri,
        fingerprint: row.fingerprint(),
        at: crate::ledger::Time::now(),
    };
    shared.record(created).await.map_err(|e| (e.into(), at.system()))
}

/// `--replace-changed`: the old link of a changed row deleted, unless it was paid; true once it is gone.
async fn replaced(shared: &Shared, row: &PlannedRow, old: &str) -> bool {
    match replace_link(shared, row, old).await {
        Ok(done) => done,
        Err(e) => {
            told::row::not_replaced(said(row), old, &e);
            false
        }
    }
}

/// Every step is in the ledger before the next: a crash after `replace_intent` repeats the (idempotent)
/// delete; after `deleted` the row is simply new, and its new link is created exactly once like any other.
async fn replace_link(shared: &Shared, row: &PlannedRow, old: &str) -> Result<bool, Halt> {
    let payment = match super::pages::read_by_id(shared, old).await {
        Ok(Some(payment)) => Some(payment),
        Ok(None) => return Ok(false),
        // Already gone on the server: nothing left to check or delete.
        Err(ApiError::Permanent { status: 404, .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let (key, link_id, at) = (row.key.clone(), old.to_owned(), crate::ledger::Time::now());
    if let Replace::Refuse(reason) = decide::replace(old, payment.as_ref()) {
        told::row::replace_refused(said(row), &reason);
        shared.record(Event::ReplaceRefused { key, link_id, reason, at }).await?;
        return Ok(false);
    }
    let fingerprint = row.fingerprint();
    shared.record(Event::ReplaceIntent { key, link_id, fingerprint, at }).await?;
    if with_retries(shared, || shared.client.delete(old)).await?.is_none() {
        return Ok(false);
    }
    shared
        .record(Event::Deleted { key: row.key.clone(), link_id: old.to_owned(), at: crate::ledger::Time::now() })
        .await?;
    told::row::old_link_deleted(said(row), old);
    Ok(true)
}

/// `refresh`: reads one link's payment state into the ledger.
async fn refresh_one(shared: &Shared, row: &PlannedRow, link_id: &str) {
    match super::pages::read_by_id(shared, link_id).await {
        Ok(Some(payment)) => {
            let event = Event::Refreshed {
                key: row.key.clone(),
                link_id: link_id.to_owned(),
                payment,
                at: crate::ledger::Time::now(),
            };
            if shared.record(event).await.is_ok() {
                shared.progress.created();
            }
        }
        Ok(None) => {}
        Err(e) => {
            told::row::not_refreshed(said(row), link_id, &e);
            shared.progress.failed();
        }
    }
}

async fn fail(shared: &Shared, row: &PlannedRow, code: &str, message: &str) {
    told::row::failed(said(row), code, message);
    let _ = shared
        .record(Event::Failed {
            key: row.key.clone(),
            fingerprint: row.fingerprint(),
            code: code.to_owned(),
            message: message.to_owned(),
            at: crate::ledger::Time::now(),
        })
        .await;
    shared.progress.failed();
}
