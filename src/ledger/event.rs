//! The ledger's events: what each line says, as serde reads and writes it. Owns the schema and nothing
//! else; the line's checksum, the file and the index live beside it.

use serde::{Deserialize, Serialize};

use super::Time;
use crate::digest::Digest;
use crate::rate::Rate;
use crate::request::LinkRequest;
use crate::row_key::RowKey;
use crate::terms::{ApiKind, AuthScheme, Mode, Payment};

/// First line of every ledger: what the links in it were made on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Format version.
    pub version: u32,
    /// `links` or `links_plus`.
    pub api: ApiKind,
    /// The base URL requests went to.
    pub base_url: String,
    /// The key's mode: `test` or `live`, written `unknown` when neither the key nor the job said.
    #[serde(with = "mode_or_unknown")]
    pub mode: Option<Mode>,
    /// A hash of the secret key (never the key).
    pub key_hash: String,
    /// Links+ with `auth = "auto"`: the scheme the server accepted, so the next run need not search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthScheme>,
}

/// A key's mode in the header: `test`, `live`, or `unknown`.
mod mode_or_unknown {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::terms::Mode;

    // serde's `with` hands the field by reference.
    #[allow(clippy::ref_option, clippy::trivially_copy_pass_by_ref)]
    pub(super) fn serialize<S: Serializer>(mode: &Option<Mode>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(mode.map_or("unknown", Mode::name))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Mode>, D::Error> {
        match String::deserialize(deserializer)?.as_str() {
            "test" => Ok(Some(Mode::Test)),
            "live" => Ok(Some(Mode::Live)),
            "unknown" => Ok(None),
            other => Err(serde::de::Error::custom(format!("mode `{other}` is not test, live or unknown"))),
        }
    }
}

/// A file's modification time in nanoseconds, written as a JSON string (as every ledger has it: a number that
/// large would lose digits in a reader that takes JSON numbers as doubles, `jq` among them).
mod nanos_text {
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's `with` hands the field by reference.
    pub(super) fn serialize<S: Serializer>(nanos: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(nanos)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(|_| serde::de::Error::custom(format!("modified `{text}` is not nanoseconds")))
    }
}

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The ledger's first line.
    Header(Header),
    /// A run started (links recorded after it are that run's `created`, earlier ones `existing`).
    Run {
        /// When.
        at: Time,
        /// linkbatch version.
        version: String,
    },
    /// Written before a create request is sent.
    Intent {
        /// Row key.
        key: RowKey,
        /// Request fingerprint.
        fingerprint: Digest,
        /// When (RFC 3339, milliseconds).
        at: Time,
        /// The parameters sent, so a later run can reconcile and explain conflicts.
        request: LinkRequest,
    },
    /// The intent's request never left: no server could be reached, or its certificate was refused, before
    /// a byte of the request was sent. The row is pending again, unless an earlier request of it is still
    /// unresolved.
    Unsent {
        /// Row key.
        key: RowKey,
        /// The intent's time, as it was written.
        at: Time,
        /// Why it did not leave.
        reason: String,
    },
    /// The server answered with a link.
    Created {
        /// Row key.
        key: RowKey,
        /// Link id.
        link_id: String,
        /// Payment URI (Links+: `payment_url`).
        payment_uri: String,
        /// Fingerprint of the request that made it.
        fingerprint: Digest,
        /// When.
        at: Time,
    },
    /// An uncertain request's link was found on the server and claimed for this key.
    Adopted {
        /// Row key.
        key: RowKey,
        /// Link id.
        link_id: String,
        /// Payment URI.
        payment_uri: String,
        /// Fingerprint of the request that made it.
        fingerprint: Digest,
        /// When.
        at: Time,
    },
    /// A permanent failure (4xx other than 429), or retries exhausted.
    Failed {
        /// Row key.
        key: RowKey,
        /// Fingerprint of the failing request.
        fingerprint: Digest,
        /// Omise error code.
        code: String,
        /// Omise error message.
        message: String,
        /// When.
        at: Time,
    },
    /// The server answered in a shape linkbatch cannot read (docs/reference.md, "Fail closed"): kept with its
    /// body, and nothing done on it. After a create the row waits for `settle`; after a list it stays open.
    Unreadable {
        /// Row key.
        key: RowKey,
        /// Fingerprint of the row's request.
        fingerprint: Digest,
        /// `create` or `list` (`recover` in ledgers before the `unmatched` event).
        answer_to: crate::terms::AnswerTo,
        /// HTTP status.
        status: u16,
        /// What could not be read.
        missing: String,
        /// The answer as sent (at most 64 KiB; the key redacted should the server echo it).
        body: String,
        /// When.
        at: Time,
    },
    /// `recover` found several links that could each be the row's: it waits to be settled by hand.
    Unmatched {
        /// Row key.
        key: RowKey,
        /// Fingerprint of the row's request.
        fingerprint: Digest,
        /// How many links could be the row's.
        candidates: u64,
        /// When.
        at: Time,
    },
    /// The user settled an open row by hand (`linkbatch settle`): the link it has, or that none was made.
    Settled {
        /// Row key.
        key: RowKey,
        /// The link adopted, or none (the row is then new, and sent on the next run).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link_id: Option<String>,
        /// Its payment URI.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payment_uri: Option<String>,
        /// Fingerprint of the row's request.
        fingerprint: Digest,
        /// When.
        at: Time,
    },
    /// `--update-changed`: the row's link is about to be changed in place (`PATCH`: description, metadata).
    UpdateIntent {
        /// Row key.
        key: RowKey,
        /// The link.
        link_id: String,
        /// Fingerprint of the row's new request.
        fingerprint: Digest,
        /// When.
        at: Time,
    },
    /// The link now holds the row's new description and metadata: its fingerprint is the new request's.
    Updated {
        /// Row key.
        key: RowKey,
        /// The link.
        link_id: String,
        /// Fingerprint of the row's new request.
        fingerprint: Digest,
        /// When.
        at: Time,
    },
    /// `--replace-changed`: the row's old, unpaid link is about to be deleted.
    ReplaceIntent {
        /// Row key.
        key: RowKey,
        /// The link to delete.
        link_id: String,
        /// Fingerprint of the row's new request.
        fingerprint: Digest,
        /// When.
        at: Time,
    },
    /// The row's old link is deleted on the server; the row is new again.
    Deleted {
        /// Row key.
        key: RowKey,
        /// The deleted link.
        link_id: String,
        /// When.
        at: Time,
    },
    /// `--replace-changed` refused to replace a link (it has been paid).
    ReplaceRefused {
        /// Row key.
        key: RowKey,
        /// The link kept.
        link_id: String,
        /// Why.
        reason: String,
        /// When.
        at: Time,
    },
    /// `[lifecycle]` is about to end the row's link (`DELETE /links/{id}`). With no `retired` after it, the
    /// delete's fate is unknown: the next retire reads the link before it deletes anything.
    RetireIntent {
        /// Row key.
        key: RowKey,
        /// The link to end.
        link_id: String,
        /// Which rule ended it.
        reason: crate::terms::RetireReason,
        /// When.
        at: Time,
    },
    /// The row's link is ended on the server: the row is `retired`, and never sent again unless it was pruned
    /// and comes back into the input.
    Retired {
        /// Row key.
        key: RowKey,
        /// The ended link.
        link_id: String,
        /// Which rule ended it.
        reason: crate::terms::RetireReason,
        /// When.
        at: Time,
    },
    /// The output CSV was put in place from the ledger as it stood: the file's size and modification time,
    /// so the next run can tell the output it finds is this one (and the ledger holds every link it names).
    Output {
        /// Bytes in the file.
        bytes: u64,
        /// Its modification time, nanoseconds since 1970 (written as text).
        #[serde(with = "nanos_text")]
        modified: u128,
        /// When.
        at: Time,
    },
    /// A 429 met although the throttle kept every window: the server holds one tighter than the rates the
    /// run started from. The next run from the same job rates (without `--limit`) starts at `rates`.
    Learned {
        /// The job's rates.
        job_rates: Vec<Rate>,
        /// The rates kept from now on, tightened by what the 429 explained.
        rates: Vec<Rate>,
        /// The window that was tightened, as it was.
        was: Rate,
        /// As it is now.
        now: Rate,
        /// When.
        at: Time,
    },
    /// `refresh` began (or resumed, when the last one has no `refresh_finished`).
    RefreshStarted {
        /// When.
        at: Time,
    },
    /// `refresh` retrieved every link.
    RefreshFinished {
        /// When.
        at: Time,
    },
    /// What `refresh` read of one link.
    Refreshed {
        /// Row key.
        key: RowKey,
        /// The link.
        link_id: String,
        /// Its payment state.
        #[serde(flatten)]
        payment: Payment,
        /// When.
        at: Time,
    },
    /// What `listen` read of one link from the API after an event named it: recorded as a refresh reading is,
    /// with the event's id, which is acted on once however often it is posted.
    Heard {
        /// The event (`evnt_…`).
        event: String,
        /// Row key.
        key: RowKey,
        /// The link.
        link_id: String,
        /// Its payment state, as the API answered.
        #[serde(flatten)]
        payment: Payment,
        /// When.
        at: Time,
    },
    /// How far `refresh --events` has read the Events API: from this time on (inclusive, in the server's
    /// time), less the events already read at that very second.
    EventsRead {
        /// The newest event's time (a full refresh: the server's time as it began).
        from: Time,
        /// The events read whose time is `from`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        seen: Vec<String>,
        /// When.
        at: Time,
    },
    /// Written before a message's SMTP transaction begins (docs/reference.md, "Delivery").
    DeliverIntent {
        /// Row key.
        key: RowKey,
        /// 0: the first message; 1, 2…: reminders.
        round: u32,
        /// The message's Message-ID, the same for every attempt of one round.
        message_id: String,
        /// When.
        at: Time,
    },
    /// The message's end of data is about to be sent: from here the server may have taken it, and with no
    /// reply recorded after this line the round's delivery is `uncertain`.
    DeliverCommit {
        /// Row key.
        key: RowKey,
        /// The round.
        round: u32,
        /// When.
        at: Time,
    },
    /// The server took the message: its final reply (a queue id, mostly).
    Delivered {
        /// Row key.
        key: RowKey,
        /// The round.
        round: u32,
        /// The server's reply, as it wrote it.
        reply: String,
        /// When.
        at: Time,
    },
    /// The server answered the end of data with a 4xx: it did not take the message, which may be sent again.
    DeliverDeferred {
        /// Row key.
        key: RowKey,
        /// The round.
        round: u32,
        /// The reply's code.
        code: u16,
        /// The server's words.
        reply: String,
        /// When.
        at: Time,
    },
    /// The server refused the message for good (a 5xx reply).
    DeliverFailed {
        /// Row key.
        key: RowKey,
        /// The round.
        round: u32,
        /// The reply's code.
        code: u16,
        /// The server's words.
        reply: String,
        /// When.
        at: Time,
    },
}
