//! Running a [`Plan`]: survey the rows against the ledger, send the new ones under the throttle, reconcile
//! every uncertain outcome before anything is sent twice, and write the output CSV from input and ledger.
//!
//! The exactly-once rule (docs/reference.md, "Exactly once") is decided in [`crate::decide`] and carried out here: an `intent`
//! is durable before its request leaves; a request whose fate is unknown is looked for on the server (and
//! adopted) before it is ever sent again; a row whose link exists is never sent; a row that changed since is
//! a conflict, never a second link.
//!
//! | file | owns |
//! |---|---|
//! | `rows` | the input streamed through the plan (a planner thread) |
//! | `survey` | the counts of what a run would do, the account's cap, the output drafted on the way |
//! | `shared` | what the workers share: throttle turns, the key's probe, the outage's gate, the breaker's places, the stop and the ordered abort, reads round the one backoff loop |
//! | `dispatch` | workers, the create loop, updates, deletes and reads by id |
//! | `reconcile` | finding and adopting the link of an uncertain request |
//! | `pages` | `refresh` by pages of the list endpoint, before the reads by id |
//! | `report` | the output CSV, its counts, payment totals, the summary |
//! | `retire` | `[lifecycle]` carried out: live links read, the ones it ends deleted and recorded |
//! | `listen` | an event's hint carried out: its link read again, recorded as `heard`, `[lifecycle]` applied |

mod dispatch;
mod events;
mod held;
mod listen;
mod pages;
mod reconcile;
mod report;
mod retire;
mod shared;
mod survey;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

pub use crate::decide::Work;
pub use crate::summary::{PaymentTotals, Retirement, Summary, counts_line};
pub use held::Held;
pub use listen::{Listener, Untaken};
pub use pages::Wanted;
pub use reconcile::CLOCK_SKEW;
pub use report::{MissingLinks, OutputPass, Written, conflict_changes, links_missing_from, write_output};
pub use survey::{Survey, check_cap, survey, survey_drafting};

use crate::api::Client;
use crate::decide;
use crate::ledger::{Book, Event, Index, LedgerError};
use crate::plan::Plan;
use crate::progress::Progress;
use crate::rows::for_each_row;
use crate::stop::Stop;
use crate::told;
use dispatch::Job;
use shared::Shared;

/// Options of `run` beyond the plan.
#[derive(Debug)]
pub struct RunOptions {
    /// Show a progress bar (on a terminal) or periodic log lines.
    pub progress: bool,
    /// What to do.
    pub work: Work,
    /// The output [`survey_drafting`] wrote, when every row was settled: the run finishes it.
    pub draft: Option<OutputPass>,
    /// The input as the survey read it: a run whose input changes under it stops before sending more.
    pub input: Option<crate::input::Stamp>,
    /// Write the output at the end; false when a pass after the run writes it (the delivery after
    /// `deliver --remind`'s refresh), so the input is not read for it twice.
    pub output: bool,
}

