//! The crate's words: what a job, a row and a link are called and can be, held in one place that imports
//! none of the crate's machinery (only the request's own words and the digest), so every module can use them
//! without reaching sideways into another's.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::request::LinkRequest;

/// `1 row`, `2 rows`: a count with its noun, singular for one.
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Which Omise API a job creates links on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKind {
    /// Classic Links API (`POST /links`).
    Links,
    /// Payment Links+ (`POST /external/links`).
    LinksPlus,
}

impl ApiKind {
    /// The production base URL.
    pub fn default_base_url(self) -> &'static str {
        match self {
            ApiKind::Links => "https://api.omise.co",
            ApiKind::LinksPlus => "https://linksplus-api.omise.co",
        }
    }

    /// The name used in job files and the ledger header.
    pub fn name(self) -> &'static str {
        match self {
            ApiKind::Links => "links",
            ApiKind::LinksPlus => "links_plus",
        }
    }

    /// What its key is called in messages: Omise issues Payment Links+ its own API keys.
    pub fn key_name(self) -> &'static str {
        match self {
            ApiKind::Links => "secret key",
            ApiKind::LinksPlus => "Payment Links+ API key",
        }
    }
}

/// How a Links+ request carries the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthScheme {
    /// Found before the first create: a read with each scheme in turn (raw, bearer, basic), the first the
    /// server accepts kept and recorded in the ledger header (docs/reference.md, "What Omise documents").
    #[default]
    Auto,
    /// `Authorization: Bearer KEY`.
    Bearer,
    /// HTTP Basic, key as user name.
    Basic,
    /// `Authorization: KEY`.
    Raw,
}

impl AuthScheme {
    /// The schemes `Auto` tries, in order: Omise's Links+ documentation shows the raw key first.
    pub const TRIED: [AuthScheme; 3] = [AuthScheme::Raw, AuthScheme::Bearer, AuthScheme::Basic];

    /// The name in job files and the ledger header.
    pub fn name(self) -> &'static str {
        match self {
            AuthScheme::Auto => "auto",
            AuthScheme::Bearer => "bearer",
            AuthScheme::Basic => "basic",
            AuthScheme::Raw => "raw",
        }
    }

    /// A scheme by its name (`raw`, `bearer`, `basic`).
    pub fn named(name: &str) -> Option<AuthScheme> {
        Self::TRIED.into_iter().find(|s| s.name() == name)
    }
}

/// Input file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// Comma-separated with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// An Excel workbook (`.xlsx`): one sheet, its first used row the header.
    Xlsx,
    /// An `OpenDocument` spreadsheet (`.ods`), read as a workbook is.
    Ods,
}

/// Test or live: from a secret key's prefix, or as the job states it (`[api] mode`) for a key that does
/// not say (a Payment Links+ API key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `skey_test_…`.
    Test,
    /// `skey_live_…`.
    Live,
}

impl Mode {
    /// `test` or `live`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }
}

/// A link's payment state, as `refresh` reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// Classic: single-use link already paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<bool>,
    /// Successful charges.
    pub charges: u64,
    /// Sum of the successful charges less what was refunded of them, minor units.
    pub paid_amount: u64,
    /// Refunded of the successful charges, minor units.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refunded_amount: u64,
    /// Successful charges refunded in full: `charges` less these is what `[lifecycle] capacity` counts.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refunded_charges: u64,
    /// Currency of the link.
    pub currency: String,
    /// Time of the latest charge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_paid_at: Option<String>,
    /// Links+: the link's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_status: Option<String>,
}

impl Payment {
    /// Successful payments that still stand (a charge refunded in full no longer holds a place).
    pub fn standing(&self) -> u64 {
        self.charges.saturating_sub(self.refunded_charges)
    }
}

/// A request that was sent, or may have been, with no outcome recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenIntent {
    /// Earliest unresolved attempt.
    pub at: SystemTime,
    /// Parameters of the latest attempt.
    pub request: LinkRequest,
    /// Their fingerprint.
    pub fingerprint: Digest,
}

/// Where a row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Link made by this run.
    Created,
    /// Link made by an earlier run (no request this time).
    Existing,
    /// The server refused it, or retries ran out, or the outcome stayed unknown.
    Failed,
    /// The row itself is wrong (nothing sent).
    Rejected,
    /// The row changed after its link was made (not re-created).
    Conflict,
    /// Not reached (interrupted).
    Pending,
    /// Its link was ended by the job's `[lifecycle]` (docs/reference.md, "A link's life").
    Retired,
}

impl Status {
    /// The word in the CSV.
    pub fn name(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Existing => "existing",
            Status::Failed => "failed",
            Status::Rejected => "rejected",
            Status::Conflict => "conflict",
            Status::Pending => "pending",
            Status::Retired => "retired",
        }
    }
}

/// A row's delivery, as the output's `delivery` column says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Delivery {
    /// The server took the row's latest message.
    Delivered,
    /// The message's end of data may have reached the server and no reply was heard: never sent again but by
    /// `deliver --resend-uncertain`.
    Uncertain,
    /// The server refused it for good.
    Failed,
    /// The row's message cannot be written (a bad address, a line break in a header).
    Rejected,
    /// Not sent yet.
    Pending,
}

impl Delivery {
    /// The word in the CSV.
    pub fn name(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Uncertain => "uncertain",
            Delivery::Failed => "failed",
            Delivery::Rejected => "rejected",
            Delivery::Pending => "pending",
        }
    }
}

/// What `listen` made of an event it answered 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// The link was read again and the reading recorded.
    Read,
    /// The link's last reading already held the charge as the event tells it: recorded without a read.
    Folded,
    /// Read and recorded, and the link retired at once by `[lifecycle]`.
    Retired(RetireReason),
    /// The event was acted on already.
    Replayed,
    /// Not a charge made through one of the job's live links.
    NotOurs,
}

/// Why `[lifecycle]` ended a link: the output's `retired_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetireReason {
    /// No successful payment, and older than `expire_after`.
    Expired,
    /// A multiple-use link with `capacity` successful payments, net of refunds.
    SoldOut,
    /// Its row left the input (`prune = true`).
    Pruned,
}

impl RetireReason {
    /// The word in the CSV and the ledger.
    pub fn name(self) -> &'static str {
        match self {
            RetireReason::Expired => "expired",
            RetireReason::SoldOut => "sold_out",
            RetireReason::Pruned => "pruned",
        }
    }
}

/// What an answer linkbatch could not read was the answer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerTo {
    /// A create: the link may exist, and the row waits to be settled.
    Create,
    /// A list read to reconcile: the row stays as it was.
    List,
    /// Ledgers before the `unmatched` event: a row `recover` could not match.
    Recover,
}

impl AnswerTo {
    /// The word for a message: `create`, `list`.
    pub fn name(self) -> &'static str {
        match self {
            AnswerTo::Create => "create",
            AnswerTo::List => "list",
            AnswerTo::Recover => "recover",
        }
    }
}

/// An answer linkbatch could not read, kept for a row that now waits to be settled by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    /// What it answered: a create, or [`AnswerTo::Recover`] for a row `recover` could not match.
    pub answer_to: AnswerTo,
    /// The HTTP status.
    pub status: u16,
    /// What could not be read (older ledgers' `recover`: what it found instead, in words).
    pub missing: String,
    /// `unmatched`: how many links could each be the row's.
    pub candidates: Option<u64>,
}

// serde's `skip_serializing_if` hands the field by reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}
