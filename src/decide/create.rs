//! One row's create as a table: the step after each answer (send, reconcile, wait, fail, leave the request
//! open, abort), with the retry budget and the request whose outcome is unknown.

use std::time::{Duration, SystemTime};

use super::codes;
use super::retry::retry_after;
use crate::api::ApiError;
use crate::digest::Digest;
use crate::request::LinkRequest;
use crate::terms::{AnswerTo, OpenIntent};

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
        /// The create's answer, or a list's (during reconciliation).
        answer_to: AnswerTo,
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
            Answer::ReconcileFailed(ApiError::Unreadable { status, missing, body }) => Step::Unreadable {
                answer_to: AnswerTo::List,
                status: *status,
                missing: missing.clone(),
                body: body.clone(),
            },
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
            ApiError::Unreadable { status, missing, body } => Step::Unreadable {
                answer_to: AnswerTo::Create,
                status: *status,
                missing: missing.clone(),
                body: body.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rstest::rstest;

    use super::*;
    use crate::decide::fixtures::{E, GRACE, at, request};

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

    fn wait(secs: u64, then: Then) -> Step {
        Step::Wait { delay: Duration::from_secs(secs), then }
    }

    fn fail(code: &str, message: &str, abort: bool) -> Step {
        Step::Fail { code: code.into(), message: message.into(), abort }
    }

    fn unread(create: bool) -> Step {
        let answer_to = if create { AnswerTo::Create } else { AnswerTo::List };
        Step::Unreadable { answer_to, status: 200, missing: "id".into(), body: "{}".into() }
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
}