/// Runs a plan to the end (or to a stop), then writes the output.
pub async fn run(
    plan: Plan,
    client: Client,
    book: Book,
    mut survey: Survey,
    stop: Arc<Stop>,
    options: RunOptions,
) -> Result<Summary, anyhow::Error> {
    let started = Instant::now();
    let work = options.work.for_api(plan.api());
    let (start_line, refresh_since) = mark_start(&book, work).await?;
    say_unapplied(options.work, work);
    told::run::starting(
        plan.name(),
        [survey.rows, survey.new, survey.existing, survey.uncertain, survey.conflict, survey.rejected],
    );
    let total = match work {
        Work::Refresh { .. } => survey.existing + survey.conflict,
        Work::Retire => 0,
        Work::Create { update, replace, .. } => {
            survey.new + survey.uncertain + if replace || update { survey.conflict } else { 0 }
        }
    };
    let progress = Progress::new(options.progress, total, if work.is_refresh() { "refreshed" } else { "created" });
    let concurrency = plan.concurrency();
    let breaker = plan.retry().breaker;
    if !work.is_refresh() && total > 0 && concurrency > breaker as usize {
        told::run::breaker_caps(breaker, concurrency);
    }
    // Nothing to send (a finished job run again): no dispatch pass over the input at all.
    let idle = total == 0 && survey.uncertain == 0;
    if !idle {
        // The server's time, before the windows are counted from the ledger's requests (recorded in it).
        if let Err(e) = client.read_clock().await {
            told::run::clock_unread(&e);
        }
    }
    let shared = Arc::new(Shared::new(plan, client, book, stop, progress));
    let ticker = shared.progress.start_ticker({
        let shared = shared.clone();
        move |remaining| crate::progress::Outlook {
            eta: shared.throttle.eta(remaining),
            held: shared.throttle.holding(),
        }
    });
    // `run --retire`: last month's links end before this month's are made, so these fit under the cap.
    let retirement = if work.retires() { Some(retire::retire(&shared).await?) } else { None };
    if !idle && !shared.stop.is_stopped() {
        let wanted = std::mem::take(&mut survey.wanted);
        dispatch_all(&shared, (work, concurrency), wanted, refresh_since, options.input).await?;
    }
    ticker.abort();
    // An aborted task lets go of what it holds only once awaited.
    let _ = ticker.await;
    shared.progress.finish();
    let shared = Arc::into_inner(shared).ok_or_else(told::run::worker_outlived)?;
    let ends = Ends { work, start_line, draft: options.draft.filter(|_| idle), output: options.output };
    let mut summary = finish(shared, ends, started, options.input).await?;
    summary.retirement = retirement;
    Ok(summary)
}

/// The workers and what feeds them: `refresh --events`' reading of what happened (or, without a cursor, the
/// whole refresh), the list pages, then the row pass, unless the pages left nothing to read by id.
async fn dispatch_all(
    shared: &Arc<Shared>,
    (work, concurrency): (Work, usize),
    wanted: Wanted,
    refresh_since: u64,
    input: Option<crate::input::Stamp>,
) -> anyhow::Result<()> {
    let (queue, workers) = dispatch::spawn_workers(shared, concurrency);
    // `refresh --events` reads what happened since the last refresh, or (no cursor yet) runs whole.
    let whole = if work.by_events() { events::refresh(shared, &wanted).await? } else { None };
    // A refresh by pages that found every link it wanted has nothing left to read by id: no pass over the
    // input for it.
    let by_id = !work.is_refresh()
        || work.by_id()
        || (!work.by_events() || whole.is_some()) && pages::refresh_by_pages(shared, wanted).await;
    if by_id {
        let producer = Producer { shared: shared.clone(), work, refresh_since, input };
        tokio::task::spawn_blocking(move || producer.run(&queue)).await??;
    } else {
        drop(queue);
    }
    for worker in workers {
        let _ = worker.await;
    }
    // Only a whole refresh that read every link may say that nothing before its start is left unread.
    if let Some(start) = whole.filter(|_| !shared.stop.is_stopped() && shared.progress.failures() == 0) {
        events::mark(shared, start).await;
    }
    Ok(())
}

/// A listener for the job's webhooks (`linkbatch listen`), sharing what a run shares: the throttle, the outage
/// gate, the ledger. Reads the input once, for the rows of the ledger's live links.
pub async fn listener(plan: Plan, client: Client, book: Book, stop: Arc<Stop>) -> anyhow::Result<Listener> {
    // The server's time, before the windows are counted from the ledger's requests (recorded in it).
    if let Err(e) = client.read_clock().await {
        told::run::clock_unread(&e);
    }
    let shared = Arc::new(Shared::new(plan, client, book, stop, Progress::new(false, 0, "read")));
    let building = shared.clone();
    tokio::task::spawn_blocking(move || Listener::new(building)).await?
}

