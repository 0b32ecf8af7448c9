//! Running a [`Plan`]: survey the rows against the ledger, send the new ones under the throttle, reconcile
//! every uncertain outcome before anything is sent twice, and write the output CSV from input and ledger.
//!
//! The exactly-once rule lives here (SPEC section 3): an `intent` is durable before its request leaves; a
//! request whose fate is unknown is looked for on the server (and adopted) before it is ever sent again; a
//! row whose link exists is never sent; a row that changed since is a conflict, never a second link.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, RwLock};

use crate::api::{ApiError, Client, RemoteLink};
use crate::input::{InputReader, Record, Rejection};
use crate::ledger::{Event, Index, Ledger, LinkRecord, OpenIntent};
use crate::output::{OutputRow, OutputWriter, Status};
use crate::plan::{KeyGuard, LinkRequest, Plan, PlannedRow, RowError};
use crate::progress::Progress;
use crate::throttle::Throttle;

/// How far before an intent's time reconciliation looks, for clocks that disagree.
pub const CLOCK_SKEW: Duration = Duration::from_secs(120);

/// Where one row stands before anything is sent.
#[derive(Debug, Clone)]
pub enum Disposition {
    /// Nothing to do: its link exists and the row is unchanged.
    Existing(LinkRecord),
    /// Its link exists but the row changed since ([`conflict_changes`] says what changed).
    Conflict(LinkRecord),
    /// An earlier request's outcome is unknown: reconcile first.
    Uncertain(OpenIntent),
    /// Never sent, or failed before: send.
    New,
}

/// What the ledger makes of a planned row. One rule, used by the run, `validate`, `status` and the output.
pub fn disposition(row: &PlannedRow, index: &Index) -> Disposition {
    let Some(state) = index.get(&row.key_id) else {
        return Disposition::New;
    };
    if let Some(link) = state.link {
        if link.fingerprint == row.fingerprint() {
            return Disposition::Existing(link);
        }
        return Disposition::Conflict(link);
    }
    match state.open_since() {
        Some(at) => {
            // An intent found in the file carries its own request; one this run wrote was this row's.
            let (request, fingerprint) =
                state.open_request().cloned().unwrap_or_else(|| (row.request.clone(), row.fingerprint()));
            Disposition::Uncertain(OpenIntent { at, request, fingerprint })
        }
        None => Disposition::New,
    }
}

/// What changed in a conflicting row since its link was made (read back from the ledger).
pub fn conflict_changes(row: &PlannedRow, index: &Index) -> String {
    index
        .get(&row.key_id)
        .and_then(|state| index.link_request(state))
        .map_or_else(|| "the link's parameters".into(), |before| row.request.changes_from(&before))
}

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
    /// Bad rows.
    pub rejected: u64,
    /// Links+ (team, template) pairs the rows to send use, checked before the first create.
    pub templates: std::collections::BTreeSet<(u64, u64)>,
}

/// Streams every row of `reader` through the plan and the duplicate-key check, in input order. `index`, when
/// given, is the ledger index `visit` consults, whose slots then double as the record of keys seen.
///
/// A thread of its own reads and plans the rows (templates, amounts, fingerprints) a batch at a time while
/// this one checks and visits the batch before: a resumed million-row job is two streams of work, not one.
/// `visit` borrows each row; a visited batch goes back to the planner, which drops it and reuses its room
/// (memory freed on the thread that allocated it stays cheap to allocate again).
pub fn for_each_row(
    plan: &Plan,
    reader: &mut InputReader,
    index: Option<&Index>,
    mut visit: impl FnMut(&Result<PlannedRow, RowError>) -> bool,
) {
    let mut keys = KeyGuard::new(index.map_or(0, Index::len));
    let mut check = |row: &mut Result<PlannedRow, RowError>, slot: Option<usize>| {
        if let Ok(planned) = row
            && !keys.first(planned.key_id, slot)
        {
            let reason = format!("duplicate key `{}`: an earlier row has the same key", planned.key);
            let (line, key, extra) = (planned.line, Some(planned.key.clone()), std::mem::take(&mut planned.extra));
            *row = Err(RowError { line, key, field: "key", reason, extra });
        }
    };
    let slot = |row: &Result<PlannedRow, RowError>| match (row, index) {
        (Ok(row), Some(index)) => index.position(&row.key_id),
        _ => None,
    };
    let planned = std::thread::scope(|scope| {
        // A few batches ahead at most: memory stays flat whatever the input's size.
        let (batches, planned) = std::sync::mpsc::sync_channel::<Vec<Result<PlannedRow, RowError>>>(4);
        let (give_back, spent) = std::sync::mpsc::channel::<Vec<Result<PlannedRow, RowError>>>();
        let records = &mut *reader;
        let planner = std::thread::Builder::new().name("planner".into()).spawn_scoped(scope, move || {
            // One record read into, and the rows of visited batches, refilled: no allocation per cell.
            let (mut record, mut spare) = (Record::default(), Vec::new());
            loop {
                let mut batch = match spent.try_recv() {
                    Ok(mut visited) => {
                        spare.extend(visited.drain(..).filter_map(Result::ok));
                        visited
                    }
                    Err(_) => Vec::with_capacity(BATCH),
                };
                while batch.len() < BATCH
                    && let Some(read) = records.read_into(&mut record)
                {
                    batch.push(plan_record(plan, read.map(|()| &record), spare.pop()));
                }
                let last = batch.len() < BATCH;
                if batch.is_empty() || batches.send(batch).is_err() || last {
                    return;
                }
            }
        });
        if planner.is_err() {
            return false;
        }
        'batches: for mut batch in planned {
            // The batch's index lookups first, back to back: their cache misses overlap.
            let slots: Vec<Option<usize>> = batch.iter().map(slot).collect();
            for (row, slot) in batch.iter_mut().zip(slots) {
                check(row, slot);
                if !visit(row) {
                    // Dropping the receiver stops the planner at its next batch.
                    break 'batches;
                }
            }
            let _ = give_back.send(batch);
        }
        true
    });
    if !planned {
        // No thread to be had: plan on this one.
        let mut record = Record::default();
        while let Some(read) = reader.read_into(&mut record) {
            let mut row = plan_record(plan, read.map(|()| &record), None);
            let slot = slot(&row);
            check(&mut row, slot);
            if !visit(&row) {
                break;
            }
        }
    }
}

