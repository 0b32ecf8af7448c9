//! `deliver`: each row that has a link gets its message, exactly once (docs/reference.md, "Delivery").
//!
//! Every message is written before the first is sent (a row whose message cannot be written is `rejected`,
//! named by line and field), the mail server is reached and the login accepted before the first message,
//! and each step is on disk before it is taken: `deliver_intent` before the transaction, `deliver_commit`
//! before the end of data, the reply after. Owns the order of those steps; what a row gets next is
//! [`crate::decide::delivery`]'s, the words and the wire are [`crate::mail`]'s. Logs name rows by line and
//! key, never by address or body.

mod summary;

use std::time::{Duration, SystemTime};

use lettre::address::Envelope;

pub use summary::DeliverSummary;

use crate::decide::delivery::{Asked, Next, next};
use crate::input::InputReader;
use crate::ledger::{Book, Event, Index, LedgerError, Time};
use crate::mail::{Composed, LinkFields, MailError, Mailer, Refusal, compose};
use crate::plan::{Plan, PlannedRow};
use crate::row_key::RowKey;
use crate::stop::Stop;
use crate::terms::Delivery;
use crate::wait::{
    Attempt,
    Next::{Again, Done, Stopped},
    Retrying,
};

/// Why a delivery pass stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The mail server cannot be used (unreachable, a certificate or the login refused): the run's problem.
    #[error("{0}; unsent messages stay pending, and the next run sends them")]
    Systemic(String),
    /// The ledger could not be written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The input could not be read again.
    #[error("{0}")]
    Input(String),
}

/// A message to send: its row and round, written.
#[derive(Debug)]
pub struct Message {
    /// Input line.
    pub line: u64,
    /// Row key.
    pub key: RowKey,
    /// 0: the first message; 1, 2…: reminders.
    pub round: u32,
    /// The message.
    pub composed: Composed,
}

/// The rows whose message is due, written; the rows whose message cannot be (line, key, why); and the rows
/// an earlier run left uncertain or failed, which get nothing now.
#[derive(Debug, Default)]
pub struct Due {
    /// Messages to send.
    pub messages: Vec<Message>,
    /// Rows whose message cannot be written.
    pub refused: Vec<(u64, RowKey, Refusal)>,
    /// Rows left `uncertain` by an earlier run.
    pub uncertain: u64,
    /// Rows whose message an earlier run saw refused.
    pub failed: u64,
    /// Rows whose latest message was taken, and nothing is due now.
    pub delivered: u64,
}

/// The link fields a row's templates see.
fn link_fields(index: &Index, link: &crate::ledger::LinkRecord) -> (String, String) {
    (index.payment_uri(link), index.link_id(link).to_owned())
}

/// Every message due now, written from the input and the ledger; nothing is sent.
pub fn due(plan: &Plan, reader: InputReader, index: &Index, asked: Asked, at: SystemTime) -> Due {
    let (mut messages, mut refused) = (Vec::new(), Vec::new());
    let settled =
        each_due(plan, reader, index, asked, at, |row, round, fields| match compose(plan, row, fields, round) {
            Ok(composed) => messages.push(Message { line: row.line, key: row.key.clone(), round, composed }),
            Err(refusal) => refused.push((row.line, row.key.clone(), refusal)),
        });
    Due { messages, refused, uncertain: settled.uncertain, failed: settled.failed, delivered: settled.delivered }
}

/// What [`due`] would find, counted: each message checked as it would be written, none of them held.
/// `status` counts with it, in memory that does not grow with the messages.
pub fn count_due(plan: &Plan, reader: InputReader, index: &Index, asked: Asked, at: SystemTime) -> DueCounts {
    let (mut pending, mut rejected) = (0, 0);
    let settled = each_due(plan, reader, index, asked, at, |row, round, fields| {
        match crate::mail::check(plan, row, fields, round) {
            Ok(_) => pending += 1,
            Err(_) => rejected += 1,
        }
    });
    DueCounts { settled, pending, rejected }
}

/// Rows with nothing due now, by where their latest message stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Left `uncertain` by an earlier run.
    pub uncertain: u64,
    /// Refused on an earlier run.
    pub failed: u64,
    /// Taken by the server.
    pub delivered: u64,
}

/// [`count_due`]'s counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DueCounts {
    /// Rows with nothing due now.
    pub settled: Settled,
    /// Messages due that can be written.
    pub pending: u64,
    /// Messages due that cannot.
    pub rejected: u64,
}