/// What changed in the input since the survey read it, in the words the run stops with.
fn input_changed(plan: &Plan, before: Option<&crate::input::Stamp>) -> Option<String> {
    let before = before?;
    let why = match crate::input::Stamp::of(plan.input_path()) {
        Ok(now) => now.change_since(before)?,
        Err(_) => told::run::UNREADABLE_INPUT,
    };
    Some(told::run::input_changed(plan.input_path(), why))
}

/// Answers kept because an earlier run could not read them, read again with this linkbatch's parsers: a
/// row whose answer now yields its link is `adopted` with it. The events are applied to the index at once
/// (the survey counts those rows as existing) and returned for the caller to append once the run goes
/// ahead; until then nothing on disk changes.
pub fn adopt_kept_answers(index: &mut Index, api: crate::terms::ApiKind, ledger: &std::path::Path) -> Vec<Event> {
    let mut adopted = Vec::new();
    for kept in crate::ledger::ReadBack::new(ledger).kept_answers(index) {
        let Event::Unreadable { key, fingerprint, body, .. } = kept else { continue };
        let Some(link) =
            serde_json::from_str(&body).ok().and_then(|json| crate::api::RemoteLink::read(api, &json).ok())
        else {
            continue;
        };
        if index.is_claimed(&link.id) {
            continue;
        }
        told::row::adopted_kept(&key, &link.id);
        let event = Event::Adopted {
            key,
            link_id: link.id,
            payment_uri: link.payment_uri,
            fingerprint,
            at: crate::ledger::Time::now(),
        };
        // An adoption's line is all the index keeps of it; the byte offset serves intents alone.
        index.record(event.clone(), 0);
        adopted.push(event);
    }
    adopted
}

/// The flags `asked` that the job's API cannot carry out (`done` is the work it can): said, once.
fn say_unapplied(asked: Work, done: Work) {
    told::run::unapplied(asked.replaces() && !done.replaces(), asked.updates() && !done.updates());
}

/// The ledger's mark of this run: a `run` event (links after it are this run's), or for `refresh` a
/// `refresh_started` unless one is being resumed. Returns the line the run starts at and, for a refresh, the
/// line of its start.
async fn mark_start(book: &Book, work: Work) -> Result<(u64, u64), LedgerError> {
    if work.is_refresh() {
        let unfinished = book.index().unfinished_refresh;
        let since = if let Some(line) = unfinished {
            told::run::refresh_resumed(line);
            line
        } else {
            book.record(Event::RefreshStarted { at: crate::ledger::Time::now() }).await?;
            book.index().lines
        };
        return Ok((book.index().last_run, since));
    }
    let start = book.index().lines;
    book.record(Event::Run { at: crate::ledger::Time::now(), version: env!("CARGO_PKG_VERSION").to_owned() }).await?;
    Ok((start, 0))
}

/// Streams the input from a blocking thread and hands each row's task to the workers: `blocking_send`
/// waits for a free worker, so memory does not grow with the input.
struct Producer {
    shared: Arc<Shared>,
    work: Work,
    refresh_since: u64,
    input: Option<crate::input::Stamp>,
}

impl Producer {
    fn run(self, queue: &tokio::sync::mpsc::Sender<Job>) -> anyhow::Result<()> {
        let shared = &self.shared;
        let mut reader = shared.plan.reader()?;
        // The file at the input's path is checked before each row goes to a worker (a stat beside a request
        // costs nothing), so no row read from another file is ever sent.
        // So is the ledger: lines written into a file removed from under the run reach no later run.
        let changed = || {
            let why = input_changed(&shared.plan, self.input.as_ref())
                .or_else(|| shared.book.check_in_place().err().map(|e| e.to_string()));
            why.inspect(|why| shared.abort(decide::Abort::Changed(why.clone()))).is_some()
        };
        for_each_row(&shared.plan, &mut reader, None, |row| {
            let Ok(row) = row else {
                return !shared.stop.is_stopped();
            };
            let task = {
                let index = shared.index();
                let state = index.get(&row.key.id());
                // The request a changed row's link was made with, read back only for a conflict.
                let before = state
                    .filter(|_| self.work.updates())
                    .filter(|s| s.link.is_some_and(|l| l.fingerprint != row.fingerprint()))
                    .and_then(|s| shared.book.read_back().request_of(&index, s));
                decide::task(self.work, row, state, self.refresh_since, before.as_ref())
            };
            let Some(task) = task else { return true };
            !shared.stop.is_stopped() && !changed() && queue.blocking_send((row.clone(), task)).is_ok()
        });
        Ok(())
    }
}

