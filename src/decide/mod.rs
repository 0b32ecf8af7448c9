//! Every decision about a row, as pure functions: where it stands, what the runner does next after each
//! answer, whether a link may be replaced, what the output says of it. No I/O, no clock, no locks.
//!
//! The runner carries the steps out (throttle, HTTP, ledger append) and asks here again with what it got
//! back; every transition therefore has a unit test below that needs no server.

use std::time::{Duration, SystemTime};

use crate::api::ApiError;
use crate::digest::Digest;
use crate::ledger::{KeyState, LinkRecord};
use crate::plan::{PlannedRow, RowError};
use crate::request::LinkRequest;
use crate::terms::{OpenIntent, Payment, Status};

/// The error codes linkbatch itself writes into the output (the server's own codes pass through as sent).
pub mod codes {
    /// The row changed after its link was made.
    pub const CONFLICT: &str = "conflict";
    /// The row changed, and its link was paid, so `--replace-changed` kept it.
    pub const CONFLICT_PAID: &str = "conflict_paid";
    /// The server answered the row's create in a shape linkbatch cannot read: settled by hand only.
    pub const UNREADABLE_ANSWER: &str = "unreadable_answer";
    /// The last request's outcome is unknown (the next run reconciles it).
    pub const UNCERTAIN: &str = "uncertain";
    /// Every attempt met a retryable failure.
    pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";
    /// A rejected row: `invalid_` and the field at fault (`invalid_amount`, `invalid_key`…).
    pub const INVALID_PREFIX: &str = "invalid_";
}

/// Where one row stands before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Nothing to do: its link exists and the row is unchanged.
    Existing(LinkRecord),
    /// Its link exists but the row changed since.
    Conflict(LinkRecord),
    /// An earlier request's outcome is unknown: reconcile first.
    Uncertain(OpenIntent),
    /// The server answered its create in a shape linkbatch cannot read: the link may exist, so the row is
    /// never sent again until the user settles it (`linkbatch settle`).
    Unsettled,
    /// Never sent, or failed before: send.
    New,
}

/// What the ledger makes of a planned row (`state`: the ledger's record of its key). One rule, used by the
/// run, `validate`, `status` and the output.
pub fn disposition(row: &PlannedRow, state: Option<&KeyState>) -> Disposition {
    let Some(state) = state else {
        return Disposition::New;
    };
    if let Some(link) = state.link {
        if link.fingerprint == row.fingerprint() {
            return Disposition::Existing(link);
        }
        return Disposition::Conflict(link);
    }
    if state.unsettled().is_some() {
        return Disposition::Unsettled;
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

/// The paid rule, for `--replace-changed` and the refresh totals alike: at least one successful charge, or
/// a single-use link the server marks used. A Links+ status other than `active` is not payment by itself
/// (an expired or disabled link was never paid); it is reported in its own column.
pub fn is_paid(payment: &Payment) -> bool {
    payment.charges > 0 || payment.used == Some(true)
}

/// What a run does with the rows, as its command line asked: one value, built once in `cli`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// `run`: create links for new rows. `update` (`--update-changed`): a row whose description or metadata
    /// changed gets its link changed in place; `replace` (`--replace-changed`): a changed row's unpaid link is
    /// deleted and made again (classic API only).
    Create {
        /// `--update-changed`.
        update: bool,
        /// `--replace-changed`.
        replace: bool,
    },
    /// `refresh`: read each created link's payment state; `by_id` (`--by-id`): every link by id, none from
    /// the list pages.
    Refresh {
        /// `--by-id`.
        by_id: bool,
    },
}

impl Default for Work {
    fn default() -> Self {
        Work::Create { update: false, replace: false }
    }
}

impl Work {
    /// `refresh`.
    pub fn is_refresh(self) -> bool {
        matches!(self, Work::Refresh { .. })
    }

    /// `run --update-changed`.
    pub fn updates(self) -> bool {
        matches!(self, Work::Create { update: true, .. })
    }

    /// `run --replace-changed`.
    pub fn replaces(self) -> bool {
        matches!(self, Work::Create { replace: true, .. })
    }

    /// `refresh --by-id`.
    pub fn by_id(self) -> bool {
        matches!(self, Work::Refresh { by_id: true })
    }

    /// The work as `api` can do it: Links+ has no delete, so nothing is replaced there.
    pub fn for_api(self, api: crate::terms::ApiKind) -> Work {
        match self {
            Work::Create { update, replace: true } if api != crate::terms::ApiKind::Links => {
                Work::Create { update, replace: false }
            }
            work => work,
        }
    }
}

/// What a worker is given for one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Create its link: `open` is an earlier request whose outcome is unknown, `replace` an unpaid link of
    /// the row's earlier version to delete first.
    Create {
        /// The request to reconcile before any send.
        open: Option<OpenIntent>,
        /// The link to delete first.
        replace: Option<LinkRecord>,
    },
    /// Read its link's payment state.
    Refresh(LinkRecord),
    /// Change its link in place (`--update-changed`): only its description or metadata changed.
    Update(LinkRecord),
}

/// Whether a row changed only where a link can be changed in place (the Links guide: description and metadata; not
/// amount, currency, title or multiple).
pub fn updatable(before: &LinkRequest, now: &LinkRequest) -> bool {
    match (before, now) {
        (LinkRequest::Classic(b), LinkRequest::Classic(n)) => {
            (b.amount, &b.currency, &b.title, b.multiple) == (n.amount, &n.currency, &n.title, n.multiple)
                && (b.description != n.description || b.metadata != n.metadata)
        }
        _ => false,
    }
}

/// The task a row gives a run doing `work` (as its API can: [`Work::for_api`]), if any. `refresh_since`: the
/// ledger line of the refresh being done (a reading after it is fresh). `before`: with `--update-changed`,
/// the request a conflicting row's link was made with.
pub fn task(
    work: Work,
    row: &PlannedRow,
    state: Option<&KeyState>,
    refresh_since: u64,
    before: Option<&LinkRequest>,
) -> Option<Task> {
    if work.is_refresh() {
        // Every row with a link is read, unless this refresh (or the one it resumes) already did.
        let fresh = state.and_then(KeyState::payment).is_some_and(|(_, line)| *line > refresh_since);
        return state.and_then(|s| s.link).filter(|_| !fresh).map(Task::Refresh);
    }
    match disposition(row, state) {
        Disposition::New => Some(Task::Create { open: None, replace: None }),
        Disposition::Uncertain(open) => Some(Task::Create { open: Some(open), replace: None }),
        Disposition::Conflict(link) if before.is_some_and(|b| updatable(b, &row.request)) => Some(Task::Update(link)),
        Disposition::Conflict(link) if work.replaces() && state.is_some_and(|s| s.replace_refused().is_none()) => {
            Some(Task::Create { open: None, replace: Some(link) })
        }
        Disposition::Existing(_) | Disposition::Conflict(_) | Disposition::Unsettled => None,
    }
}

