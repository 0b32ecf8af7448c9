//! Dispatch: the workers, what they share (throttle, ledger, index, locks, the stop), and the steps
//! `decide` chooses carried out in order. Decides nothing itself, and sends no create without its
//! `intent` on disk.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, RwLock};

use crate::api::{ApiError, Client};
use crate::decide::{self, Answer, Creating, Replace, Step, Task};
use crate::ledger::{Event, Index, Ledger, LedgerError, OpenIntent};
use crate::plan::{LinkRequest, Plan, PlannedRow};
use crate::progress::Progress;
use crate::throttle::{Lesson, Throttle};

use super::reconcile::reconcile;

/// Signals that stop a run: the first stops dispatch, the caller handles a second.
#[derive(Debug, Default)]
pub struct Stop {
    stopped: AtomicBool,
    notify: Notify,
}

impl Stop {
    /// Asks the run to stop dispatching.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether a stop was asked.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Sleeps `wait`, or less if a stop comes first; false when stopped.
    async fn sleep(&self, wait: Duration) -> bool {
        if self.is_stopped() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => !self.is_stopped(),
            () = self.notify.notified() => false,
        }
    }
}

/// Why a step could not be carried out.
#[derive(Debug, thiserror::Error)]
pub(super) enum Halt {
    /// The server's answer, classified.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The ledger could not be written: the run is aborted already.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The run is stopping.
    #[error("the run is stopping")]
    Stopped,
}

/// What the workers share.
pub(super) struct Shared {
    pub(super) plan: Plan,
    pub(super) client: Client,
    pub(super) throttle: Throttle,
    pub(super) ledger: Ledger,
    pub(super) index: Mutex<Index>,
    /// Creates hold a shard for reading, reconciliation for writing: a reconcile never runs while a create
    /// of the same content is in flight, so it can never adopt a link another key is about to record.
    content: Vec<RwLock<()>>,
    pub(super) stop: Arc<Stop>,
    pub(super) aborted: Mutex<Option<String>>,
    pub(super) requests: AtomicU64,
    pub(super) progress: Progress,
    /// Until one request has been answered without a fatal error (a wrong key's 401), requests go one at
    /// a time: a wrong key costs one request, not one per worker.
    probe: tokio::sync::Mutex<()>,
    verified: AtomicBool,
    /// Stops dispatch when every row gets the same refusal.
    breaker: Mutex<decide::Breaker>,
    /// Creates hold it for reading (at most the breaker's limit at once) from their send until the breaker
    /// has heard their answer; after a refusal a create takes it for writing, alone. So the refusals of one
    /// code that reach the server never pass the breaker's limit, whatever the concurrency.
    refusals: tokio::sync::RwLock<()>,
    /// Said once: the server answers links without the metadata they were made with.
    metadata_unheld: AtomicBool,
    /// The rates the run started from were learned by an earlier run.
    pub(super) learned_before: bool,
    /// Windows a 429 showed the server holds tighter, in the order learned.
    pub(super) learned: Mutex<Vec<crate::throttle::Learned>>,
}

/// Held by a create from its send until the breaker has heard its answer (see `Shared::refusals`).
struct BreakerTurn<'a> {
    /// Its place in sending order.
    turn: u64,
    _place: Place<'a>,
}

/// Beside other creates, or alone.
enum Place<'a> {
    Shared(#[allow(dead_code, reason = "held, never read")] tokio::sync::RwLockReadGuard<'a, ()>),
    Alone(#[allow(dead_code, reason = "held, never read")] tokio::sync::RwLockWriteGuard<'a, ()>),
}

/// Permission to send one request: its place under the limits, and the probe while the key is unproven.
pub(super) struct Turn<'a> {
    _probe: Option<tokio::sync::MutexGuard<'a, ()>>,
    /// When the throttle counted it.
    at: std::time::Instant,
}

