//! What the decisions' tests build on: a request, a row, a ledger's index of one key, an API error.

use std::time::{Duration, SystemTime};

use crate::api::ApiError;
use crate::digest::Digest;
use crate::ledger::{Event, Index, KeyState, Time};
use crate::plan::PlannedRow;
use crate::request::{ClassicRequest, LinkRequest};
use crate::row_key::RowKey;
use crate::terms::{Payment, RetireReason};

pub(crate) const GRACE: Duration = Duration::from_secs(2);

pub(crate) fn request(title: &str) -> LinkRequest {
    LinkRequest::Classic(ClassicRequest {
        amount: 1000,
        currency: "thb".into(),
        title: title.into(),
        description: "d".into(),
        multiple: false,
        metadata: std::collections::BTreeMap::new(),
    })
}

pub(crate) fn row(title: &str) -> PlannedRow {
    PlannedRow::new(2, "k".into(), request(title), Vec::new())
}

pub(crate) fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

pub(crate) fn stamp(secs: u64) -> Time {
    Time::from(at(secs))
}

/// What the ledger holds of key `k`, as events written for a row titled `title`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ev {
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
    /// `[lifecycle]` is about to end the link.
    Retiring(RetireReason),
    /// `[lifecycle]` ended the link.
    Retired(RetireReason),
}

pub(crate) fn index(events: &[Ev]) -> Index {
    let mut index = Index::default();
    index.record(Event::Run { at: stamp(0), version: "t".into() }, 1);
    for (n, event) in events.iter().enumerate() {
        let (key, link_id) = (RowKey::from("k"), "link_test_1".to_owned());
        let event = match *event {
            Ev::Intent(secs) => {
                Event::Intent { key, fingerprint: request("a").fingerprint(), at: stamp(secs), request: request("a") }
            }
            Ev::Created(title) => Event::Created {
                key,
                link_id,
                payment_uri: "https://pay.example/l/1".into(),
                fingerprint: request(title).fingerprint(),
                at: stamp(9),
            },
            Ev::Failed => Event::Failed {
                key,
                fingerprint: request("a").fingerprint(),
                code: "invalid_amount".into(),
                message: "too small".into(),
                at: stamp(9),
            },
            Ev::Deleted => Event::Deleted { key, link_id, at: stamp(9) },
            Ev::Refused => Event::ReplaceRefused { key, link_id, reason: "paid".into(), at: stamp(9) },
            Ev::Unread | Ev::UnreadList => Event::Unreadable {
                key,
                fingerprint: request("a").fingerprint(),
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
                fingerprint: request("a").fingerprint(),
                at: stamp(9),
            },
            Ev::Retiring(reason) => Event::RetireIntent { key, link_id, reason, at: stamp(9) },
            Ev::Retired(reason) => Event::Retired { key, link_id, reason, at: stamp(10) },
            Ev::Paid(charges) => Event::Refreshed {
                key,
                link_id,
                payment: Payment { charges, paid_amount: charges * 1000, currency: "thb".into(), ..Payment::default() },
                at: stamp(9),
            },
        };
        index.record(event, 100 * (n as u64 + 1));
    }
    index
}

pub(crate) fn state(index: &Index) -> Option<&KeyState> {
    index.get(&Digest::of(b"k"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum E {
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
    pub(crate) fn error(self) -> ApiError {
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