/// What the runner does next for a row it is creating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Look on the server for the link the open request may have made, and adopt it.
    Reconcile,
    /// Record an intent, then send the create.
    Send,
    /// Sleep, then take the next step.
    Wait {
        /// How long.
        delay: Duration,
        /// What then.
        then: Then,
    },
    /// The row has its link (created, or adopted): done.
    Done,
    /// Record a permanent failure with this code; `abort` stops the whole run too (a refused key).
    Fail {
        /// Error code for the ledger and the output.
        code: String,
        /// What happened.
        message: String,
        /// Stop every worker.
        abort: bool,
    },
    /// Stop trying for this run and leave the request open: the next run reconciles it.
    LeaveOpen {
        /// Why.
        reason: String,
    },
    /// Stop the whole run; nothing is recorded for the row.
    Abort {
        /// Why.
        reason: String,
    },
    /// An answer linkbatch cannot read: record it with its body (`unreadable`), and stop the run. After a
    /// create the row waits for the user (`Disposition::Unsettled`); after a list it stays uncertain.
    Unreadable {
        /// The create's answer (else a list's, during reconciliation).
        create: bool,
        /// HTTP status.
        status: u16,
        /// What could not be read.
        missing: String,
        /// The answer as sent.
        body: String,
    },
}

/// The step after a [`Step::Wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Reconcile.
    Reconcile,
    /// Send.
    Send,
}

impl From<Then> for Step {
    fn from(then: Then) -> Step {
        match then {
            Then::Reconcile => Step::Reconcile,
            Then::Send => Step::Send,
        }
    }
}

/// What came back from the last step.
#[derive(Debug, Clone, Copy)]
pub enum Answer<'a> {
    /// The server answered the create with a link (the runner recorded it).
    Created,
    /// Reconciliation ended: it adopted a link, or found none.
    Reconciled {
        /// A link was adopted.
        adopted: bool,
    },
    /// The create failed; it left at `sent`.
    CreateFailed(&'a ApiError, SystemTime),
    /// Listing the links failed.
    ReconcileFailed(&'a ApiError),
}

/// One row's create, from its first step to its last: the retry budget, and the request whose outcome is
/// unknown. `delays` are the pauses between attempts (the retry policy's backoff).
#[derive(Debug)]
pub struct Creating<'r, D> {
    request: &'r LinkRequest,
    fingerprint: Digest,
    open: Option<OpenIntent>,
    delays: D,
    attempts: u32,
    grace: Duration,
}

impl<'r, D: Iterator<Item = Duration>> Creating<'r, D> {
    /// A row about to be created; `open` is an earlier request of it whose outcome is unknown. `grace` is the
    /// least wait before reconciling a request that may still be in the server's hands.
    pub fn new(
        request: &'r LinkRequest,
        fingerprint: Digest,
        open: Option<OpenIntent>,
        delays: D,
        attempts: u32,
        grace: Duration,
    ) -> Self {
        Creating { request, fingerprint, open, delays, attempts, grace }
    }

    /// The first step: reconcile an open request, else send.
    pub fn first(&self) -> Step {
        if self.open.is_some() { Step::Reconcile } else { Step::Send }
    }

    /// The request whose outcome is unknown, which [`Step::Reconcile`] looks for.
    pub fn open(&self) -> Option<&OpenIntent> {
        self.open.as_ref()
    }

    /// The step after `answer`.
    pub fn after(&mut self, answer: Answer<'_>) -> Step {
        match answer {
            Answer::Created | Answer::Reconciled { adopted: true } => Step::Done,
            Answer::Reconciled { adopted: false } => {
                self.open = None;
                Step::Send
            }
            Answer::ReconcileFailed(ApiError::Fatal { code, message }) => {
                Step::Abort { reason: format!("{code}: {message}") }
            }
            // The turn waits while the server is away; the list costs no attempt.
            Answer::ReconcileFailed(ApiError::Unreachable { .. }) => Step::Reconcile,
            Answer::ReconcileFailed(error @ ApiError::Untrusted { .. }) => Step::Abort { reason: error.to_string() },
            Answer::ReconcileFailed(ApiError::Unreadable { status, missing, body }) => {
                Step::Unreadable { create: false, status: *status, missing: missing.clone(), body: body.clone() }
            }
            Answer::ReconcileFailed(error) => match self.delays.next() {
                Some(delay) => Step::Wait { delay: delay.max(retry_after(error)), then: Then::Reconcile },
                None => Step::LeaveOpen { reason: error.to_string() },
            },
            Answer::CreateFailed(error, sent) => self.after_create(error, sent),
        }
    }

    fn after_create(&mut self, error: &ApiError, sent: SystemTime) -> Step {
        match error {
            // Nothing left: the turn waits while the server is away, and the row spends no attempt.
            ApiError::Unreachable { .. } => Step::Send,
            ApiError::Untrusted { .. } => Step::Abort { reason: error.to_string() },
            ApiError::Retryable { reason, .. } => match self.delays.next() {
                Some(delay) => Step::Wait { delay: delay.max(retry_after(error)), then: Then::Send },
                None => Step::Fail {
                    code: codes::RETRIES_EXHAUSTED.into(),
                    message: format!("gave up after {} attempts: {reason}", self.attempts),
                    abort: false,
                },
            },
            ApiError::Uncertain { reason } => {
                let at = self.open.as_ref().map_or(sent, |o| o.at.min(sent));
                self.open = Some(OpenIntent { at, request: self.request.clone(), fingerprint: self.fingerprint });
                match self.delays.next() {
                    // A request still in the server's hands could land after a list that missed it.
                    Some(delay) => Step::Wait { delay: delay.max(self.grace), then: Then::Reconcile },
                    None => Step::LeaveOpen { reason: reason.clone() },
                }
            }
            ApiError::Permanent { code, message, .. } => {
                Step::Fail { code: code.clone(), message: message.clone(), abort: false }
            }
            ApiError::Fatal { code, message } => {
                Step::Fail { code: code.clone(), message: message.clone(), abort: true }
            }
            ApiError::Unreadable { status, missing, body } => {
                Step::Unreadable { create: true, status: *status, missing: missing.clone(), body: body.clone() }
            }
        }
    }
}