impl Shared {
    /// Everything a run's workers share.
    pub(super) fn new(
        plan: Plan,
        client: Client,
        ledger: Ledger,
        index: Index,
        stop: Arc<Stop>,
        progress: Progress,
    ) -> Shared {
        let (rates, learned_before) =
            decide::starting_rates(plan.rates(), plan.rates_from_flags(), index.learned.as_ref());
        if learned_before {
            tracing::warn!(
                "keeping to {}, learned from a 429 on an earlier run (the job says {}; --limit starts afresh)",
                rates_text(&rates),
                rates_text(plan.rates())
            );
        }
        let throttle = Throttle::new(&rates);
        throttle.seed(index.sent());
        let limit = plan.retry().breaker;
        let breaker = Mutex::new(decide::Breaker::new(limit));
        Shared {
            refusals: tokio::sync::RwLock::with_max_readers((), limit),
            plan,
            client,
            throttle,
            ledger,
            index: Mutex::new(index),
            content: (0..64).map(|_| RwLock::new(())).collect(),
            stop,
            aborted: Mutex::new(None),
            requests: AtomicU64::new(0),
            progress,
            probe: tokio::sync::Mutex::new(()),
            verified: AtomicBool::new(false),
            breaker,
            metadata_unheld: AtomicBool::new(false),
            learned_before,
            learned: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        // Updates are single inserts; a panic elsewhere cannot leave the index half-written.
        self.index.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A create's place beside the others: shared while the breaker counts no refusal, alone after one.
    /// The turn is taken once the place is had, so a create that waited for it is judged by what the
    /// breaker has heard by then.
    async fn breaker_turn(&self) -> BreakerTurn<'_> {
        let shared = self.refusals.read().await;
        let (turn, alone) = self.breaker().turn();
        if !alone {
            return BreakerTurn { turn, _place: Place::Shared(shared) };
        }
        drop(shared);
        let alone = self.refusals.write().await;
        let (turn, _) = self.breaker().turn();
        BreakerTurn { turn, _place: Place::Alone(alone) }
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, decide::Breaker> {
        // A counter and a code: a panic elsewhere cannot leave them half-written.
        self.breaker.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn content_lock(&self, request: &LinkRequest) -> &RwLock<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (request.title(), request.amount()).hash(&mut hasher);
        // The remainder is below the shard count, a small usize.
        let shard = usize::try_from(hasher.finish() % self.content.len() as u64).unwrap_or_default();
        &self.content[shard]
    }

    /// Appends an event to the ledger and the index. A ledger that cannot be written makes every further
    /// request unsafe: the run is aborted before the error is returned.
    pub(super) async fn record(&self, event: Event) -> Result<(), LedgerError> {
        match self.ledger.append(&event).await {
            Ok(offset) => {
                self.index().record(event, offset);
                Ok(())
            }
            Err(e) => {
                self.abort(e.to_string());
                Err(e)
            }
        }
    }

    pub(super) fn abort(&self, reason: String) {
        let mut aborted = self.aborted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        aborted.get_or_insert(reason);
        self.stop.stop();
    }

    /// Waits for the probe (while the key is unproven) and a place under the limits; `None` once stopped.
    pub(super) async fn turn(&self) -> Option<Turn<'_>> {
        let probe = if self.verified.load(Ordering::SeqCst) {
            None
        } else {
            let guard = self.probe.lock().await;
            (!self.verified.load(Ordering::SeqCst)).then_some(guard)
        };
        if self.stop.is_stopped() {
            return None;
        }
        let at = self.throttle.acquire().await;
        (!self.stop.is_stopped()).then_some(Turn { _probe: probe, at })
    }

    /// Sends a request that has its turn, counting it; a 429 pauses every worker, not only this one.
    pub(super) async fn sent<T>(
        &self,
        turn: Turn<'_>,
        send: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let result = send.await;
        match &result {
            // Abort before the turn is released: no other worker may send with a key the server refused.
            Err(ApiError::Fatal { code, message }) => self.abort(format!("{code}: {message}")),
            Err(ApiError::Retryable { rate_limited: true, retry_after, .. }) => {
                self.verified.store(true, Ordering::SeqCst);
                self.throttle.pause(retry_after.unwrap_or(self.plan.retry().base_delay));
                match self.throttle.learn(turn.at, *retry_after) {
                    Some(Lesson::Window(learned)) => self.keep_learned(learned).await,
                    Some(Lesson::Margin(extra)) => tracing::info!(
                        "a 429 no window explains: the server saw requests closer together than they left; \
                         every window keeps {extra:?} more margin from now on"
                    ),
                    None => {}
                }
            }
            _ => self.verified.store(true, Ordering::SeqCst),
        }
        result
    }

    /// A window the server holds tighter: said, kept for the summary, and recorded for the next run. A
    /// ledger that cannot take it aborts the run like any other ledger failure.
    async fn keep_learned(&self, learned: crate::throttle::Learned) {
        let rates = self.throttle.rates();
        tracing::warn!(
            "a 429 although every window was kept: the server holds {} as {}; keeping to {} from now on",
            learned.was,
            learned.now,
            rates_text(&rates)
        );
        self.learned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(learned);
        let event = Event::Learned {
            job_rates: self.plan.rates().iter().map(ToString::to_string).collect(),
            rates: rates.iter().map(ToString::to_string).collect(),
            was: learned.was.to_string(),
            now: learned.now.to_string(),
            at: crate::ledger::now(),
        };
        let _ = self.record(event).await;
    }
}

/// Rates as a user writes them: `10/s 1000/h`.
pub(super) fn rates_text(rates: &[crate::rate::Rate]) -> String {
    rates.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

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
    let (key, fingerprint) = (row.key.clone(), row.fingerprint().to_string());
    let intent = Event::UpdateIntent {
        key: key.clone(),
        link_id: link_id.to_owned(),
        fingerprint: fingerprint.clone(),
        at: crate::ledger::now(),
    };
    if shared.record(intent).await.is_err() {
        return;
    }
    match with_retries(shared, || shared.client.update(link_id, &request.description, &request.metadata)).await {
        Ok(Some(_)) => {
            let updated = Event::Updated { key, link_id: link_id.to_owned(), fingerprint, at: crate::ledger::now() };
            if shared.record(updated).await.is_ok() {
                tracing::info!(line = row.line, key = %row.key, link = %link_id, "changed the link in place (description, metadata)");
                shared.progress.created();
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(line = row.line, key = %row.key, link = %link_id, "could not change the link in place: {e}");
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
    loop {
        if shared.stop.is_stopped() {
            return;
        }
        // Kept from a send until the breaker hears its answer (done or failed), and no longer.
        if !matches!(step, Step::Done | Step::Fail { .. }) {
            breaker_turn = None;
        }
        step = match step {
            Step::Reconcile => {
                let Some(intent) = creating.open().cloned() else { return };
                match reconcile(shared, row, &intent).await {
                    Ok(adopted) => creating.after(Answer::Reconciled { adopted }),
                    Err(Halt::Api(e)) => {
                        tracing::warn!(line = row.line, key = %row.key, "could not reconcile yet: {e}");
                        creating.after(Answer::ReconcileFailed(&e))
                    }
                    Err(Halt::Ledger(_) | Halt::Stopped) => return,
                }
            }
            Step::Send => {
                breaker_turn = Some(shared.breaker_turn().await);
                if shared.stop.is_stopped() {
                    // The breaker tripped while this create waited its turn.
                    return;
                }
                match send(shared, row).await {
                    Ok(()) => creating.after(Answer::Created),
                    Err((Halt::Api(e), sent)) => {
                        log_failure(row, &e);
                        creating.after(Answer::CreateFailed(&e, sent))
                    }
                    Err((Halt::Ledger(_) | Halt::Stopped, _)) => return,
                }
            }
            Step::Wait { delay, then } if shared.stop.sleep(delay).await => then.into(),
            Step::Wait { .. } => return,
            Step::Done => {
                shared.breaker().success(breaker_turn.as_ref().map(|t| t.turn));
                shared.progress.created();
                return;
            }
            Step::Fail { code, message, abort } => {
                fail(shared, row, &code, &message).await;
                if abort {
                    shared.abort(format!("{code}: {message}"));
                } else if code != decide::codes::RETRIES_EXHAUSTED
                    && let Some(reason) = shared.breaker().failure(&code)
                {
                    shared.abort(reason);
                }
                return;
            }
            Step::LeaveOpen { reason } => {
                // The intent stays open: the next run reconciles it.
                tracing::warn!(line = row.line, key = %row.key, "giving up after {} attempts: {reason}", policy.attempts);
                shared.progress.failed();
                return;
            }
            Step::Abort { reason } => {
                shared.abort(reason);
                return;
            }
            Step::Unreadable { create, status, missing, body } => {
                stop_unread(shared, row, create, status, missing, body).await;
                return;
            }
        };
    }
}

/// An answer that cannot be read (SPEC section 3, fail closed): kept in the ledger with its body, and the
/// run stopped with the row named and the way out. The row's intent stays open.
async fn stop_unread(shared: &Shared, row: &PlannedRow, create: bool, status: u16, missing: String, body: String) {
    let answer_to = if create { "create" } else { "list" };
    let reason = format!(
        "line {} (key `{}`): the server answered the {answer_to} with HTTP {status} and no readable {missing}. \
         Nothing was sent again and the answer is in the ledger. {}",
        row.line,
        row.key,
        if create {
            "The link may exist: look for it in the dashboard, then `linkbatch settle JOB --key KEY --link-id ID \
             --payment-uri URI`, or `--no-link` if none was made"
        } else {
            "The row stays uncertain: run again once the server answers as documented, or settle it by hand \
             (`linkbatch settle`)"
        }
    );
    tracing::error!(line = row.line, key = %row.key, "{reason}");
    let event = Event::Unreadable {
        key: row.key.clone(),
        fingerprint: row.fingerprint().to_string(),
        answer_to: answer_to.into(),
        status,
        missing,
        body,
        at: crate::ledger::now(),
    };
    if shared.record(event).await.is_ok() {
        shared.abort(reason);
    }
    shared.progress.failed();
}

fn log_failure(row: &PlannedRow, error: &ApiError) {
    match error {
        ApiError::Retryable { reason, .. } => tracing::debug!(line = row.line, key = %row.key, "retrying: {reason}"),
        ApiError::Uncertain { reason } => {
            tracing::info!(line = row.line, key = %row.key, "outcome unknown ({reason}); reconciling before any retry");
        }
        ApiError::Permanent { .. } | ApiError::Fatal { .. } | ApiError::Unreadable { .. } => {}
    }
}

/// One create: the content shard (shared), the turn, the `intent` on disk, the request, and `created` on
/// disk when a link came back. A failure comes back with the time the request left.
async fn send(shared: &Shared, row: &PlannedRow) -> Result<(), (Halt, SystemTime)> {
    let _content = shared.content_lock(&row.request).read().await;
    // The turn first, then the intent: its time is the time the request leaves, and a run stopped while
    // waiting leaves no intent behind (the row stays pending, not uncertain). Lock order everywhere:
    // content shard, then probe, then throttle; nothing holding the probe waits for a shard.
    let Some(turn) = shared.turn().await else { return Err((Halt::Stopped, SystemTime::now())) };
    let at = SystemTime::now();
    let intent = Event::Intent {
        key: row.key.clone(),
        fingerprint: row.fingerprint().to_string(),
        at: humantime::format_rfc3339_millis(at).to_string(),
        request: row.request.clone(),
    };
    shared.record(intent).await.map_err(|e| (e.into(), at))?;
    let turn = Turn { at: shared.throttle.restamp(turn.at), ..turn };
    let link = shared.sent(turn, shared.client.create(&row.request)).await.map_err(|e| (e.into(), at))?;
    let sent_metadata = matches!(&row.request, LinkRequest::Classic(r) if !r.metadata.is_empty());
    if sent_metadata && link.metadata.is_none() && !shared.metadata_unheld.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "the server answers links without their metadata (the API reference shows none): links are matched by \
             content, and a webhook handler cannot rely on metadata"
        );
    }
    let created = Event::Created {
        key: row.key.clone(),
        link_id: link.id,
        payment_uri: link.payment_uri,
        fingerprint: row.fingerprint().to_string(),
        at: crate::ledger::now(),
    };
    shared.record(created).await.map_err(|e| (e.into(), at))
}

/// Sends an idempotent request (a read or a delete) with its turn and the retry policy. `Ok(None)` when the
/// run stops first; an error when it is permanent, fatal, or the retries ran out.
pub(super) async fn with_retries<T, F, Fut>(shared: &Shared, mut send: F) -> Result<Option<T>, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut delays = shared.plan.retry().delays();
    loop {
        let Some(turn) = shared.turn().await else { return Ok(None) };
        let error = match shared.sent(turn, send()).await {
            Ok(value) => return Ok(Some(value)),
            Err(e) => e,
        };
        match decide::retry_read(&error, delays.next()) {
            Some(delay) if shared.stop.sleep(delay).await => {}
            Some(_) => return Ok(None),
            None => return Err(error),
        }
    }
}

/// `--replace-changed`: the old link of a changed row deleted, unless it was paid; true once it is gone.
async fn replaced(shared: &Shared, row: &PlannedRow, old: &str) -> bool {
    match replace_link(shared, row, old).await {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!(line = row.line, key = %row.key, link = %old, "could not replace the link: {e}");
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
    let (key, link_id, at) = (row.key.clone(), old.to_owned(), crate::ledger::now());
    if let Replace::Refuse(reason) = decide::replace(old, payment.as_ref()) {
        tracing::warn!(line = row.line, key = %row.key, "{reason}");
        shared.record(Event::ReplaceRefused { key, link_id, reason, at }).await?;
        return Ok(false);
    }
    let fingerprint = row.fingerprint().to_string();
    shared.record(Event::ReplaceIntent { key, link_id, fingerprint, at }).await?;
    if with_retries(shared, || shared.client.delete(old)).await?.is_none() {
        return Ok(false);
    }
    shared.record(Event::Deleted { key: row.key.clone(), link_id: old.to_owned(), at: crate::ledger::now() }).await?;
    tracing::info!(line = row.line, key = %row.key, link = %old, "deleted the changed row's old link");
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
                at: crate::ledger::now(),
            };
            if shared.record(event).await.is_ok() {
                shared.progress.created();
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(line = row.line, key = %row.key, link = %link_id, "could not refresh: {e}");
            shared.progress.failed();
        }
    }
}

async fn fail(shared: &Shared, row: &PlannedRow, code: &str, message: &str) {
    tracing::warn!(line = row.line, key = %row.key, code, "failed: {message}");
    let _ = shared
        .record(Event::Failed {
            key: row.key.clone(),
            fingerprint: row.fingerprint().to_string(),
            code: code.to_owned(),
            message: message.to_owned(),
            at: crate::ledger::now(),
        })
        .await;
    shared.progress.failed();
}
