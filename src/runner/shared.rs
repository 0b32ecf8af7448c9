//! What a run's workers share: the plan, the client, the throttle and what it learns, the ledger and its
//! index, the locks (content shards, the key's probe, the breaker's places), the stop and the abort reason,
//! and the one retry loop for reads. Below the per-task work (`dispatch`, `pages`, `reconcile`), which
//! all use it; it uses none of them.

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
    /// The ledger and its index.
    pub(super) book: Book,
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
    /// The server cannot be reached: since when, and what the next request does.
    outage: Mutex<decide::Outage>,
    /// Held by the one request that probes an absent server; the others wait for its answer.
    outage_probe: tokio::sync::Mutex<()>,
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
            tracing::warn!(
                "keeping to {}, learned from a 429 on an earlier run (the job says {}; --limit starts afresh)",
                rates_text(&rates),
                rates_text(plan.rates())
            );
        }
        let throttle = Throttle::new(&rates);
        // Requests are recorded in the server's time, and its windows are counted in it.
        throttle.seed(index.sent().map(Time::system), client.clock().now_or_host());
        drop(index);
        let limit = plan.retry().breaker;
        let breaker = Mutex::new(decide::Breaker::new(limit));
        Shared {
            refusals: tokio::sync::RwLock::with_max_readers((), limit),
            outage: Mutex::new(decide::Outage::new(
                plan.retry().outage,
                plan.retry().base_delay,
                plan.retry().max_delay,
            )),
            outage_probe: tokio::sync::Mutex::new(()),
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
                tracing::warn!(
                    "the server's answers carry no Date: requests are recorded in the host's time, and an uncertain \
                     request is found only if the host's clock agrees with the server's"
                );
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
            self.abort(e.to_string());
        }
        recorded
    }

    pub(super) fn abort(&self, reason: String) {
        let mut aborted = self.aborted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        aborted.get_or_insert(reason);
        self.stop.stop();
    }

    /// While the server is away: waits for the outage's probe, then backs off and returns it held (this
    /// request is the one probe); `Some(None)` once the server answers again; `None` once stopped, or when
    /// the server has been away for `[retry] outage` (the run is then aborted).
    async fn outage_turn(&self) -> Option<Option<tokio::sync::MutexGuard<'_, ()>>> {
        if !self.outage().is_away() {
            return Some(None);
        }
        let guard = tokio::select! {
            guard = self.outage_probe.lock() => guard,
            () = self.stop.stopped() => return None,
        };
        let next = self.outage().next(std::time::SystemTime::now());
        match next {
            decide::Away::Up => Some(None),
            decide::Away::Probe(wait) => self.stop.sleep(wait).await.then_some(Some(guard)),
            decide::Away::GiveUp(reason) => {
                self.abort(reason);
                None
            }
        }
    }

    fn outage(&self) -> std::sync::MutexGuard<'_, decide::Outage> {
        // A time, a count and a reason: a panic elsewhere cannot leave them half-written.
        self.outage.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits out an outage, then for the probe (while the key is unproven) and a place under the limits;
    /// `None` once stopped.
    pub(super) async fn turn(&self) -> Option<Turn<'_>> {
        let outage = self.outage_turn().await?;
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
        let now = std::time::SystemTime::now();
        match &result {
            Err(ApiError::Unreachable { reason }) => {
                if self.outage().away(now, reason) {
                    let limit = self.outage().limit();
                    tracing::warn!(
                        "the server cannot be reached ({reason}): every worker waits for it, one probe at a time, for \
                         at most {} ([retry] outage)",
                        humantime::format_duration(limit)
                    );
                }
                return result;
            }
            // Nothing will be sent until the host trusts the server's CA.
            Err(error @ ApiError::Untrusted { .. }) => {
                self.abort(error.to_string());
                return result;
            }
            _ => {
                if let Some(away) = self.outage().back(now) {
                    tracing::warn!("the server answers again, after {:.1}s away", away.as_secs_f64());
                }
            }
        }
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
            job_rates: self.plan.rates().to_vec(),
            rates,
            was: learned.was,
            now: learned.now,
            at: crate::ledger::Time::now(),
        };
        let _ = self.record(event).await;
    }
}

/// Rates as a user writes them: `10/s 1000/h`.
pub(super) fn rates_text(rates: &[crate::rate::Rate]) -> String {
    rates.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
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
        match decide::retry_read(&error, &mut delays) {
            Some(delay) if shared.stop.sleep(delay).await => {}
            Some(_) => return Ok(None),
            None => return Err(error),
        }
    }
}
