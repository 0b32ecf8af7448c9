//! What a run's workers share: the plan, the client, the throttle and what it learns, the ledger and its
//! index, the locks (content shards, the key's probe, the breaker's places), the outage's gate, the stop
//! and the ordered abort reason, and `with_retries` (reads and deletes round the one backoff loop, `wait`).
//! Below the per-task work (`dispatch`, `pages`, `reconcile`), which all use it; it uses none of them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::RwLock;

use crate::api::{ApiError, Client};
use crate::decide;
use crate::ledger::{Book, Event, Index, LedgerError, Time};
use crate::plan::Plan;
use crate::progress::Progress;
use crate::request::LinkRequest;
use crate::stop::Stop;
use crate::throttle::{Lesson, Throttle};
use crate::told;
use crate::wait::{Attempt, Gate, Next, Outages, Retrying};

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
    #[error("{}", crate::told::run::STOPPING)]
    Stopped,
}

/// What the workers share.
pub(super) struct Shared {
    pub(super) plan: Plan,
    pub(super) client: Client,
    pub(super) throttle: Throttle,
    /// The ledger and its index.
    pub(super) book: Book,
    /// Creates hold a shard for reading, reconciliation for writing: a reconcile never runs while a create
    /// of the same content is in flight, so it can never adopt a link another key is about to record.
    content: Vec<RwLock<()>>,
    pub(super) stop: Arc<Stop>,
    aborted: Mutex<Option<decide::Abort>>,
    pub(super) requests: AtomicU64,
    pub(super) progress: Progress,
    /// Until one request has been answered without a fatal error (a wrong key's 401), requests go one at
    /// a time: a wrong key costs one request, not one per worker.
    probe: tokio::sync::Mutex<()>,
    verified: AtomicBool,
    /// Stops dispatch when every row gets the same refusal.
    breaker: Mutex<decide::Breaker>,
    /// The server cannot be reached: since when, and the one probe that may go meanwhile.
    outages: Outages,
    /// Creates hold it for reading (at most the breaker's limit at once) from their send until the breaker
    /// has heard their answer; after a refusal a create takes it for writing, alone. So the refusals of one
    /// code that reach the server never pass the breaker's limit, whatever the concurrency.
    refusals: tokio::sync::RwLock<()>,
    /// Said once: the server answers links without the metadata they were made with.
    pub(super) metadata_unheld: AtomicBool,
    /// The rates the run started from were learned by an earlier run.
    pub(super) learned_before: bool,
    /// Windows a 429 showed the server holds tighter, in the order learned.
    pub(super) learned: Mutex<Vec<crate::throttle::Learned>>,
    /// Said once: the server's answers carry no `Date`, so request times are the host's.
    clockless: AtomicBool,
}

/// Held by a create from its send until the breaker has heard its answer (see `Shared::refusals`).
pub(super) struct BreakerTurn<'a> {
    /// Its place in sending order.
    pub(super) turn: u64,
    _place: Place<'a>,
}

/// Beside other creates, or alone.
enum Place<'a> {
    Shared(#[allow(dead_code, reason = "held, never read")] tokio::sync::RwLockReadGuard<'a, ()>),
    Alone(#[allow(dead_code, reason = "held, never read")] tokio::sync::RwLockWriteGuard<'a, ()>),
}

/// Permission to send one request: its place under the limits, the probe while the key is unproven, and
/// the outage's probe while the server is away.
pub(super) struct Turn<'a> {
    _probe: Option<tokio::sync::MutexGuard<'a, ()>>,
    _outage: Option<tokio::sync::MutexGuard<'a, ()>>,
    /// When the throttle counted it.
    at: std::time::Instant,
}

impl Shared {
    /// Everything a run's workers share.
    pub(super) fn new(plan: Plan, client: Client, book: Book, stop: Arc<Stop>, progress: Progress) -> Shared {
        let index = book.index();
        let (rates, learned_before) =
            decide::starting_rates(plan.rates(), plan.rates_from_flags(), index.learned.as_ref());
        if learned_before {
            told::run::keeping_learned(&rates, plan.rates());
        }
        let throttle = Throttle::new(&rates);
        // Requests are recorded in the server's time, and its windows are counted in it.
        throttle.seed(index.sent().map(Time::system), client.clock().now_or_host());
        drop(index);
        let limit = plan.retry().breaker;
        let breaker = Mutex::new(decide::Breaker::new(limit));
        Shared {
            refusals: tokio::sync::RwLock::with_max_readers((), limit),
            outages: Outages::new(plan.retry().outage, plan.retry().base_delay, plan.retry().max_delay),
            plan,
            client,
            throttle,
            book,
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
            clockless: AtomicBool::new(false),
        }
    }

    /// The server's time now, for a request about to leave; asked of the server first while no answer
    /// has said it. A server that never sends a `Date` leaves the host's time, said once.
    pub(super) async fn server_now(&self) -> std::time::SystemTime {
        let clock = self.client.clock();
        // Asked once more per create only until the server is known to send no `Date` at all.
        if clock.now().is_none() && !self.clockless.load(Ordering::SeqCst) {
            // An error here is the create's to meet, as its own; a server that did not answer said nothing of
            // its clock, and is asked again before the next create.
            let answered = self.client.read_clock().await.is_ok();
            if answered && clock.now().is_none() && !self.clockless.swap(true, Ordering::SeqCst) {
                told::run::clockless();
            }
        }
        clock.now_or_host()
    }