/// Walks the input against the ledger: `on_due` for each row whose message of a round is due (with its link
/// fields); the others counted by where they stand.
fn each_due(
    plan: &Plan,
    mut reader: InputReader,
    index: &Index,
    asked: Asked,
    at: SystemTime,
    mut on_due: impl FnMut(&PlannedRow, u32, LinkFields<'_>),
) -> Settled {
    let mut settled = Settled::default();
    crate::rows::for_each_row(plan, &mut reader, Some(index), |row| {
        let Ok(row) = row else { return true };
        let Some(state) = index.get(&row.key.id()) else { return true };
        // A link `[lifecycle]` ended (or is ending) is no longer payable: no message, first or reminder.
        let Some(link) = state.link.filter(|_| state.retired().is_none() && state.retiring().is_none()) else {
            return true;
        };
        let unpaid = state.payment().map(|(p, _)| !crate::decide::is_paid(p));
        let rounds = index.deliveries.of(&row.key.id());
        let Next::Send(round) = next(rounds, asked, unpaid, at) else {
            match crate::decide::delivery::delivery(rounds) {
                Delivery::Uncertain => settled.uncertain += 1,
                Delivery::Failed => settled.failed += 1,
                Delivery::Delivered => settled.delivered += 1,
                Delivery::Rejected | Delivery::Pending => {}
            }
            return true;
        };
        let (payment_uri, link_id) = link_fields(index, &link);
        let amount = crate::mail::amount_of(row);
        on_due(row, round, LinkFields { payment_uri: &payment_uri, link_id: &link_id, amount_display: &amount });
        true
    });
    settled
}

/// Every row's first message written with stand-in link fields, before any link exists: the rows whose
/// message could not be (`validate`, and `run --deliver` before its first create), by line, key and why.
pub fn unwritable(plan: &Plan) -> Result<Vec<(u64, RowKey, Refusal)>, DeliverError> {
    let mut reader = plan.reader().map_err(|e| DeliverError::Input(e.to_string()))?;
    let mut refused = Vec::new();
    crate::rows::for_each_row(plan, &mut reader, None, |row| {
        let Ok(row) = row else { return true };
        let amount = crate::mail::amount_of(row);
        let fields = LinkFields {
            payment_uri: "https://pay.omise.co/links/link_test_0000000000000000000",
            link_id: "link_test_0000000000000000000",
            amount_display: &amount,
        };
        if let Err(refusal) = crate::mail::check(plan, row, fields, 0) {
            refused.push((row.line, row.key.clone(), refusal));
        }
        true
    });
    Ok(refused)
}

/// Reaches the mail server and logs in, sending nothing: a refusal is the run's.
pub async fn check_server(mailer: &mut Mailer) -> Result<(), DeliverError> {
    mailer.connect().await.map_err(|e| DeliverError::Systemic(e.to_string()))?;
    mailer.quit().await;
    Ok(())
}

/// A mail error as a log line says it: a reply by its code alone, since a server's words can hold the
/// recipient's address (`451 4.2.0 <bob@example.com>: greylisted`); the output keeps the words.
fn logged(error: &MailError) -> String {
    match error {
        MailError::Refused { code, .. } | MailError::Deferred { code, .. } => format!("reply {code}"),
        MailError::Cut(_) | MailError::Uncertain(_) | MailError::Systemic(_) => error.to_string(),
    }
}

/// A delivery pass: the ledger it records in, the mailer and the pace.
pub struct Pass<'a> {
    plan: &'a Plan,
    book: &'a Book,
    mailer: Mailer,
    throttle: crate::throttle::Throttle,
    stop: &'a Stop,
}

