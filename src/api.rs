//! The Omise clients (classic Links and Links+) and the one place every answer is classified.
//!
//! A response becomes exactly one of: a value, [`ApiError::Retryable`] (nothing happened, try again),
//! [`ApiError::Uncertain`] (a create may have happened: reconcile before sending again), [`ApiError::Permanent`]
//! (the request is wrong), or [`ApiError::Fatal`] (stop the run). Retry logic matches on these, never on text.
//! The secret key lives in [`SecretKey`], which has no `Display` and a redacted `Debug`.

use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::job::{ApiKind, AuthScheme};
use crate::ledger::Payment;
use crate::plan::LinkRequest;

/// A secret key. It is never printed: not by `Debug`, not in errors.
#[derive(Clone)]
pub struct SecretKey(String);

/// Test or live, from the key's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Why a key is refused before any request.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// `pkey_…`.
    #[error("the key in ${0} is a public key (pkey_…); link creation needs the secret key (skey_…)")]
    Public(String),
    /// Contains characters no HTTP header can carry.
    #[error("the key in ${0} contains spaces or control characters; it should look like skey_test_… or skey_live_…")]
    Malformed(String),
    /// Unset or empty.
    #[error("no secret key: set the environment variable ${0} (or use --sandbox to try the job without an account)")]
    Missing(String),
}

impl SecretKey {
    /// Checks a key read from `variable`.
    pub fn new(key: String, variable: &str) -> Result<SecretKey, KeyError> {
        let key = key.trim().to_owned();
        if key.is_empty() {
            return Err(KeyError::Missing(variable.to_owned()));
        }
        if key.starts_with("pkey_") {
            return Err(KeyError::Public(variable.to_owned()));
        }
        // Anything else goes to the server, whose 401 says whether it is a key: the spec refuses only
        // public keys locally. Non-printable characters cannot travel in a header at all.
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KeyError::Malformed(variable.to_owned()));
        }
        Ok(SecretKey(key))
    }

    /// Test or live.
    pub fn mode(&self) -> Mode {
        if self.0.starts_with("skey_live_") { Mode::Live } else { Mode::Test }
    }

    /// A short one-way hash that tells keys apart in the ledger header without revealing them.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(format!("linkbatch-ledger-key:{}", self.0).as_bytes());
        digest[..8].iter().fold(String::with_capacity(16), |mut hex, b| {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{b:02x}");
            hex
        })
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}…redacted)", if self.mode() == Mode::Live { "skey_live_" } else { "skey_test_" })
    }
}

/// A classified failure.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    /// Nothing was done on the server: safe to send again (after `retry_after`, when given).
    #[error("{reason}")]
    Retryable {
        /// Server's `Retry-After`.
        retry_after: Option<Duration>,
        /// Rate limited (429): the whole dispatcher pauses, not only this request.
        rate_limited: bool,
        /// What happened.
        reason: String,
    },
    /// A create may or may not have happened.
    #[error("outcome unknown: {reason}")]
    Uncertain {
        /// What happened.
        reason: String,
    },
    /// The server refused the request; sending it again cannot help.
    #[error("{code}: {message}")]
    Permanent {
        /// HTTP status.
        status: u16,
        /// Omise error code.
        code: String,
        /// Omise error message.
        message: String,
    },
    /// Every further request would fail the same way (401): stop the run.
    #[error("{code}: {message}")]
    Fatal {
        /// Omise error code.
        code: String,
        /// Omise error message.
        message: String,
    },
}

/// A link as the server describes it, from either API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLink {
    /// Id (Links+ integer ids as text).
    pub id: String,
    /// Where the customer pays.
    pub payment_uri: String,
    /// Minor units.
    pub amount: u64,
    /// Currency code.
    pub currency: String,
    /// Title (Links+: name).
    pub title: String,
    /// Description (classic only).
    pub description: String,
    /// Multiple-use.
    pub multiple: bool,
    /// Deleted (classic only).
    pub deleted: bool,
    /// Links+ team and template.
    pub team_template: Option<(u64, u64)>,
}

impl RemoteLink {
    fn from_json(api: ApiKind, v: &Value) -> Option<RemoteLink> {
        let text = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
        let flag = |name: &str| v.get(name).and_then(Value::as_bool).unwrap_or(false);
        Some(match api {
            ApiKind::Links => RemoteLink {
                id: text("id")?,
                payment_uri: text("payment_uri")?,
                amount: v.get("amount")?.as_u64()?,
                currency: text("currency")?,
                title: text("title").unwrap_or_default(),
                description: text("description").unwrap_or_default(),
                multiple: flag("multiple"),
                deleted: flag("deleted"),
                team_template: None,
            },
            ApiKind::LinksPlus => RemoteLink {
                id: match v.get("id")? {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    _ => return None,
                },
                payment_uri: text("payment_url")?,
                amount: v.get("amount")?.as_u64()?,
                currency: text("currency").unwrap_or_default(),
                title: text("name").unwrap_or_default(),
                description: String::new(),
                multiple: flag("multiple_usage"),
                deleted: false,
                team_template: Some((v.get("team_id")?.as_u64()?, v.get("template_id")?.as_u64()?)),
            },
        })
    }