    pub(super) fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.book.index()
    }

    /// A create's place beside the others: shared while the breaker counts no refusal, alone after one.
    /// The turn is taken once the place is had, so a create that waited for it is judged by what the
    /// breaker has heard by then.
    pub(super) async fn breaker_turn(&self) -> BreakerTurn<'_> {
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

    pub(super) fn breaker(&self) -> std::sync::MutexGuard<'_, decide::Breaker> {
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

    /// Records an event in the ledger (and so its index). A ledger that cannot be written makes every
    /// further request unsafe: the run is aborted before the error is returned.
    pub(super) async fn record(&self, event: Event) -> Result<(), LedgerError> {
        let recorded = self.book.record(event).await;
        if let Err(e) = &recorded {
            self.abort(decide::Abort::Ledger(e.to_string()));
        }
        recorded
    }

    /// Stops the run for `reason`; a graver reason met later replaces it.
    pub(super) fn abort(&self, reason: decide::Abort) {
        let mut aborted = self.aborted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *aborted = Some(decide::Abort::graver(aborted.take(), reason));
        self.stop.stop();
    }

    /// Why the run was aborted, if it was.
    pub(super) fn aborted(&self) -> Option<String> {
        let aborted = self.aborted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        aborted.as_ref().map(|abort| abort.reason().to_owned())
    }

    /// Waits out an outage, then for the probe (while the key is unproven) and a place under the limits;
    /// `None` once stopped.
    pub(super) async fn turn(&self) -> Option<Turn<'_>> {
        let outage = match self.outages.gate(&self.stop).await {
            Gate::Go(probe) => probe,
            Gate::Stopped => return None,
            Gate::GaveUp(reason) => {
                self.abort(decide::Abort::Outage(reason));
                return None;
            }
        };
        let probe = if self.verified.load(Ordering::SeqCst) {
            None
        } else {
            let guard = self.until_stopped(self.probe.lock()).await?;
            (!self.verified.load(Ordering::SeqCst)).then_some(guard)
        };
        if self.stop.is_stopped() {
            return None;
        }
        // A window can hold the next request for minutes (6/min, a full hour): a stop ends the wait at once.
        let at = self.until_stopped(self.throttle.acquire()).await?;
        (!self.stop.is_stopped()).then_some(Turn { _probe: probe, _outage: outage, at })
    }

    /// `wait`, unless the run stops first (`None`).
    async fn until_stopped<T>(&self, wait: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            value = wait => Some(value),
            () = self.stop.stopped() => None,
        }
    }

    /// The turn counted again as its request leaves (after its intent reached the disk).
    pub(super) fn restamp<'a>(&self, turn: Turn<'a>) -> Turn<'a> {
        Turn { at: self.throttle.restamp(turn.at), ..turn }
    }

    /// Sends a request that has its turn, counting it; a 429 pauses every worker, not only this one.
    pub(super) async fn sent<T>(
        &self,
        turn: Turn<'_>,
        send: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let result = send.await;
        self.outages.hear(&result);
        match &result {
            Err(ApiError::Unreachable { .. }) => return result,
            // Nothing will be sent until the host trusts the server's CA.
            Err(error @ ApiError::Untrusted { .. }) => {
                self.abort(decide::Abort::Refused(error.to_string()));
                return result;
            }
            _ => {}
        }
        match &result {
            // Abort before the turn is released: no other worker may send with a key the server refused.
            Err(ApiError::Fatal { code, message }) => {
                self.abort(decide::Abort::Refused(crate::told::run::refusal(code, message)));
            }
            Err(ApiError::Retryable { rate_limited: true, retry_after, .. }) => {
                self.verified.store(true, Ordering::SeqCst);
                self.throttle.pause(retry_after.unwrap_or(self.plan.retry().base_delay));
                match self.throttle.learn(turn.at, *retry_after) {
                    Some(Lesson::Window(learned)) => self.keep_learned(learned).await,
                    Some(Lesson::Margin(extra)) => told::run::margin(extra),
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
        told::run::learned(&learned.was, &learned.now, &rates);
        self.learned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(learned);
        let event = Event::Learned {
            job_rates: self.plan.rates().to_vec(),
            rates,
            was: learned.was,
            now: learned.now,
            at: crate::ledger::Time::now(),
        };
        let _ = self.record(event).await;
    }
}

/// Sends an idempotent request (a read or a delete) with its turn, round the one backoff loop. `Ok(None)`
/// when the run stops first; an error when it is permanent, fatal, or the retries ran out.
pub(super) async fn with_retries<T, F, Fut>(shared: &Shared, mut send: F) -> Result<Option<T>, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut retrying = Retrying::new(&shared.stop, shared.plan.retry().delays());
    loop {
        let Some(turn) = shared.turn().await else { return Ok(None) };
        let attempt = match shared.sent(turn, send()).await {
            Ok(value) => Attempt::Done(Ok(Some(value))),
            Err(error) => Attempt::after(decide::read_again(&error), Err(error)),
        };
        match retrying.after(attempt).await {
            Next::Again => {}
            Next::Done(answer) => return answer,
            Next::Stopped => return Ok(None),
        }
    }
}