/// Records the output just put in place (`output`): a later run that finds this very file beside a ledger
/// ending with this event knows the ledger holds every link the file names, without reading it.
pub async fn record_output(book: &Book, path: &std::path::Path) -> Result<(), LedgerError> {
    if let Some(crate::ledger::FileStamp { bytes, modified }) = crate::ledger::file_stamp(path) {
        book.record(Event::Output { bytes, modified, at: crate::ledger::Time::now() }).await?;
    }
    Ok(())
}

/// How a run ends: its work, where it started in the ledger, the survey's draft, and whether it writes the
/// output.
struct Ends {
    work: Work,
    start_line: u64,
    draft: Option<OutputPass>,
    output: bool,
}

/// After the workers: the refresh's end mark, the output (the survey's draft when nothing was sent), and
/// the summary.
async fn finish(
    shared: Shared,
    Ends { work, start_line, draft, output }: Ends,
    started: Instant,
    input: Option<crate::input::Stamp>,
) -> anyhow::Result<Summary> {
    // The input read is the input, and the ledger written is the ledger at its path: else no output.
    let changed = input_changed(&shared.plan, input.as_ref())
        .or_else(|| shared.book.check_in_place().err().map(|e| e.to_string()));
    if let Some(why) = &changed {
        shared.abort(decide::Abort::Changed(why.clone()));
    }
    let aborted = shared.aborted();
    let interrupted = shared.stop.is_stopped() && aborted.is_none();
    if work.is_refresh() && !shared.stop.is_stopped() {
        shared.book.record(Event::RefreshFinished { at: crate::ledger::Time::now() }).await?;
    }
    let pace = pace_note(&shared);
    let written = match draft {
        // Another pass writes it.
        _ if !output => None,
        // The input is another file now: an output from it would hide what was sent. The draft is dropped
        // (and its file with it).
        _ if changed.is_some() => None,
        // Drafted as of `start_line`, and nothing was sent since.
        Some(draft) => Some(draft.finish()),
        None => Some(write_output(
            &shared.plan,
            &shared.index(),
            Some(start_line),
            work.is_refresh() || work == Work::Retire,
        )),
    };
    // An output that cannot be written (a full disk) aborts the run, after any cause met before it: the
    // summary still says what was made.
    let (written, aborted) = match written {
        Some(Err(e)) => (None, Some(told::run::then_output(aborted.as_ref(), &e))),
        written => (written.and_then(Result::ok), aborted),
    };
    if written.is_some() {
        let recorded = record_output(&shared.book, shared.plan.output_path()).await;
        // A ledger that failed already said so, and the summary still says what was made.
        if aborted.is_none() {
            recorded?;
        }
    }
    let output_written = written.is_some();
    let (counts, payments) = written.unwrap_or_default();
    Ok(Summary {
        output_written,
        made: shared.progress.made(),
        counts,
        payments,
        output: shared.plan.output_path().to_owned(),
        aborted,
        interrupted,
        requests: shared.requests.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        pace,
        retirement: None,
    })
}

/// What the summary says of the rates, when they were not the job's.
fn pace_note(shared: &Shared) -> Option<String> {
    let learned = shared.learned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    told::run::pace(&learned, shared.learned_before, &shared.throttle.rates(), shared.plan.rates())
}