impl<'a> Pass<'a> {
    /// A pass over `plan`'s rows, recording in `book`.
    pub fn new(plan: &'a Plan, book: &'a Book, mailer: Mailer, stop: &'a Stop) -> Pass<'a> {
        let rates = plan.deliver().map(|d| d.rates.clone()).unwrap_or_default();
        // One connection, one message after another (crate::throttle::SEQUENTIAL_SLACK).
        let throttle = crate::throttle::Throttle::with_slack(&rates, crate::throttle::SEQUENTIAL_SLACK);
        // A run right after another keeps the windows that one filled.
        throttle.seed(book.index().deliveries.sent().map(Time::system), std::time::SystemTime::now());
        Pass { plan, book, mailer, throttle, stop }
    }

    async fn record(&self, event: Event) -> Result<(), LedgerError> {
        self.book.record(event).await
    }

    /// Sends every message of `due`, each once; rows refused while writing them are counted as rejected.
    pub async fn run(&mut self, due: Due) -> Result<DeliverSummary, DeliverError> {
        let mut summary =
            DeliverSummary { earlier_uncertain: due.uncertain, earlier_failed: due.failed, ..Default::default() };
        let messages = due.messages;
        for (line, key, refusal) in &due.refused {
            tracing::warn!("line {line} (key `{key}`): the message cannot be written: {refusal}");
            summary.rejected += 1;
        }
        if messages.is_empty() {
            return Ok(summary);
        }
        // Reached and logged in before the first message: a refusal here is the run's, and no row's.
        self.mailer.connect().await.map_err(|e| DeliverError::Systemic(e.to_string()))?;
        let messages_n = crate::terms::count(messages.len() as u64, "message", "messages");
        tracing::info!("sending {messages_n} through {}", self.mailer.address());
        for message in &messages {
            if self.stop.is_stopped() {
                summary.interrupted = true;
                summary.left += 1;
                continue;
            }
            self.send(message, &mut summary).await?;
        }
        self.mailer.quit().await;
        Ok(summary)
    }

    /// One message, retried on 4xx replies and on connections cut before its end.
    async fn send(&mut self, message: &Message, summary: &mut DeliverSummary) -> Result<(), DeliverError> {
        let mut retrying = Retrying::new(self.stop, self.plan.retry().delays());
        let (line, key, round) = (message.line, &message.key, message.round);
        loop {
            let error = match self.attempt(message).await? {
                Ok(reply) => {
                    tracing::debug!("line {line} (key `{key}`): delivered, round {round}");
                    self.record(Event::Delivered { key: key.clone(), round, reply, at: Time::now() }).await?;
                    summary.delivered += 1;
                    return Ok(());
                }
                Err(error) => error,
            };
            match error {
                MailError::Refused { code, reply } => {
                    tracing::warn!("line {line} (key `{key}`): the mail server refused the message ({code})");
                    self.record(Event::DeliverFailed { key: key.clone(), round, code, reply, at: Time::now() }).await?;
                    summary.failed += 1;
                    return Ok(());
                }
                MailError::Uncertain(why) => {
                    tracing::warn!(
                        "line {line} (key `{key}`): the message's end was sent and no reply came ({why}): its \
                         delivery is uncertain and it is not sent again (deliver --resend-uncertain does)"
                    );
                    summary.uncertain += 1;
                    return Ok(());
                }
                MailError::Systemic(why) => return Err(DeliverError::Systemic(why)),
                MailError::Deferred { .. } | MailError::Cut(_) => {}
            }
            let deferred = logged(&error);
            match retrying.after(Attempt::Again { at_least: Duration::ZERO, spent: () }).await {
                Again => tracing::debug!("line {line} (key `{key}`): {deferred}; trying again"),
                Done(()) => {
                    tracing::warn!(
                        "line {line} (key `{key}`): deferred by the mail server ({deferred}); the next run tries again"
                    );
                    summary.deferred += 1;
                    return Ok(());
                }
                Stopped => {
                    summary.interrupted = true;
                    summary.left += 1;
                    return Ok(());
                }
            }
        }
    }

    /// One SMTP transaction, each step recorded before it is taken. `Err` only for the ledger.
    async fn attempt(&mut self, message: &Message) -> Result<Result<String, MailError>, LedgerError> {
        let (key, round) = (message.key.clone(), message.round);
        let from = self.plan.deliver().map(|d| d.from.email.clone());
        let envelope = match Envelope::new(from, vec![message.composed.to.clone()]) {
            Ok(envelope) => envelope,
            Err(e) => return Ok(Err(MailError::Refused { code: 0, reply: format!("no envelope: {e}") })),
        };
        self.throttle.acquire().await;
        let message_id = message.composed.message_id.clone();
        self.record(Event::DeliverIntent { key: key.clone(), round, message_id, at: Time::now() }).await?;
        if let Err(e) = self.mailer.begin(&envelope).await {
            return Ok(Err(e));
        }
        self.record(Event::DeliverCommit { key: key.clone(), round, at: Time::now() }).await?;
        let sent = self.mailer.finish(&message.composed.bytes).await;
        if let Err(MailError::Deferred { code, reply }) = &sent {
            let (code, reply) = (*code, reply.clone());
            self.record(Event::DeliverDeferred { key, round, code, reply, at: Time::now() }).await?;
        }
        Ok(sent)
    }
}