/// Rows planned ahead at a time.
const BATCH: usize = 256;

fn plan_record(
    plan: &Plan,
    record: Result<&Record, Rejection>,
    spare: Option<PlannedRow>,
) -> Result<PlannedRow, RowError> {
    match record {
        Err(rejection) => Err(RowError {
            line: rejection.line,
            key: None,
            field: "input",
            reason: rejection.reason,
            extra: Vec::new(),
        }),
        Ok(record) => plan.row_reusing(record, spare),
    }
}

/// Counts what a run would do, without sending anything.
pub fn survey(plan: &Plan, reader: &mut InputReader, index: &Index) -> (Survey, Vec<RowError>) {
    let (survey, rejections, _) = survey_drafting(plan, reader, index, None);
    (survey, rejections)
}

/// [`survey`], writing the output on the way for as long as every row is settled (its link exists, or it
/// conflicts, or it is rejected). When the whole input is settled the run has nothing to send, and the
/// draft (as of ledger line `index.lines`) is its output: a finished job run again reads its input once.
pub fn survey_drafting(
    plan: &Plan,
    reader: &mut InputReader,
    index: &Index,
    mut draft: Option<OutputPass>,
) -> (Survey, Vec<RowError>, Option<OutputPass>) {
    let mut survey = Survey::default();
    let mut rejections = Vec::new();
    for_each_row(plan, reader, Some(index), |row| {
        survey.rows += 1;
        let disposition = match &row {
            Err(e) => {
                survey.rejected += 1;
                if rejections.len() < 1000 {
                    rejections.push(e.clone());
                }
                None
            }
            Ok(row) => {
                let disposition = disposition(row, index);
                if let (Disposition::New | Disposition::Uncertain(_), LinkRequest::Plus(r)) =
                    (&disposition, &row.request)
                {
                    survey.templates.insert((r.team_id, r.template_id));
                }
                match &disposition {
                    Disposition::Existing(link) => {
                        survey.existing += 1;
                        survey.by_latest_run += u64::from(index.last_run > 0 && link.line() > index.last_run);
                    }
                    Disposition::Conflict(_) => survey.conflict += 1,
                    Disposition::Uncertain(_) => {
                        survey.uncertain += 1;
                        // Something to send: the output is written after the run. Dropping the draft
                        // removes its file.
                        draft = None;
                    }
                    Disposition::New => {
                        survey.new += 1;
                        draft = None;
                        if index.get(&row.key_id).is_some_and(|s| s.failed().is_some()) {
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
            tracing::debug!("dropped the output draft: {e}");
            draft = None;
        }
        true
    });
    (survey, rejections, draft)
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Rows per output status.
    pub counts: BTreeMap<Status, u64>,
    /// Payment figures (`refresh` only).
    pub payments: Option<PaymentTotals>,
    /// The output CSV.
    pub output: PathBuf,
    /// Why the run stopped early (401), if it did.
    pub aborted: Option<String>,
    /// Stopped by a signal.
    pub interrupted: bool,
    /// Requests sent (creates and lists).
    pub requests: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Summary {
    /// The process exit code (SPEC section 6).
    pub fn exit_code(&self) -> u8 {
        let count = |s| self.counts.get(&s).copied().unwrap_or(0);
        if self.aborted.is_some() {
            3
        } else if self.interrupted {
            130
        } else if count(Status::Failed) + count(Status::Rejected) + count(Status::Conflict) + count(Status::Pending) > 0
        {
            1
        } else {
            0
        }
    }

    /// One line for the end of a run.
    pub fn line(&self) -> String {
        let parts: Vec<String> = self.counts.iter().map(|(s, n)| format!("{n} {}", s.name())).collect();
        let payments = self.payments.as_ref().map(|p| format!("; links: {}", p.line())).unwrap_or_default();
        format!(
            "{} rows: {} in {:.1}s ({} requests){payments}; output {}",
            self.counts.values().sum::<u64>(),
            if parts.is_empty() { "none".to_owned() } else { parts.join(", ") },
            self.elapsed.as_secs_f64(),
            self.requests,
            self.output.display()
        )
    }
}

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

/// What the workers share.
struct Shared {
    plan: Plan,
    client: Client,
    throttle: Throttle,
    ledger: Ledger,
    index: Mutex<Index>,
    /// Creates hold a shard for reading, reconciliation for writing: a reconcile never runs while a create
    /// of the same content is in flight, so it can never adopt a link another key is about to record.
    content: Vec<RwLock<()>>,
    stop: Arc<Stop>,
    aborted: Mutex<Option<String>>,
    requests: AtomicU64,
    progress: Progress,
    /// Until one request has been answered without a fatal error (a wrong key's 401), requests go one at
    /// a time: a wrong key costs one request, not one per worker.
    probe: tokio::sync::Mutex<()>,
    verified: AtomicBool,
}

/// Permission to send one request: its place under the limits, and the probe while the key is unproven.
struct Turn<'a> {
    _probe: Option<tokio::sync::MutexGuard<'a, ()>>,
}

impl Shared {
    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        // Updates are single inserts; a panic elsewhere cannot leave the index half-written.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn content_lock(&self, request: &LinkRequest) -> &RwLock<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (request.title(), request.amount()).hash(&mut hasher);
        &self.content[(hasher.finish() % self.content.len() as u64) as usize]
    }

    async fn record(&self, event: Event) -> Result<(), ApiError> {
        let offset = self.ledger.append(&event).await.map_err(|e| {
            // A ledger that cannot be written makes every further request unsafe: stop the run.
            let message = e.to_string();
            self.abort(message.clone());
            ApiError::Fatal { code: "ledger".into(), message }
        })?;
        self.index().record(event, offset);
        Ok(())
    }

    fn abort(&self, reason: String) {
        let mut aborted = self.aborted.lock().unwrap_or_else(|p| p.into_inner());
        aborted.get_or_insert(reason);
        self.stop.stop();
    }

    /// Waits for the probe (while the key is unproven) and a place under the limits; `None` once stopped.
    async fn turn(&self) -> Option<Turn<'_>> {
        let probe = if self.verified.load(Ordering::SeqCst) {
            None
        } else {
            let guard = self.probe.lock().await;
            (!self.verified.load(Ordering::SeqCst)).then_some(guard)
        };
        if self.stop.is_stopped() {
            return None;
        }
        self.throttle.acquire().await;
        (!self.stop.is_stopped()).then_some(Turn { _probe: probe })
    }

    /// Sends a request that has its turn, counting it; a 429 pauses every worker, not only this one.
    async fn sent<T>(
        &self,
        _turn: Turn<'_>,
        send: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let result = send.await;
        match &result {
            // Abort before the turn is released: no other worker may send with a key the server refused.
            Err(ApiError::Fatal { code, message }) => self.abort(format!("{code}: {message}")),
            Err(ApiError::Retryable { rate_limited: true, retry_after, .. }) => {
                self.verified.store(true, Ordering::SeqCst);
                self.throttle.pause(retry_after.unwrap_or(self.plan.retry.base_delay));
            }
            _ => self.verified.store(true, Ordering::SeqCst),
        }
        result
    }
}

/// What a run does with the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Work {
    /// `run`: create links for new rows.
    #[default]
    Create,
    /// `run --replace-changed`: also replace the unpaid link of a changed row (classic API).
    CreateReplacing,
    /// `refresh`: read each created link's payment state.
    Refresh,
}

/// Options of `run` beyond the plan.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Show a progress bar (on a terminal) or periodic log lines.
    pub progress: bool,
    /// What to do.
    pub work: Work,
    /// The output [`survey_drafting`] wrote, when every row was settled: the run finishes it.
    pub draft: Option<OutputPass>,
}