/// The server's `Retry-After`, when the error carries one (zero otherwise).
fn retry_after(error: &ApiError) -> Duration {
    match error {
        ApiError::Retryable { retry_after, .. } => retry_after.unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

/// What `recover` makes of one row, from the links the server holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// The row's link: the index of it among the links, and whether its `linkbatch_key` said so.
    Link {
        /// Index into the links.
        link: usize,
        /// Matched by the key in its metadata (else by content).
        by_key: bool,
    },
    /// Several links could be this row's and nothing tells which: settle by hand (`n` candidates).
    Ambiguous(usize),
    /// No link on the server is this row's: the next run sends it.
    None,
}

/// Matches rows (in input order) to the server's links (in creation order). A link whose metadata names a
/// row's key is that row's. Otherwise content decides, among links no key claims: rows of identical content
/// take as many identical links in order when the counts agree, since nothing else can tell them apart; when
/// they do not, every such row is ambiguous, never guessed.
pub fn recover(rows: &[(&str, &LinkRequest)], links: &[crate::api::RemoteLink]) -> Vec<Recovered> {
    use std::collections::HashMap;
    let mut out = vec![Recovered::None; rows.len()];
    let mut claimed = vec![false; links.len()];
    let by_key: HashMap<&str, usize> =
        links.iter().enumerate().filter(|(_, l)| !l.deleted).filter_map(|(i, l)| l.key().map(|k| (k, i))).collect();
    for (row, (key, _)) in rows.iter().enumerate() {
        if let Some(&link) = by_key.get(key) {
            claimed[link] = true;
            out[row] = Recovered::Link { link, by_key: true };
        }
    }
    // The rest by content: rows grouped by their request, each group with the unclaimed links it matches.
    let mut groups: Vec<(&LinkRequest, Vec<usize>)> = Vec::new();
    for (row, (_, request)) in rows.iter().enumerate().filter(|(row, _)| out[*row] == Recovered::None) {
        match groups.iter_mut().find(|(r, _)| *r == *request) {
            Some((_, members)) => members.push(row),
            None => groups.push((request, vec![row])),
        }
    }
    for (request, members) in groups {
        let candidates: Vec<usize> = (0..links.len())
            .filter(|&i| !claimed[i] && links[i].key().is_none() && links[i].matches(request))
            .collect();
        if candidates.len() == members.len() {
            for (&row, &link) in members.iter().zip(&candidates) {
                claimed[link] = true;
                out[row] = Recovered::Link { link, by_key: false };
            }
        } else if !candidates.is_empty() {
            for &row in &members {
                out[row] = Recovered::Ambiguous(candidates.len());
            }
        }
    }
    out
}

/// After an idempotent request (a read, a delete) failed: how long to wait before sending it again, or
/// `None` to give up (the error is permanent or fatal, or `next_delay` says the attempts ran out).
pub fn retry_read(error: &ApiError, delays: &mut impl Iterator<Item = Duration>) -> Option<Duration> {
    match error {
        ApiError::Permanent { .. }
        | ApiError::Fatal { .. }
        | ApiError::Unreadable { .. }
        | ApiError::Untrusted { .. } => None,
        // The turn waits while the server is away (at most `[retry] outage`); no attempt is spent.
        ApiError::Unreachable { .. } => Some(Duration::ZERO),
        ApiError::Retryable { .. } | ApiError::Uncertain { .. } => delays.next().map(|d| d.max(retry_after(error))),
    }
}

/// The rates a run starts from: the job's, unless an earlier run learned tighter ones under the same job
/// rates (the ledger's latest `learned`). `--limit` or a job whose rates changed starts from the given
/// rates again. Returns them, and whether they are learned ones.
pub fn starting_rates(
    given: &[crate::rate::Rate],
    from_flags: bool,
    learned: Option<&(Vec<String>, Vec<String>)>,
) -> (Vec<crate::rate::Rate>, bool) {
    let as_written: Vec<String> = given.iter().map(ToString::to_string).collect();
    let learned = learned
        .filter(|_| !from_flags)
        .filter(|(under, _)| *under == as_written)
        .and_then(|(_, rates)| rates.iter().map(|r| r.parse().ok()).collect::<Option<Vec<_>>>())
        .filter(|rates| rates.len() == given.len());
    match learned {
        Some(rates) => (rates, true),
        None => (given.to_vec(), false),
    }
}

/// `--replace-changed`, once the old link's payment state is read (`None`: the link is gone already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replace {
    /// Record `replace_intent`, delete the old link, record `deleted`; the row is then new.
    Delete,
    /// The link was paid: keep it, record why.
    Refuse(String),
}

/// Whether the changed row's old link `old` may be deleted.
pub fn replace(old: &str, payment: Option<&Payment>) -> Replace {
    match payment.filter(|p| is_paid(p)) {
        Some(p) => Replace::Refuse(format!(
            "link {old} has been paid ({} charge(s), {} {}); it was not replaced",
            p.charges, p.paid_amount, p.currency
        )),
        None => Replace::Delete,
    }
}

/// What the output says of one row: its status, its link (when it has one) and why it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The status column.
    pub status: Status,
    /// The row's link, when it has one.
    pub link: Option<LinkRecord>,
    /// The error code column.
    pub error_code: String,
    /// The error message column.
    pub error_message: String,
}

impl Report {
    fn plain(status: Status, link: Option<LinkRecord>) -> Report {
        Report { status, link, error_code: String::new(), error_message: String::new() }
    }
}

/// The output of a rejected row.
pub fn rejected(error: &RowError) -> Report {
    Report {
        status: Status::Rejected,
        link: None,
        error_code: format!("{}{}", codes::INVALID_PREFIX, error.field),
        error_message: error.reason.clone(),
    }
}

/// The output of a planned row. `run_start`: the ledger line the reported run began at (a link recorded
/// after it is `created`, before it `existing`; `None` reports every link as created). `link_id` and
/// `changes` say, for a conflict, which link it has and what changed (read from the ledger by the caller).
pub fn report(
    disposition: &Disposition,
    state: Option<&KeyState>,
    run_start: Option<u64>,
    link_id: &str,
    changes: &str,
) -> Report {
    match disposition {
        Disposition::Existing(link) => {
            let fresh = run_start.is_none_or(|start| link.line() > start);
            Report::plain(if fresh { Status::Created } else { Status::Existing }, Some(*link))
        }
        Disposition::Conflict(link) => {
            let (error_code, why) = match state.and_then(KeyState::replace_refused) {
                Some(reason) => (codes::CONFLICT_PAID, reason.to_owned()),
                None => (codes::CONFLICT, "not re-created (--replace-changed replaces an unpaid link)".to_owned()),
            };
            Report {
                status: Status::Conflict,
                link: Some(*link),
                error_code: error_code.into(),
                error_message: format!("row changed after link {link_id} was made ({changes}); {why}"),
            }
        }
        Disposition::Unsettled => Report {
            status: Status::Failed,
            link: None,
            error_code: codes::UNREADABLE_ANSWER.into(),
            error_message: state.and_then(KeyState::unsettled).map(unsettled_words).unwrap_or_default(),
        },
        Disposition::Uncertain(_) => Report {
            status: Status::Failed,
            link: None,
            error_code: codes::UNCERTAIN.into(),
            error_message: "the outcome of the last request is unknown; run again to reconcile".into(),
        },
        Disposition::New => match state.and_then(KeyState::failed) {
            Some((code, message)) => {
                Report { status: Status::Failed, link: None, error_code: code.clone(), error_message: message.clone() }
            }
            None => Report::plain(Status::Pending, None),
        },
    }
}

/// Why a row waits to be settled by hand, in the words its output row carries.
pub fn unsettled_words(unread: &crate::terms::Unread) -> String {
    let crate::terms::Unread { answer_to, status, missing, candidates } = unread;
    let settle = "the row is not sent again: settle it with `linkbatch settle`";
    if let Some(n) = candidates {
        format!("`linkbatch recover` found {n} links that could each be this row's; {settle}")
    } else if *answer_to == crate::terms::AnswerTo::Recover {
        format!("`linkbatch recover` found {missing}; {settle}")
    } else {
        format!(
            "the server answered the create with HTTP {status} and no readable {missing} (kept in the ledger); the \
             link may exist, so the row is not sent again: settle it with `linkbatch settle`"
        )
    }
}