    /// Whether this link is what `request` would have created.
    pub fn matches(&self, request: &LinkRequest) -> bool {
        if self.deleted {
            return false;
        }
        match request {
            LinkRequest::Classic(r) => {
                self.amount == r.amount
                    && self.currency.eq_ignore_ascii_case(&r.currency)
                    && self.title == r.title
                    && self.description == r.description
                    && self.multiple == r.multiple
            }
            LinkRequest::Plus(r) => {
                self.amount == r.amount
                    && r.currency.as_ref().is_none_or(|c| self.currency.eq_ignore_ascii_case(c))
                    && self.title == r.name
                    && self.multiple == r.multiple_usage
                    && self.team_template == Some((r.team_id, r.template_id))
            }
        }
    }
}

/// One page of a link list.
#[derive(Debug, Clone)]
pub struct LinkPage {
    /// The links on this page.
    pub links: Vec<RemoteLink>,
    /// Links matching the query in all pages.
    pub total: usize,
}

/// Largest page the list endpoints serve.
pub const PAGE: usize = 100;

/// A client for one API, one key and one base URL.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: SecretKey,
    api: ApiKind,
    auth: AuthScheme,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("base", &self.base).field("api", &self.api).field("key", &self.key).finish()
    }
}

/// `User-Agent` naming linkbatch and its version.
pub const USER_AGENT: &str = concat!("linkbatch/", env!("CARGO_PKG_VERSION"));
/// The API version the classic client speaks.
pub const OMISE_VERSION: &str = "2019-05-29";