/// Runs a plan to the end (or to a stop), then writes the output.
pub async fn run(
    plan: Plan,
    client: Client,
    ledger: Ledger,
    index: Index,
    survey: Survey,
    stop: Arc<Stop>,
    options: RunOptions,
) -> Result<Summary, anyhow::Error> {
    let started = Instant::now();
    let mut index = index;
    let work = options.work;
    // Links recorded after `start_line` are this run's `created`; a refresh reports as of the last run.
    let (start_line, refresh_since) = if work == Work::Refresh {
        let since = match index.unfinished_refresh {
            Some(line) => {
                tracing::info!("resuming the refresh interrupted at ledger line {line}");
                line
            }
            None => {
                let marker = Event::RefreshStarted { at: crate::ledger::now() };
                let offset = ledger.append(&marker).await?;
                index.record(marker, offset);
                index.lines
            }
        };
        (index.last_run, since)
    } else {
        let start = index.lines;
        let marker = Event::Run { at: crate::ledger::now(), version: env!("CARGO_PKG_VERSION").to_owned() };
        let offset = ledger.append(&marker).await?;
        index.record(marker, offset);
        (start, 0)
    };
    let replacing = work == Work::CreateReplacing && plan.api == crate::job::ApiKind::Links;
    if work == Work::CreateReplacing && !replacing {
        tracing::warn!(
            "--replace-changed needs the classic API (Links+ has no delete): conflicts are reported, not replaced"
        );
    }
    let throttle = Throttle::new(&plan.rates);
    throttle.seed(index.sent());
    tracing::info!(
        job = %plan.name,
        rows = survey.rows,
        new = survey.new,
        existing = survey.existing,
        uncertain = survey.uncertain,
        conflict = survey.conflict,
        rejected = survey.rejected,
        "starting"
    );
    let total = match work {
        Work::Refresh => survey.existing + survey.conflict,
        _ => survey.new + survey.uncertain + if replacing { survey.conflict } else { 0 },
    };
    let progress = Progress::new(options.progress, total, if work == Work::Refresh { "refreshed" } else { "created" });
    let concurrency = plan.concurrency;
    let shared = Arc::new(Shared {
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
    });
    let ticker = shared.progress.start_ticker({
        let shared = shared.clone();
        move |remaining| shared.throttle.eta(remaining)
    });

    let (queue, tasks) = async_channel(concurrency * 2);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let shared = shared.clone();
            let work = tasks.clone();
            tokio::spawn(async move {
                while let Some(task) = work.recv().await {
                    if shared.stop.is_stopped() {
                        break;
                    }
                    match task {
                        Task::Create { row, open, replace } => process(&shared, row, open, replace).await,
                        Task::Refresh { row, link_id } => refresh_one(&shared, &row, &link_id).await,
                    }
                }
            })
        })
        .collect();
    drop(tasks);

    // Dispatch from a blocking thread: the input is read as a stream and `blocking_send` waits for a free
    // worker, so memory does not grow with the input.
    // Nothing to send (a finished job run again): no dispatch pass over the input at all.
    let idle = total == 0 && survey.uncertain == 0;
    let producer = tokio::task::spawn_blocking({
        let shared = shared.clone();
        move || -> anyhow::Result<()> {
            if idle {
                return Ok(());
            }
            let mut reader = shared.plan.reader()?;
            for_each_row(&shared.plan, &mut reader, None, |row| {
                let Ok(row) = row else {
                    return !shared.stop.is_stopped();
                };
                let task = {
                    let index = shared.index();
                    let state = index.get(&row.key_id);
                    if work == Work::Refresh {
                        // Every row with a link is read, unless this refresh (or the one it resumes) already did.
                        let fresh = state.and_then(|s| s.payment()).is_some_and(|(_, line)| *line > refresh_since);
                        let link = state.and_then(|s| s.link).filter(|_| !fresh);
                        link.map(|l| Task::Refresh { link_id: index.link_id(&l).to_owned(), row: row.clone() })
                    } else {
                        match disposition(row, &index) {
                            Disposition::New => Some(Task::Create { row: row.clone(), open: None, replace: None }),
                            Disposition::Uncertain(open) => {
                                Some(Task::Create { row: row.clone(), open: Some(open), replace: None })
                            }
                            Disposition::Conflict(link)
                                if replacing && state.is_some_and(|s| s.replace_refused().is_none()) =>
                            {
                                let replace = Some(index.link_id(&link).to_owned());
                                Some(Task::Create { row: row.clone(), open: None, replace })
                            }
                            Disposition::Existing(_) | Disposition::Conflict(_) => None,
                        }
                    }
                };
                let Some(task) = task else { return true };
                !shared.stop.is_stopped() && queue.blocking_send(task).is_ok()
            });
            Ok(())
        }
    });
    producer.await??;
    for worker in workers {
        let _ = worker.await;
    }
    ticker.abort();
    // An aborted task lets go of what it holds only once awaited.
    let _ = ticker.await;
    shared.progress.finish();

    let shared = Arc::into_inner(shared).ok_or_else(|| anyhow::anyhow!("a worker outlived the run"))?;
    let aborted = shared.aborted.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let interrupted = shared.stop.is_stopped() && aborted.is_none();
    if work == Work::Refresh && !shared.stop.is_stopped() {
        let marker = Event::RefreshFinished { at: crate::ledger::now() };
        let offset = shared.ledger.append(&marker).await?;
        shared.index().record(marker, offset);
    }
    let index = shared.index.into_inner().unwrap_or_else(|p| p.into_inner());
    let (counts, payments) = match options.draft {
        // Drafted as of `start_line`, and nothing was sent since.
        Some(draft) if idle => draft.finish()?,
        _ => write_output(&shared.plan, &index, Some(start_line), work == Work::Refresh)?,
    };
    Ok(Summary {
        counts,
        payments,
        output: shared.plan.output_path.clone(),
        aborted,
        interrupted,
        requests: shared.requests.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

/// What a worker does with one row.
#[derive(Debug)]
enum Task {
    /// Create its link: `open` is an earlier request whose outcome is unknown, `replace` an unpaid link of
    /// the row's earlier version to delete first.
    Create { row: PlannedRow, open: Option<OpenIntent>, replace: Option<String> },
    /// Read its link's payment state.
    Refresh { row: PlannedRow, link_id: String },
}

fn async_channel(capacity: usize) -> (tokio::sync::mpsc::Sender<Task>, SharedReceiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
    (tx, SharedReceiver(Arc::new(tokio::sync::Mutex::new(rx))))
}

/// A receiver several workers pull from.
#[derive(Clone)]
struct SharedReceiver(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Task>>>);

impl SharedReceiver {
    async fn recv(&self) -> Option<Task> {
        self.0.lock().await.recv().await
    }
}

/// Sends one row until it has a link, fails for good, or the run stops.
async fn process(shared: &Shared, row: PlannedRow, mut open: Option<OpenIntent>, replace: Option<String>) {
    if let Some(old) = replace {
        match replace_link(shared, &row, &old).await {
            Ok(true) => {}
            Ok(false) => {
                shared.progress.failed();
                return;
            }
            Err(e) => {
                tracing::warn!(line = row.line, key = %row.key, link = %old, "could not replace the link: {e}");
                shared.progress.failed();
                return;
            }
        }
    }
    let mut delays = shared.plan.retry.delays();
    let mut give_up = |reason: &str| -> Option<Duration> {
        let delay = delays.next();
        if delay.is_none() {
            tracing::warn!(line = row.line, key = %row.key, "giving up after {} attempts: {reason}", shared.plan.retry.attempts);
        }
        delay
    };
    loop {
        if shared.stop.is_stopped() {
            return;
        }
        if let Some(intent) = &open {
            match reconcile(shared, &row, intent).await {
                Ok(true) => return,
                Ok(false) => open = None,
                Err(ApiError::Fatal { code, message }) => {
                    shared.abort(format!("{code}: {message}"));
                    return;
                }
                Err(e) => {
                    tracing::warn!(line = row.line, key = %row.key, "could not reconcile yet: {e}");
                    match give_up(&e.to_string()) {
                        Some(delay) if shared.stop.sleep(delay).await => continue,
                        // The intent stays open: the next run reconciles it.
                        _ => {
                            shared.progress.failed();
                            return;
                        }
                    }
                }
            }
        }
        let content = shared.content_lock(&row.request).read().await;
        // The turn first, then the intent: its time is the time the request leaves, and a run stopped while
        // waiting leaves no intent behind (the row stays pending, not uncertain). Lock order everywhere:
        // content shard, then probe, then throttle; nothing holding the probe waits for a shard.
        let Some(turn) = shared.turn().await else { return };
        let at = SystemTime::now();
        let intent = Event::Intent {
            key: row.key.clone(),
            fingerprint: row.fingerprint().to_string(),
            at: humantime::format_rfc3339_millis(at).to_string(),
            request: row.request.clone(),
        };
        if shared.record(intent).await.is_err() {
            return;
        }
        let outcome = shared.sent(turn, shared.client.create(&row.request)).await;
        let failure = match outcome {
            Ok(link) => {
                let _ = shared
                    .record(Event::Created {
                        key: row.key.clone(),
                        link_id: link.id,
                        payment_uri: link.payment_uri,
                        fingerprint: row.fingerprint().to_string(),
                        at: crate::ledger::now(),
                    })
                    .await;
                shared.progress.created();
                return;
            }
            Err(e) => e,
        };
        drop(content);
        match failure {
            ApiError::Retryable { retry_after, reason, .. } => {
                tracing::debug!(line = row.line, key = %row.key, "retrying: {reason}");
                let Some(delay) = give_up(&reason) else {
                    fail(
                        shared,
                        &row,
                        "retries_exhausted",
                        &format!("gave up after {} attempts: {reason}", shared.plan.retry.attempts),
                    )
                    .await;
                    return;
                };
                if !shared.stop.sleep(delay.max(retry_after.unwrap_or_default())).await {
                    return;
                }
            }
            ApiError::Uncertain { reason } => {
                tracing::info!(line = row.line, key = %row.key, "outcome unknown ({reason}); reconciling before any retry");
                let earliest = open.as_ref().map_or(at, |o| o.at.min(at));
                open = Some(OpenIntent { at: earliest, request: row.request.clone(), fingerprint: row.fingerprint() });
                // A request still in the server's hands could land after a list that missed it: give it time.
                let grace = shared.plan.timeout.min(Duration::from_secs(2));
                let Some(delay) = give_up(&reason) else {
                    shared.progress.failed();
                    return;
                };
                if !shared.stop.sleep(delay.max(grace)).await {
                    return;
                }
            }
            ApiError::Permanent { code, message, .. } => {
                fail(shared, &row, &code, &message).await;
                return;
            }
            ApiError::Fatal { code, message } => {
                fail(shared, &row, &code, &message).await;
                shared.abort(format!("{code}: {message}"));
                return;
            }
        }
    }
}

/// Sends an idempotent request (a read or a delete) with its turn and the retry policy. `Ok(None)` when the
/// run stops first; an error when it is permanent, fatal, or the retries ran out.
async fn with_retries<T, F, Fut>(shared: &Shared, mut send: F) -> Result<Option<T>, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut delays = shared.plan.retry.delays();
    loop {
        let Some(turn) = shared.turn().await else { return Ok(None) };
        let error = match shared.sent(turn, send()).await {
            Ok(value) => return Ok(Some(value)),
            Err(e @ (ApiError::Permanent { .. } | ApiError::Fatal { .. })) => return Err(e),
            Err(e) => e,
        };
        let retry_after = match &error {
            ApiError::Retryable { retry_after, .. } => retry_after.unwrap_or_default(),
            _ => Duration::ZERO,
        };
        match delays.next() {
            Some(delay) if shared.stop.sleep(delay.max(retry_after)).await => {}
            Some(_) => return Ok(None),
            None => return Err(error),
        }
    }
}

/// `--replace-changed`: deletes a changed row's old link unless it has been paid; true once it is gone.
/// Every step is in the ledger before the next: a crash after `replace_intent` repeats the (idempotent)
/// delete; after `deleted` the row is simply new, and its new link is created exactly once like any other.
async fn replace_link(shared: &Shared, row: &PlannedRow, old: &str) -> Result<bool, ApiError> {
    let payment = match with_retries(shared, || shared.client.payment(old)).await {
        Ok(Some(payment)) => Some(payment),
        Ok(None) => return Ok(false),
        // Already gone on the server: nothing left to check or delete.
        Err(ApiError::Permanent { status: 404, .. }) => None,
        Err(e) => return Err(e),
    };
    if let Some(payment) = payment.filter(|p| p.used == Some(true) || p.charges > 0) {
        let reason = format!(
            "link {old} has been paid ({} charge(s), {} {}); it was not replaced",
            payment.charges, payment.paid_amount, payment.currency
        );
        tracing::warn!(line = row.line, key = %row.key, "{reason}");
        let event =
            Event::ReplaceRefused { key: row.key.clone(), link_id: old.to_owned(), reason, at: crate::ledger::now() };
        shared.record(event).await?;
        return Ok(false);
    }
    let at = crate::ledger::now();
    shared
        .record(Event::ReplaceIntent {
            key: row.key.clone(),
            link_id: old.to_owned(),
            fingerprint: row.fingerprint().to_string(),
            at,
        })
        .await?;
    if with_retries(shared, || shared.client.delete(old)).await?.is_none() {
        return Ok(false);
    }
    shared.record(Event::Deleted { key: row.key.clone(), link_id: old.to_owned(), at: crate::ledger::now() }).await?;
    tracing::info!(line = row.line, key = %row.key, link = %old, "deleted the changed row's old link");
    Ok(true)
}

/// `refresh`: reads one link's payment state into the ledger.
async fn refresh_one(shared: &Shared, row: &PlannedRow, link_id: &str) {
    match with_retries(shared, || shared.client.payment(link_id)).await {
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

/// Looks for the link an uncertain request may have made; adopts it (ledger `adopted`) when found.
async fn reconcile(shared: &Shared, row: &PlannedRow, intent: &OpenIntent) -> Result<bool, ApiError> {
    let _exclusive = shared.content_lock(&intent.request).write().await;
    let since = intent.at.checked_sub(CLOCK_SKEW).unwrap_or(SystemTime::UNIX_EPOCH);
    let team = match &intent.request {
        LinkRequest::Plus(r) => Some(r.team_id),
        LinkRequest::Classic(_) => None,
    };
    let mut offset = 0;
    loop {
        let Some(turn) = shared.turn().await else {
            return Err(ApiError::Retryable {
                retry_after: None,
                rate_limited: false,
                reason: "the run is stopping".into(),
            });
        };
        let page = shared.sent(turn, shared.client.list(since, offset, team)).await?;
        let found: Option<RemoteLink> = {
            let index = shared.index();
            page.links.iter().find(|l| l.matches(&intent.request) && !index.is_claimed(&l.id)).cloned()
        };
        if let Some(link) = found {
            tracing::info!(line = row.line, key = %row.key, link = %link.id, "adopted the link an uncertain request made");
            shared
                .record(Event::Adopted {
                    key: row.key.clone(),
                    link_id: link.id,
                    payment_uri: link.payment_uri,
                    fingerprint: intent.fingerprint.to_string(),
                    at: crate::ledger::now(),
                })
                .await?;
            shared.progress.created();
            return Ok(true);
        }
        offset += page.links.len();
        if page.links.is_empty() || offset >= page.total {
            return Ok(false);
        }
    }
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
    /// Sum collected, per currency, in minor units.
    pub collected: BTreeMap<String, u64>,
}

impl PaymentTotals {
    fn add(&mut self, payment: Option<&crate::ledger::Payment>) {
        match payment {
            None => self.unknown += 1,
            Some(p)
                if p.charges > 0 || p.used == Some(true) || p.link_status.as_deref().is_some_and(|s| s != "active") =>
            {
                self.paid += 1;
                *self.collected.entry(p.currency.clone()).or_default() += p.paid_amount;
            }
            Some(_) => self.unpaid += 1,
        }
    }

    /// `12 paid, 3 unpaid; collected 1500.00 THB, 2000 JPY`.
    pub fn line(&self) -> String {
        let collected: Vec<String> = self
            .collected
            .iter()
            .map(|(code, minor)| match crate::money::Currency::find(code) {
                Some(c) => format!("{} {}", c.format_major(*minor), code.to_uppercase()),
                None => format!("{minor} {code} (minor units)"),
            })
            .collect();
        let unknown = if self.unknown > 0 { format!(", {} not read", self.unknown) } else { String::new() };
        let collected = if collected.is_empty() { "nothing".to_owned() } else { collected.join(", ") };
        format!("{} paid, {} unpaid{unknown}; collected {collected}", self.paid, self.unpaid)
    }
}

/// Writes the output CSV from the input and the ledger. `run_start`: ledger lines before the run (links
/// after it are `created`, before it `existing`); `None` reports every link as `created`. With `payments`,
/// the refresh columns are added and the payment totals returned.
pub fn write_output(
    plan: &Plan,
    index: &Index,
    run_start: Option<u64>,
    payments: bool,
) -> anyhow::Result<(BTreeMap<Status, u64>, Option<PaymentTotals>)> {
    let mut pass = OutputPass::create(plan, run_start, payments)?;
    let mut reader = plan.reader()?;
    let mut error = None;
    for_each_row(plan, &mut reader, Some(index), |row| match pass.row(row, None, index) {
        Ok(()) => true,
        Err(e) => {
            error = Some(e);
            false
        }
    });
    if let Some(e) = error {
        anyhow::bail!("cannot write output {}: {e}", plan.output_path.display());
    }
    pass.finish()
}

/// The output CSV being written, row by row, with its counts.
#[derive(Debug)]
pub struct OutputPass {
    writer: OutputWriter,
    api: crate::job::ApiKind,
    path: PathBuf,
    run_start: Option<u64>,
    payments: bool,
    counts: BTreeMap<Status, u64>,
    totals: PaymentTotals,
}

impl OutputPass {
    /// Starts the output of `plan` (at a temporary name until [`OutputPass::finish`]).
    pub fn create(plan: &Plan, run_start: Option<u64>, payments: bool) -> anyhow::Result<OutputPass> {
        let columns = if payments { crate::output::refresh_columns(plan.api) } else { &[] };
        let writer = OutputWriter::create(&plan.output_path, &plan.extra_columns, columns)
            .map_err(|e| anyhow::anyhow!("cannot write output {}: {e}", plan.output_path.display()))?;
        Ok(OutputPass {
            writer,
            api: plan.api,
            path: plan.output_path.clone(),
            run_start,
            payments,
            counts: BTreeMap::new(),
            totals: PaymentTotals::default(),
        })
    }

    /// Writes the next row (its disposition, when the caller has it already).
    pub fn row(
        &mut self,
        row: &Result<PlannedRow, RowError>,
        disposition: Option<Disposition>,
        index: &Index,
    ) -> std::io::Result<()> {
        let (mut out, payment) = output_row(row, disposition, index, self.run_start);
        if self.payments {
            if !out.link_id.is_empty() {
                self.totals.add(payment);
            }
            out.refresh = crate::output::refresh_cells(self.api, payment);
        }
        *self.counts.entry(out.status.unwrap_or(Status::Pending)).or_insert(0) += 1;
        self.writer.write(&out)
    }

    /// Puts the file in place; returns the rows per status, and the payment totals when asked for.
    pub fn finish(self) -> anyhow::Result<(BTreeMap<Status, u64>, Option<PaymentTotals>)> {
        let path = self.path;
        self.writer.finish().map_err(|e| anyhow::anyhow!("cannot write output {}: {e}", path.display()))?;
        Ok((self.counts, self.payments.then_some(self.totals)))
    }
}

/// The output row of an input row, and its link's payment state; `disposition` is the row's, when the caller
/// has it already.
fn output_row<'a>(
    row: &'a Result<PlannedRow, RowError>,
    disposition: Option<Disposition>,
    index: &'a Index,
    run_start: Option<u64>,
) -> (OutputRow<'a>, Option<&'a crate::ledger::Payment>) {
    let row = match row {
        Err(e) => {
            let out = OutputRow {
                line: e.line,
                key: e.key.as_deref().unwrap_or_default(),
                status: Some(Status::Rejected),
                error_code: format!("invalid_{}", e.field).into(),
                error_message: e.reason.as_str().into(),
                extra: &e.extra,
                ..OutputRow::default()
            };
            return (out, None);
        }
        Ok(row) => row,
    };
    let state = index.get(&row.key_id);
    let disposition = disposition.unwrap_or_else(|| self::disposition(row, index));
    let changes = matches!(disposition, Disposition::Conflict(_)).then(|| conflict_changes(row, index));
    let mut out = OutputRow {
        line: row.line,
        key: &row.key,
        amount: Some(row.request.amount()),
        currency: row.request.currency().unwrap_or_default(),
        title: row.request.title(),
        extra: &row.extra,
        ..OutputRow::default()
    };
    match disposition {
        Disposition::Existing(link) => {
            let fresh = run_start.is_none_or(|start| link.line() > start);
            out.status = Some(if fresh { Status::Created } else { Status::Existing });
            out.link_id = index.link_id(&link);
            out.payment_uri = index.payment_uri(&link);
        }
        Disposition::Conflict(link) => {
            out.status = Some(Status::Conflict);
            let link_id = index.link_id(&link);
            let changes = changes.unwrap_or_default();
            match state.and_then(|s| s.replace_refused()) {
                Some(reason) => {
                    out.error_code = "conflict_paid".into();
                    out.error_message =
                        format!("row changed after link {link_id} was made ({changes}); {reason}").into();
                }
                None => {
                    out.error_code = "conflict".into();
                    out.error_message = format!(
                        "row changed after link {link_id} was made ({changes}); not re-created (--replace-changed replaces an unpaid link)"
                    )
                    .into();
                }
            }
            out.link_id = link_id;
            out.payment_uri = index.payment_uri(&link);
        }
        Disposition::Uncertain(_) => {
            out.status = Some(Status::Failed);
            out.error_code = "uncertain".into();
            out.error_message = "the outcome of the last request is unknown; run again to reconcile".into();
        }
        Disposition::New => match state.and_then(|s| s.failed()) {
            Some((code, message)) => {
                out.status = Some(Status::Failed);
                out.error_code = code.as_str().into();
                out.error_message = message.as_str().into();
            }
            None => out.status = Some(Status::Pending),
        },
    }
    (out, state.and_then(|s| s.payment()).map(|(p, _)| p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobSpec, MINIMAL as JOB};
    use crate::plan::Overrides;

    /// `rows` rows (row `i` has key `k{i}`, except as `key` says), planned and visited until `stop` rows were.
    fn visit(rows: usize, key: impl Fn(usize) -> usize, stop: usize) -> Vec<(u64, Result<String, String>)> {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("rows.csv");
        let mut text = String::from("id,amount,title\n");
        for i in 0..rows {
            // Every 100th row has a bad amount.
            let amount = if i % 100 == 99 { "lots" } else { "10.00" };
            text += &format!("k{},{amount},Row {i}\n", key(i));
        }
        std::fs::write(&input, text).unwrap();
        let overrides = Overrides { input: Some(input), ..Overrides::default() };
        let (plan, mut reader) = Plan::new(JobSpec::parse(JOB).unwrap(), &overrides).unwrap();
        let mut seen = Vec::new();
        for_each_row(&plan, &mut reader, None, |row| {
            seen.push(match row {
                Ok(row) => (row.line, Ok(row.key.clone())),
                Err(e) => (e.line, Err(e.field.to_owned())),
            });
            seen.len() < stop
        });
        seen
    }

    #[test]
    fn rows_come_in_input_order_across_batches_with_duplicates_and_errors_named() {
        let rows = 3 * BATCH + 17;
        // Row 700 repeats row 5's key: the later one is the duplicate, however far apart the batches.
        let seen = visit(rows, |i| if i == 700 { 5 } else { i }, usize::MAX);
        assert_eq!(seen.len(), rows);
        for (i, (line, row)) in seen.iter().enumerate() {
            assert_eq!(*line, i as u64 + 2);
            match i {
                700 => assert_eq!(row, &Err("key".to_owned())),
                _ if i % 100 == 99 => assert_eq!(row, &Err("amount".to_owned())),
                _ => assert_eq!(row, &Ok(format!("k{i}"))),
            }
        }
    }

    #[test]
    fn a_row_planned_into_a_spare_is_the_row_planned_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("rows.csv");
        std::fs::write(
            &input,
            "id,amount,title,note\nlong-key-number-one,123450,A,a long note here\nk2,1,B,\nk3,x,C,n\n",
        )
        .unwrap();
        let job = format!("{JOB}[output]\ncolumns = [\"note\", \"amount\"]\n");
        let overrides = Overrides { input: Some(input), ..Overrides::default() };
        let (plan, mut reader) = Plan::new(JobSpec::parse(&job).unwrap(), &overrides).unwrap();
        let records: Vec<Record> = std::iter::from_fn(|| reader.next_record()).map(Result::unwrap).collect();
        let fresh = |i: usize| plan.row(&records[i]);
        for (spare, record) in [(0, 1), (1, 0), (0, 0)] {
            let reused = plan.row_reusing(&records[record], fresh(spare).ok()).unwrap();
            let again = fresh(record).unwrap();
            assert_eq!(
                (reused.line, &reused.key, reused.key_id, &reused.request, reused.fingerprint(), &reused.extra),
                (again.line, &again.key, again.key_id, &again.request, again.fingerprint(), &again.extra)
            );
        }
        // A row that fails with a spare fails as it does afresh, naming the same field and keeping its cells.
        let failed = plan.row_reusing(&records[2], fresh(0).ok()).unwrap_err();
        assert_eq!(failed, fresh(2).unwrap_err());
        assert_eq!(failed.extra, ["n", "x"]);
    }

    #[test]
    fn a_visit_that_says_stop_is_the_last() {
        let seen = visit(3 * BATCH, |i| i, BATCH + 3);
        assert_eq!(seen.len(), BATCH + 3);
        assert_eq!(seen.last().map(|(line, _)| *line), Some(BATCH as u64 + 4));
    }
}