mod breaker;
pub mod delivery;
mod outage;

pub use breaker::Breaker;
pub use outage::{Away, Outage};

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use rstest::rstest;

    use super::*;
    use crate::ledger::{Event, Index};
    use crate::request::ClassicRequest;

    const GRACE: Duration = Duration::from_secs(2);

    fn learned(under: &[&str], rates: &[&str]) -> (Vec<String>, Vec<String>) {
        (under.iter().map(|&r| r.to_owned()).collect(), rates.iter().map(|&r| r.to_owned()).collect())
    }

    #[rstest]
    #[case::nothing_learned(&["20/s", "1000/h"], false, None, &["20/s", "1000/h"], false)]
    #[case::learned_under_the_same_rates(&["20/s", "1000/h"], false, Some(learned(&["20/s", "1000/h"], &["10/s", "1000/h"])), &["10/s", "1000/h"], true)]
    #[case::a_limit_flag_resets_it(&["20/s", "1000/h"], true, Some(learned(&["20/s", "1000/h"], &["10/s", "1000/h"])), &["20/s", "1000/h"], false)]
    #[case::changed_job_rates_reset_it(&["30/s", "1000/h"], false, Some(learned(&["20/s", "1000/h"], &["10/s", "1000/h"])), &["30/s", "1000/h"], false)]
    #[case::an_unreadable_record_is_not_used(&["20/s"], false, Some(learned(&["20/s"], &["ten/s"])), &["20/s"], false)]
    fn a_run_starts_from_learned_rates_only_under_the_same_job_rates(
        #[case] given: &[&str],
        #[case] from_flags: bool,
        #[case] record: Option<(Vec<String>, Vec<String>)>,
        #[case] expected: &[&str],
        #[case] is_learned: bool,
    ) {
        let given: Vec<crate::rate::Rate> = given.iter().map(|r| r.parse().unwrap()).collect();
        let (rates, from_ledger) = starting_rates(&given, from_flags, record.as_ref());
        let rates: Vec<String> = rates.iter().map(ToString::to_string).collect();
        assert_eq!(
            (rates.iter().map(String::as_str).collect::<Vec<_>>(), from_ledger),
            (expected.to_vec(), is_learned)
        );
    }

    fn request(title: &str) -> LinkRequest {
        LinkRequest::Classic(ClassicRequest {
            amount: 1000,
            currency: "thb".into(),
            title: title.into(),
            description: "d".into(),
            multiple: false,
            metadata: std::collections::BTreeMap::new(),
        })
    }

    fn row(title: &str) -> PlannedRow {
        PlannedRow::new(2, "k".into(), request(title), Vec::new())
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn stamp(secs: u64) -> String {
        humantime::format_rfc3339_millis(at(secs)).to_string()
    }

    /// What the ledger holds of key `k`, as events written for a row titled `title`.
    #[derive(Clone, Copy, Debug)]
    enum Ev {
        Intent(u64),
        Created(&'static str),
        Failed,
        Deleted,
        Refused,
        Paid(u64),
        /// The create's answer could not be read.
        Unread,
        /// The list's answer could not be read.
        UnreadList,
        /// Settled by hand: the link (`Some`), or none made.
        Settled(bool),
    }

    fn index(events: &[Ev]) -> Index {
        let mut index = Index::default();
        index.record(Event::Run { at: stamp(0), version: "t".into() }, 1);
        for (n, event) in events.iter().enumerate() {
            let (key, link_id) = ("k".to_owned(), "link_test_1".to_owned());
            let event = match *event {
                Ev::Intent(secs) => Event::Intent {
                    key,
                    fingerprint: request("a").fingerprint().to_string(),
                    at: stamp(secs),
                    request: request("a"),
                },
                Ev::Created(title) => Event::Created {
                    key,
                    link_id,
                    payment_uri: "https://pay.example/l/1".into(),
                    fingerprint: request(title).fingerprint().to_string(),
                    at: stamp(9),
                },
                Ev::Failed => Event::Failed {
                    key,
                    fingerprint: String::new(),
                    code: "invalid_amount".into(),
                    message: "too small".into(),
                    at: stamp(9),
                },
                Ev::Deleted => Event::Deleted { key, link_id, at: stamp(9) },
                Ev::Refused => Event::ReplaceRefused { key, link_id, reason: "paid".into(), at: stamp(9) },
                Ev::Unread | Ev::UnreadList => Event::Unreadable {
                    key,
                    fingerprint: request("a").fingerprint().to_string(),
                    answer_to: if matches!(event, Ev::Unread) {
                        crate::terms::AnswerTo::Create
                    } else {
                        crate::terms::AnswerTo::List
                    },
                    status: 200,
                    missing: "id".into(),
                    body: "{}".into(),
                    at: stamp(9),
                },
                Ev::Settled(made) => Event::Settled {
                    key,
                    link_id: made.then_some(link_id),
                    payment_uri: made.then(|| "https://pay.example/l/1".into()),
                    fingerprint: request("a").fingerprint().to_string(),
                    at: stamp(9),
                },
                Ev::Paid(charges) => Event::Refreshed {
                    key,
                    link_id,
                    payment: Payment {
                        charges,
                        paid_amount: charges * 1000,
                        currency: "thb".into(),
                        ..Payment::default()
                    },
                    at: stamp(9),
                },
            };
            index.record(event, 100 * (n as u64 + 1));
        }
        index
    }

    fn state(index: &Index) -> Option<&KeyState> {
        index.get(&Digest::of(b"k"))
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Is {
        New,
        Existing,
        Conflict,
        UncertainSince(u64),
        Unsettled,
    }

    #[rstest]
    #[case::never_seen(&[], Is::New)]
    #[case::created_unchanged(&[Ev::Intent(1), Ev::Created("a")], Is::Existing)]
    #[case::created_then_changed(&[Ev::Intent(1), Ev::Created("b")], Is::Conflict)]
    #[case::intent_with_no_outcome(&[Ev::Intent(1)], Is::UncertainSince(1))]
    #[case::two_open_intents_from_the_earliest(&[Ev::Intent(5), Ev::Intent(3)], Is::UncertainSince(3))]
    #[case::failed_is_sent_again(&[Ev::Intent(1), Ev::Failed], Is::New)]
    #[case::failed_then_sent_again_uncertain(&[Ev::Intent(1), Ev::Failed, Ev::Intent(4)], Is::UncertainSince(4))]
    #[case::deleted_is_new_again(&[Ev::Intent(1), Ev::Created("b"), Ev::Deleted], Is::New)]
    #[case::deleted_then_uncertain(&[Ev::Intent(1), Ev::Created("b"), Ev::Deleted, Ev::Intent(7)], Is::UncertainSince(7))]
    #[case::unreadable_create_waits_to_be_settled(&[Ev::Intent(1), Ev::Unread], Is::Unsettled)]
    #[case::unreadable_list_stays_uncertain(&[Ev::Intent(1), Ev::UnreadList], Is::UncertainSince(1))]
    #[case::settled_with_its_link(&[Ev::Intent(1), Ev::Unread, Ev::Settled(true)], Is::Existing)]
    #[case::settled_as_never_made(&[Ev::Intent(1), Ev::Unread, Ev::Settled(false)], Is::New)]
    #[case::recreated_after_delete(&[Ev::Created("b"), Ev::Deleted, Ev::Intent(7), Ev::Created("a")], Is::Existing)]
    fn disposition_from_the_ledger(#[case] events: &[Ev], #[case] expected: Is) {
        let index = index(events);
        let found = match disposition(&row("a"), state(&index)) {
            Disposition::New => Is::New,
            Disposition::Existing(_) => Is::Existing,
            Disposition::Conflict(_) => Is::Conflict,
            Disposition::Unsettled => Is::Unsettled,
            Disposition::Uncertain(open) => {
                // An intent this run wrote (none read from the file) is the row's own request.
                assert_eq!((open.request, open.fingerprint), (request("a"), request("a").fingerprint()));
                Is::UncertainSince(open.at.duration_since(at(0)).unwrap().as_secs())
            }
        };
        assert_eq!(found, expected);
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Gives {
        Nothing,
        Create,
        Reconcile,
        Replace,
        Refresh,
    }

    const CREATE: Work = Work::Create { update: false, replace: false };
    const REPLACE: Work = Work::Create { update: false, replace: true };
    const REFRESH: Work = Work::Refresh { by_id: false };

    #[rstest]
    #[case::new_row_is_created(REPLACE, &[], Gives::Create)]
    #[case::failed_row_is_created_again(CREATE, &[Ev::Intent(1), Ev::Failed], Gives::Create)]
    #[case::uncertain_row_is_reconciled(CREATE, &[Ev::Intent(1)], Gives::Reconcile)]
    #[case::existing_row_is_left(CREATE, &[Ev::Created("a")], Gives::Nothing)]
    #[case::conflict_is_left_by_run(CREATE, &[Ev::Created("b")], Gives::Nothing)]
    #[case::conflict_is_left_without_delete(REPLACE.for_api(crate::terms::ApiKind::LinksPlus), &[Ev::Created("b")], Gives::Nothing)]
    #[case::conflict_is_replaced(REPLACE, &[Ev::Created("b")], Gives::Replace)]
    #[case::paid_conflict_is_kept(REPLACE, &[Ev::Created("b"), Ev::Refused], Gives::Nothing)]
    #[case::replacing_still_creates_new(REPLACE, &[], Gives::Create)]
    #[case::unsettled_row_is_never_sent(REPLACE, &[Ev::Intent(1), Ev::Unread], Gives::Nothing)]
    #[case::refresh_reads_a_link(REFRESH, &[Ev::Created("a")], Gives::Refresh)]
    #[case::refresh_reads_a_conflicting_link(REFRESH, &[Ev::Created("b")], Gives::Refresh)]
    #[case::refresh_skips_rows_without_link(REFRESH, &[Ev::Intent(1)], Gives::Nothing)]
    #[case::refresh_skips_a_fresh_reading(REFRESH, &[Ev::Created("a"), Ev::Paid(1)], Gives::Nothing)]
    fn task_for_a_row(#[case] work: Work, #[case] events: &[Ev], #[case] expected: Gives) {
        let index = index(events);
        // Refresh since line 2: a reading after the row's events is fresh, one before it is not.
        let gives = match task(work, &row("a"), state(&index), 2, None) {
            None => Gives::Nothing,
            Some(Task::Create { open: None, replace: None }) => Gives::Create,
            Some(Task::Create { open: Some(_), replace: None }) => Gives::Reconcile,
            Some(Task::Create { open: None, replace: Some(_) }) => Gives::Replace,
            Some(Task::Create { .. }) => panic!("reconcile and replace at once"),
            Some(Task::Refresh(_)) => Gives::Refresh,
            Some(Task::Update(_)) => panic!("no update without --update-changed"),
        };
        assert_eq!(gives, expected);
    }

    #[test]
    fn refresh_reads_again_a_reading_older_than_this_refresh() {
        let index = index(&[Ev::Created("a"), Ev::Paid(1)]);
        assert!(matches!(task(REFRESH, &row("a"), state(&index), 99, None), Some(Task::Refresh(_))));
    }

    #[test]
    fn only_a_description_or_metadata_change_is_updated_in_place() {
        let before = request("a");
        let with = |f: &dyn Fn(&mut crate::request::ClassicRequest)| {
            let LinkRequest::Classic(mut r) = before.clone() else { unreachable!("a classic request") };
            f(&mut r);
            LinkRequest::Classic(r)
        };
        assert!(updatable(&before, &with(&|r| r.description = "new".into())));
        assert!(updatable(&before, &with(&|r| _ = r.metadata.insert("invoice".into(), "9".into()))));
        assert!(!updatable(&before, &with(&|r| r.amount += 1)), "an amount change stays a conflict");
        assert!(!updatable(&before, &with(&|r| r.title = "b".into())));
        assert!(!updatable(&before, &before), "nothing changed: nothing to update");
        // The row's link was made from `before`; the row now has a new description.
        let index = index(&[Ev::Created("b")]);
        let row = PlannedRow::new(2, "k".into(), with(&|r| r.description = "new".into()), Vec::new());
        assert!(matches!(task(CREATE, &row, state(&index), 0, Some(&before)), Some(Task::Update(_))));
        assert_eq!(task(CREATE, &row, state(&index), 0, None), None, "without the flag: a conflict");
        let retitled = with(&|r| r.title = "z".into());
        assert_eq!(task(CREATE, &row, state(&index), 0, Some(&retitled)), None, "a title change is left");
    }

    /// An answer the runner brings back, in the table below.
    #[derive(Clone, Copy, Debug)]
    enum A {
        Created,
        Adopted,
        NotFound,
        /// The create failed with this error.
        Create(E),
        /// The list failed with this error.
        List(E),
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum E {
        Retry,
        RetryAfter(u64),
        RateLimited(u64),
        Uncertain,
        Permanent,
        Fatal,
        Unreadable,
        Unreachable,
        Untrusted,
    }

    impl E {
        fn error(self) -> ApiError {
            let retryable = |after: Option<u64>, rate_limited| ApiError::Retryable {
                retry_after: after.map(Duration::from_secs),
                rate_limited,
                reason: "busy".into(),
            };
            match self {
                E::Retry => retryable(None, false),
                E::RetryAfter(s) => retryable(Some(s), false),
                E::RateLimited(s) => retryable(Some(s), true),
                E::Uncertain => ApiError::Uncertain { reason: "timed out".into() },
                E::Permanent => {
                    ApiError::Permanent { status: 400, code: "invalid_amount".into(), message: "too small".into() }
                }
                E::Fatal => ApiError::Fatal { code: "authentication_failure".into(), message: "no".into() },
                E::Unreadable => ApiError::Unreadable { status: 200, missing: "id".into(), body: "{}".into() },
                E::Unreachable => ApiError::Unreachable { reason: "connection refused".into() },
                E::Untrusted => ApiError::Untrusted { reason: "unknown issuer".into() },
            }
        }
    }

    fn wait(secs: u64, then: Then) -> Step {
        Step::Wait { delay: Duration::from_secs(secs), then }
    }

    fn fail(code: &str, message: &str, abort: bool) -> Step {
        Step::Fail { code: code.into(), message: message.into(), abort }
    }

    fn unread(create: bool) -> Step {
        Step::Unreadable { create, status: 200, missing: "id".into(), body: "{}".into() }
    }

    fn leave(reason: &str) -> Step {
        Step::LeaveOpen { reason: reason.into() }
    }

    const EXHAUSTED: &str = "gave up after 3 attempts: busy";
    const REFUSED: &str = "authentication_failure: no";
    const UNTRUSTED: &str = "unknown issuer: nothing was sent. If the server is right (a staging host with an internal CA, \
                             a proxy that inspects TLS), trust its CA: name its PEM file in SSL_CERT_FILE (or a \
                             directory in SSL_CERT_DIR), or add it to the system's trust store";

    /// The create loop: an open request or not, three attempts (delays of 1 s and 5 s between them), and
    /// the steps after each answer in turn.
    #[rstest]
    #[case::new_row_is_sent(false, &[], &[Step::Send])]
    #[case::open_request_is_reconciled_first(true, &[], &[Step::Reconcile])]
    #[case::created_is_done(false, &[A::Created], &[Step::Send, Step::Done])]
    #[case::adopted_is_done(true, &[A::Adopted], &[Step::Reconcile, Step::Done])]
    #[case::nothing_found_is_sent(true, &[A::NotFound, A::Created], &[Step::Reconcile, Step::Send, Step::Done])]
    #[case::retryable_waits_then_sends(false, &[A::Create(E::Retry)], &[Step::Send, wait(1, Then::Send)])]
    #[case::retry_after_longer_than_backoff(false, &[A::Create(E::RetryAfter(30))], &[Step::Send, wait(30, Then::Send)])]
    #[case::retry_after_shorter_than_backoff(false, &[A::Create(E::Retry), A::Create(E::RetryAfter(2))], &[Step::Send, wait(1, Then::Send), wait(5, Then::Send)])]
    #[case::rate_limited_waits_its_retry_after(false, &[A::Create(E::RateLimited(9))], &[Step::Send, wait(9, Then::Send)])]
    #[case::retries_run_out(false, &[A::Create(E::Retry), A::Create(E::Retry), A::Create(E::Retry)], &[Step::Send, wait(1, Then::Send), wait(5, Then::Send), fail(codes::RETRIES_EXHAUSTED, EXHAUSTED, false)])]
    #[case::retry_then_created(false, &[A::Create(E::Retry), A::Created], &[Step::Send, wait(1, Then::Send), Step::Done])]
    #[case::uncertain_waits_the_grace_then_reconciles(false, &[A::Create(E::Uncertain)], &[Step::Send, wait(2, Then::Reconcile)])]
    #[case::uncertain_waits_a_longer_backoff(false, &[A::Create(E::Retry), A::Create(E::Uncertain)], &[Step::Send, wait(1, Then::Send), wait(5, Then::Reconcile)])]
    #[case::uncertain_then_adopted(false, &[A::Create(E::Uncertain), A::Adopted], &[Step::Send, wait(2, Then::Reconcile), Step::Done])]
    #[case::uncertain_then_missing_is_sent_again(false, &[A::Create(E::Uncertain), A::NotFound, A::Created], &[Step::Send, wait(2, Then::Reconcile), Step::Send, Step::Done])]
    #[case::uncertain_out_of_attempts_stays_open(false, &[A::Create(E::Uncertain), A::NotFound, A::Create(E::Uncertain), A::NotFound, A::Create(E::Uncertain)], &[Step::Send, wait(2, Then::Reconcile), Step::Send, wait(5, Then::Reconcile), Step::Send, leave("timed out")])]
    #[case::permanent_fails_the_row(false, &[A::Create(E::Permanent)], &[Step::Send, fail("invalid_amount", "too small", false)])]
    #[case::permanent_after_a_retry(false, &[A::Create(E::Retry), A::Create(E::Permanent)], &[Step::Send, wait(1, Then::Send), fail("invalid_amount", "too small", false)])]
    #[case::fatal_create_fails_and_aborts(false, &[A::Create(E::Fatal)], &[Step::Send, fail("authentication_failure", "no", true)])]
    #[case::list_retryable_reconciles_again(true, &[A::List(E::Retry), A::Adopted], &[Step::Reconcile, wait(1, Then::Reconcile), Step::Done])]
    #[case::list_rate_limited_waits_its_retry_after(true, &[A::List(E::RateLimited(60))], &[Step::Reconcile, wait(60, Then::Reconcile)])]
    #[case::list_permanent_reconciles_again(true, &[A::List(E::Permanent)], &[Step::Reconcile, wait(1, Then::Reconcile)])]
    #[case::list_uncertain_reconciles_again(true, &[A::List(E::Uncertain)], &[Step::Reconcile, wait(1, Then::Reconcile)])]
    #[case::unreadable_create_is_kept_and_stops(false, &[A::Create(E::Unreadable)], &[Step::Send, unread(true)])]
    #[case::unreadable_create_after_a_retry(false, &[A::Create(E::Retry), A::Create(E::Unreadable)], &[Step::Send, wait(1, Then::Send), unread(true)])]
    #[case::unreadable_list_is_kept_and_stops(true, &[A::List(E::Unreadable)], &[Step::Reconcile, unread(false)])]
    #[case::unreadable_list_after_an_uncertain_create(false, &[A::Create(E::Uncertain), A::List(E::Unreadable)], &[Step::Send, wait(2, Then::Reconcile), unread(false)])]
    #[case::list_fatal_aborts(true, &[A::List(E::Fatal)], &[Step::Reconcile, Step::Abort { reason: REFUSED.into() }])]
    #[case::unreachable_create_is_sent_again_for_free(false, &[A::Create(E::Unreachable), A::Create(E::Unreachable), A::Create(E::Unreachable), A::Create(E::Retry), A::Created], &[Step::Send, Step::Send, Step::Send, Step::Send, wait(1, Then::Send), Step::Done])]
    #[case::unreachable_list_reconciles_again_for_free(true, &[A::List(E::Unreachable), A::Adopted], &[Step::Reconcile, Step::Reconcile, Step::Done])]
    #[case::untrusted_create_aborts(false, &[A::Create(E::Untrusted)], &[Step::Send, Step::Abort { reason: UNTRUSTED.into() }])]
    #[case::untrusted_list_aborts(true, &[A::List(E::Untrusted)], &[Step::Reconcile, Step::Abort { reason: UNTRUSTED.into() }])]
    #[case::list_out_of_attempts_stays_open(true, &[A::List(E::Retry), A::List(E::Retry), A::List(E::Retry)], &[Step::Reconcile, wait(1, Then::Reconcile), wait(5, Then::Reconcile), leave("busy")])]
    #[case::retries_are_shared_by_reconcile_and_send(true, &[A::List(E::Retry), A::NotFound, A::Create(E::Retry), A::Create(E::Retry)], &[Step::Reconcile, wait(1, Then::Reconcile), Step::Send, wait(5, Then::Send), fail(codes::RETRIES_EXHAUSTED, EXHAUSTED, false)])]
    fn create_transitions(#[case] open: bool, #[case] answers: &[A], #[case] expected: &[Step]) {
        let request = request("a");
        let open = open.then(|| OpenIntent { at: at(1), request: request.clone(), fingerprint: request.fingerprint() });
        let delays = [1, 5].into_iter().map(Duration::from_secs);
        let mut creating = Creating::new(&request, request.fingerprint(), open, delays, 3, GRACE);
        let mut steps = vec![creating.first()];
        for answer in answers {
            let (error, sent) = match answer {
                A::Create(e) | A::List(e) => (Some(e.error()), at(50)),
                _ => (None, at(50)),
            };
            let answer = match (answer, &error) {
                (A::Created, _) => Answer::Created,
                (A::Adopted, _) => Answer::Reconciled { adopted: true },
                (A::NotFound, _) => Answer::Reconciled { adopted: false },
                (A::Create(_), Some(e)) => Answer::CreateFailed(e, sent),
                (A::List(_), Some(e)) => Answer::ReconcileFailed(e),
                _ => unreachable!("errors are made for A::Create and A::List"),
            };
            steps.push(creating.after(answer));
        }
        assert_eq!(steps, expected);
    }

    #[test]
    fn an_uncertain_create_is_looked_for_from_its_earliest_send() {
        let old = request("old");
        let new = request("new");
        let open = Some(OpenIntent { at: at(10), request: old.clone(), fingerprint: old.fingerprint() });
        let delays = std::iter::repeat(Duration::from_secs(1));
        let mut creating = Creating::new(&new, new.fingerprint(), open, delays, 9, GRACE);
        assert_eq!(creating.open().map(|o| &o.request), Some(&old));
        assert_eq!(creating.after(Answer::Reconciled { adopted: false }), Step::Send);
        assert_eq!(creating.open(), None, "nothing found: the request is no longer open");
        let error = E::Uncertain.error();
        creating.after(Answer::CreateFailed(&error, at(20)));
        creating.after(Answer::CreateFailed(&error, at(30)));
        // Searched from the first uncertain send, with the row's own request.
        assert_eq!(
            creating.open(),
            Some(&OpenIntent { at: at(20), request: new.clone(), fingerprint: new.fingerprint() })
        );
    }

    #[test]
    fn an_uncertain_create_keeps_the_older_open_time() {
        let request = request("a");
        let open = Some(OpenIntent { at: at(5), request: request.clone(), fingerprint: request.fingerprint() });
        let mut creating = Creating::new(&request, request.fingerprint(), open, std::iter::empty(), 1, GRACE);
        let error = E::Uncertain.error();
        assert_eq!(creating.after(Answer::CreateFailed(&error, at(40))), leave("timed out"));
        assert_eq!(creating.open().map(|o| o.at), Some(at(5)));
    }

    #[rstest]
    #[case::retryable_waits_the_backoff(E::Retry, Some(3), Some(3))]
    #[case::retryable_waits_a_longer_retry_after(E::RetryAfter(10), Some(3), Some(10))]
    #[case::rate_limited_waits_retry_after(E::RateLimited(4), Some(1), Some(4))]
    #[case::retryable_out_of_attempts(E::Retry, None, None)]
    #[case::uncertain_read_is_sent_again(E::Uncertain, Some(2), Some(2))]
    #[case::uncertain_read_out_of_attempts(E::Uncertain, None, None)]
    #[case::permanent_is_final(E::Permanent, Some(2), None)]
    #[case::fatal_is_final(E::Fatal, Some(2), None)]
    #[case::unreadable_is_final(E::Unreadable, Some(2), None)]
    #[case::unreachable_spends_no_attempt(E::Unreachable, None, Some(0))]
    #[case::untrusted_is_final(E::Untrusted, Some(2), None)]
    fn idempotent_retries(#[case] error: E, #[case] next: Option<u64>, #[case] expected: Option<u64>) {
        let mut delays = next.map(Duration::from_secs).into_iter();
        let wait = retry_read(&error.error(), &mut delays);
        assert_eq!(wait, expected.map(Duration::from_secs));
        if error == E::Unreachable {
            assert_eq!(delays.count(), usize::from(next.is_some()), "no attempt spent");
        }
    }

    #[test]
    fn an_outage_probes_with_backoff_and_gives_up_at_its_limit() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let after = |s: u64| t0 + Duration::from_secs(s);
        let mut outage = Outage::new(Duration::from_secs(20), Duration::from_secs(1), Duration::from_secs(8));
        assert_eq!(outage.next(t0), Away::Up);
        assert!(outage.away(t0, "connection refused"), "the first refusal starts the outage");
        for _ in 0..7 {
            assert!(!outage.away(t0, "connection refused"), "the others in flight count once");
        }
        assert_eq!(outage.next(after(0)), Away::Probe(Duration::from_secs(1)));
        outage.away(after(1), "connection refused");
        assert_eq!(outage.next(after(1)), Away::Probe(Duration::from_secs(2)));
        assert_eq!(outage.next(after(3)), Away::Probe(Duration::from_secs(4)));
        assert_eq!(outage.next(after(7)), Away::Probe(Duration::from_secs(8)));
        assert_eq!(outage.next(after(15)), Away::Probe(Duration::from_secs(5)), "never past the limit");
        let Away::GiveUp(reason) = outage.next(after(20)) else { panic!("not given up at the limit") };
        assert!(reason.starts_with("the server could not be reached since 1970-01-12T13:46:40Z (connection refused)"));
        assert_eq!(outage.back(after(21)), Some(Duration::from_secs(21)));
        assert_eq!((outage.next(after(22)), outage.back(after(22))), (Away::Up, None));
        assert!(outage.away(after(30), "no route"));
        assert_eq!(outage.next(after(30)), Away::Probe(Duration::from_secs(1)), "a new outage backs off afresh");
    }

    fn payment(charges: u64, used: Option<bool>, status: Option<&str>) -> Payment {
        Payment {
            used,
            charges,
            paid_amount: charges * 1000,
            refunded_amount: 0,
            currency: "thb".into(),
            last_paid_at: None,
            link_status: status.map(str::to_owned),
        }
    }

    #[rstest]
    #[case::never_charged(payment(0, Some(false), None), false)]
    #[case::one_charge(payment(1, Some(false), None), true)]
    #[case::used_single_use(payment(0, Some(true), None), true)]
    #[case::plus_unpaid(payment(0, None, Some("active")), false)]
    #[case::plus_paid(payment(2, None, Some("paid")), true)]
    #[case::plus_expired_is_not_paid(payment(0, None, Some("expired")), false)]
    fn the_paid_rule(#[case] payment: Payment, #[case] paid: bool) {
        assert_eq!(is_paid(&payment), paid);
        // One rule for both uses: a paid link is never replaced, an unpaid one is.
        let decision = replace("link_1", Some(&payment));
        assert_eq!(decision == Replace::Delete, !paid, "{decision:?}");
    }

    #[test]
    fn a_link_gone_already_is_deleted_again_harmlessly() {
        assert_eq!(replace("link_1", None), Replace::Delete);
        assert_eq!(
            replace("link_1", Some(&payment(2, None, None))),
            Replace::Refuse("link link_1 has been paid (2 charge(s), 2000 thb); it was not replaced".into())
        );
    }

    #[rstest]
    #[case::created_by_this_run(&[Ev::Intent(1), Ev::Created("a")], Some(1), Status::Created, "")]
    #[case::created_by_an_earlier_run(&[Ev::Intent(1), Ev::Created("a")], Some(5), Status::Existing, "")]
    #[case::every_link_created_without_a_run(&[Ev::Intent(1), Ev::Created("a")], None, Status::Created, "")]
    #[case::conflict(&[Ev::Intent(1), Ev::Created("b")], Some(1), Status::Conflict, codes::CONFLICT)]
    #[case::conflict_kept_paid(&[Ev::Created("b"), Ev::Refused], Some(1), Status::Conflict, codes::CONFLICT_PAID)]
    #[case::uncertain(&[Ev::Intent(1)], Some(1), Status::Failed, codes::UNCERTAIN)]
    #[case::failed(&[Ev::Intent(1), Ev::Failed], Some(1), Status::Failed, "invalid_amount")]
    #[case::pending(&[], Some(1), Status::Pending, "")]
    #[case::unsettled(&[Ev::Intent(1), Ev::Unread], Some(1), Status::Failed, codes::UNREADABLE_ANSWER)]
    fn output_of_a_row(
        #[case] events: &[Ev],
        #[case] run_start: Option<u64>,
        #[case] status: Status,
        #[case] code: &str,
    ) {
        let index = index(events);
        let row = row("a");
        let disposition = disposition(&row, state(&index));
        let out = report(&disposition, state(&index), run_start, "link_test_1", "title \"b\" -> \"a\"");
        assert_eq!((out.status, out.error_code.as_str()), (status, code));
        assert_eq!(out.link.is_some(), matches!(status, Status::Created | Status::Existing | Status::Conflict));
        assert_eq!(out.error_message.is_empty(), code.is_empty(), "{}", out.error_message);
        if status == Status::Conflict {
            assert!(out.error_message.starts_with("row changed after link link_test_1 was made (title"));
        }
    }

    /// Outcomes in the order answers come back; every create took its turn just before its answer.
    #[rstest]
    #[case::trips_at_the_limit(3, &["cap", "cap", "cap"], Some(2))]
    #[case::another_code_starts_again(3, &["cap", "cap", "other", "cap", "cap"], None)]
    #[case::a_success_starts_again(3, &["cap", "cap", "ok", "cap", "cap"], None)]
    #[case::after_a_success_trips_again(2, &["cap", "ok", "cap", "cap"], Some(3))]
    #[case::a_limit_of_one_trips_at_once(1, &["cap"], Some(0))]
    #[case::lost_answers_count_once_a_refusal_is_heard(3, &["lost", "cap", "lost"], Some(2))]
    #[case::lost_answers_alone_trip_at_the_limit(2, &["lost", "lost", "lost"], Some(1))]
    #[case::lost_answers_below_the_limit_trip_nothing(3, &["lost", "lost", "ok", "lost", "lost"], None)]
    #[case::a_success_forgets_lost_answers(3, &["cap", "lost", "ok", "cap", "lost"], None)]
    fn the_breaker(#[case] limit: u32, #[case] outcomes: &[&str], #[case] trips_at: Option<usize>) {
        let mut breaker = Breaker::new(limit);
        let mut tripped = None;
        for (i, outcome) in outcomes.iter().enumerate() {
            let (turn, _) = breaker.turn();
            if *outcome == "ok" {
                breaker.success(Some(turn));
            } else if *outcome == "lost" {
                if let Some(reason) = breaker.lost() {
                    assert!(reason.contains("pending"), "{reason}");
                    tripped.get_or_insert(i);
                }
            } else if let Some(reason) = breaker.failure(outcome) {
                assert!(reason.contains(&format!("`{outcome}`")) && reason.contains("pending"), "{reason}");
                tripped.get_or_insert(i);
            }
        }
        assert_eq!(tripped, trips_at);
    }

    #[test]
    fn a_link_in_flight_when_a_refusal_is_heard_starts_nothing() {
        let mut breaker = Breaker::new(3);
        let (first, second, third) = (breaker.turn().0, breaker.turn().0, breaker.turn().0);
        assert_eq!(breaker.failure("cap"), None);
        breaker.success(Some(first));
        assert_eq!(breaker.turn(), (4, true), "sent before the refusal was heard: the cap may still hold");
        assert_eq!(breaker.failure("cap"), None);
        breaker.success(Some(second));
        assert!(breaker.failure("cap").is_some(), "the third refusal in a row trips, the successes in flight aside");
        breaker.success(Some(third));
        let (alone, _) = breaker.turn();
        breaker.success(Some(alone));
        assert_eq!(breaker.turn(), (6, false), "a link sent after the refusals starts the count again");
    }

    fn remote(id: &str, title: &str, key: Option<&str>) -> crate::api::RemoteLink {
        crate::api::RemoteLink {
            id: id.into(),
            payment_uri: format!("https://pay/{id}"),
            amount: 1000,
            currency: "thb".into(),
            title: title.into(),
            description: "d".into(),
            multiple: false,
            deleted: false,
            team_template: None,
            metadata: key.map(|k| [(crate::request::KEY_IN_METADATA.to_owned(), k.to_owned())].into()),
        }
    }

    #[test]
    fn recover_matches_by_key_then_by_content_and_never_guesses() {
        let (a, b) = (request("a"), request("b"));
        let rows = [("k1", &a), ("k2", &a), ("k3", &b), ("k4", &b), ("k5", &b), ("k6", &request("c"))];
        let links = [
            remote("l1", "a", None),
            remote("l2", "b", Some("k4")),
            remote("l3", "a", None),
            remote("l4", "b", None),
            remote("l5", "b", None),
            remote("l6", "b", None),
        ];
        let found = recover(&rows, &links);
        assert_eq!(
            found[0],
            Recovered::Link { link: 0, by_key: false },
            "identical rows take identical links in order"
        );
        assert_eq!(found[1], Recovered::Link { link: 2, by_key: false });
        assert_eq!(found[3], Recovered::Link { link: 1, by_key: true }, "a key in metadata decides");
        // k3 and k5 are identical, and three untagged links match them: which is whose cannot be known.
        assert_eq!((&found[2], &found[4]), (&Recovered::Ambiguous(3), &Recovered::Ambiguous(3)));
        assert_eq!(found[5], Recovered::None, "no link: the next run sends it");
    }

    #[test]
    fn a_rejected_row_names_its_field() {
        let error = RowError { line: 7, key: None, field: "amount", reason: "not a number".into(), extra: Vec::new() };
        let out = rejected(&error);
        assert_eq!(
            (out.status, out.error_code.as_str(), out.error_message.as_str()),
            (Status::Rejected, "invalid_amount", "not a number")
        );
    }
}