impl Client {
    /// A client; `base` is already checked (https, or http on loopback).
    pub fn new(
        api: ApiKind,
        base: &str,
        key: SecretKey,
        auth: AuthScheme,
        timeout: Duration,
    ) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client { http, base: base.trim_end_matches('/').to_owned(), key, api, auth })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        let key = self.key.expose();
        match (self.api, self.auth) {
            (ApiKind::Links, _) => builder.basic_auth(key, Some("")).header("Omise-Version", OMISE_VERSION),
            (ApiKind::LinksPlus, AuthScheme::Basic) => builder.basic_auth(key, Some("")),
            (ApiKind::LinksPlus, scheme) => {
                let value = if scheme == AuthScheme::Bearer { format!("Bearer {key}") } else { key.to_owned() };
                match HeaderValue::from_str(&value) {
                    Ok(mut value) => {
                        value.set_sensitive(true);
                        builder.header(AUTHORIZATION, value)
                    }
                    // SecretKey::new admits printable ASCII only, which is always a valid header value.
                    Err(_) => builder,
                }
            }
        }
    }

    /// Sends and classifies. `mutating`: a create, whose lost answer is uncertain rather than retryable.
    async fn send(&self, builder: reqwest::RequestBuilder, mutating: bool) -> Result<Value, ApiError> {
        let transport = |e: reqwest::Error| {
            let reason = describe(&e);
            if e.is_connect() || !mutating {
                // Connection refused or never established: the request never reached a server.
                ApiError::Retryable { retry_after: None, rate_limited: false, reason }
            } else {
                ApiError::Uncertain { reason }
            }
        };
        let response = builder.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.map_err(|e| {
            if mutating {
                ApiError::Uncertain { reason: describe(&e) }
            } else {
                ApiError::Retryable { retry_after: None, rate_limited: false, reason: describe(&e) }
            }
        })?;
        let json = serde_json::from_slice::<Value>(&body).ok();
        let field = |name: &str| json.as_ref().and_then(|j| j.get(name)).and_then(Value::as_str).map(str::to_owned);
        let code = field("code").unwrap_or_else(|| format!("http_{status}"));
        let message = field("message").unwrap_or_else(|| format!("HTTP {status} with no Omise error object"));
        match status {
            200..=299 => match json {
                Some(value) if field("object").as_deref() != Some("error") => Ok(value),
                _ if mutating => Err(ApiError::Uncertain { reason: format!("HTTP {status} with an unreadable body") }),
                _ => Err(ApiError::Retryable {
                    retry_after: None,
                    rate_limited: false,
                    reason: format!("HTTP {status} with an unreadable body"),
                }),
            },
            429 => Err(ApiError::Retryable {
                retry_after,
                rate_limited: true,
                reason: format!("rate limited (429): {message}"),
            }),
            401 => Err(ApiError::Fatal { code, message }),
            500..=599 if mutating => Err(ApiError::Uncertain { reason: format!("HTTP {status}: {message}") }),
            500..=599 => Err(ApiError::Retryable {
                retry_after,
                rate_limited: false,
                reason: format!("HTTP {status}: {message}"),
            }),
            _ => Err(ApiError::Permanent { status, code, message }),
        }
    }

    fn link(&self, value: &Value) -> Result<RemoteLink, ApiError> {
        RemoteLink::from_json(self.api, value)
            .ok_or_else(|| ApiError::Uncertain { reason: "the server's answer is not a link object".into() })
    }

    /// Creates one link.
    pub async fn create(&self, request: &LinkRequest) -> Result<RemoteLink, ApiError> {
        let builder = match request {
            LinkRequest::Classic(r) => self.request(reqwest::Method::POST, "/links").form(r),
            LinkRequest::Plus(r) => self.request(reqwest::Method::POST, "/external/links").json(r),
        };
        let value = self.send(builder, true).await?;
        self.link(&value)
    }

    /// One page of links created at or after `since`, oldest first. Links+ lists one team.
    pub async fn list(&self, since: SystemTime, offset: usize, team_id: Option<u64>) -> Result<LinkPage, ApiError> {
        let path = match (self.api, team_id) {
            (ApiKind::LinksPlus, Some(team)) => format!("/external/{team}/links"),
            _ => "/links".to_owned(),
        };
        let from = humantime::format_rfc3339_seconds(since).to_string();
        let query = [
            ("from", from),
            ("offset", offset.to_string()),
            ("limit", PAGE.to_string()),
            ("order", "chronological".into()),
        ];
        let value = self.send(self.request(reqwest::Method::GET, &path).query(&query), false).await?;
        let total = value.get("total").and_then(Value::as_u64).unwrap_or(0) as usize;
        let links = value
            .get("data")
            .and_then(Value::as_array)
            .map(|data| data.iter().filter_map(|v| RemoteLink::from_json(self.api, v)).collect())
            .unwrap_or_default();
        Ok(LinkPage { links, total })
    }

    /// A link's payment state: `GET /links/{id}` or `GET /external/links/{id}`.
    pub async fn payment(&self, id: &str) -> Result<Payment, ApiError> {
        let path = match self.api {
            ApiKind::Links => format!("/links/{id}"),
            ApiKind::LinksPlus => format!("/external/links/{id}"),
        };
        let value = self.send(self.request(reqwest::Method::GET, &path), false).await?;
        Ok(payment_of(self.api, &value))
    }

    /// `DELETE /links/{id}`. Deleting is idempotent: a link already gone (404) counts as deleted, and a lost
    /// answer is safe to send again.
    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        match self.send(self.request(reqwest::Method::DELETE, &format!("/links/{id}")), false).await {
            Ok(_) | Err(ApiError::Permanent { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET /external/templates/{id}`: the template's team id.
    pub async fn template_team(&self, template_id: u64) -> Result<u64, ApiError> {
        let value =
            self.send(self.request(reqwest::Method::GET, &format!("/external/templates/{template_id}")), false).await?;
        value.get("team_id").and_then(Value::as_u64).ok_or_else(|| ApiError::Permanent {
            status: 200,
            code: "bad_template".into(),
            message: format!("template {template_id} has no team_id"),
        })
    }
}

/// Reads the payment state out of a link object of either API.
fn payment_of(api: ApiKind, link: &Value) -> Payment {
    let text = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
    let currency = text(link, "currency").unwrap_or_default();
    match api {
        ApiKind::Links => {
            let charges: Vec<&Value> = link
                .pointer("/charges/data")
                .and_then(Value::as_array)
                .map(|data| {
                    data.iter()
                        .filter(|c| {
                            c.get("paid").and_then(Value::as_bool).unwrap_or(false)
                                || text(c, "status").as_deref() == Some("successful")
                        })
                        .collect()
                })
                .unwrap_or_default();
            Payment {
                used: link.get("used").and_then(Value::as_bool),
                charges: charges.len() as u64,
                paid_amount: charges.iter().filter_map(|c| c.get("amount").and_then(Value::as_u64)).sum(),
                currency,
                last_paid_at: charges.iter().filter_map(|c| text(c, "created_at").or_else(|| text(c, "created"))).max(),
                link_status: None,
            }
        }
        ApiKind::LinksPlus => Payment {
            used: None,
            charges: link.get("payments").and_then(Value::as_u64).unwrap_or(0),
            paid_amount: link.get("paid_amount").and_then(Value::as_u64).unwrap_or(0),
            currency,
            last_paid_at: None,
            link_status: text(link, "status"),
        },
    }
}

/// A transport error in one line, with its cause (reqwest's top line alone says little).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "connection failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() { kind.to_owned() } else { format!("{kind}: {cause}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_never_printed() {
        assert_eq!(SecretKey::new("pkey_test_abc".into(), "K").unwrap_err(), KeyError::Public("K".into()));
        assert_eq!(SecretKey::new(" ".into(), "K").unwrap_err(), KeyError::Missing("K".into()));
        assert!(matches!(SecretKey::new("skey test".into(), "K"), Err(KeyError::Malformed(_))));
        let key = SecretKey::new("skey_test_Secret123".into(), "K").unwrap();
        assert!(!format!("{key:?}").contains("Secret123"));
        assert_eq!(key.mode(), Mode::Test);
        assert_eq!(SecretKey::new("skey_live_x".into(), "K").unwrap().mode(), Mode::Live);
    }
}
