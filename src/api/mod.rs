//! The Omise clients (classic Links and Links+) and the one place every answer is classified.
//!
//! A response becomes exactly one of: a value, [`ApiError::Retryable`] (nothing happened, try again),
//! [`ApiError::Uncertain`] (a create may have happened: reconcile before sending again), [`ApiError::Permanent`]
//! (the request is wrong), or [`ApiError::Fatal`] (stop the run). Retry logic matches on these, never on text.
//! The secret key lives in [`SecretKey`], which has no `Display` and a redacted `Debug`.

pub mod events;
mod key;
pub mod shape;
mod trust;

pub(crate) use trust::refused_certificate;

use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use serde_json::Value;

pub use key::{KeyError, SecretKey};
pub use shape::{LinkPage, RemoteLink, Unreadable};

use crate::clock::ServerClock;
use crate::request::LinkRequest;
use crate::terms::Payment;
use crate::terms::{ApiKind, AuthScheme};

/// Where the next page of an Omise list starts, and when the list is read: every list (links, a link's
/// charges) is paged by `offset` and says its `total`; a list is read once the offset reaches the total, or
/// a page comes back empty (a list that shrank while it was read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pager {
    /// Items read so far.
    offset: usize,
    /// The list is read.
    done: bool,
}

impl Pager {
    /// A list already read up to `offset`.
    pub fn from(offset: usize) -> Pager {
        Pager { offset, done: false }
    }

    /// The offset of the next page, or `None` once the list is read.
    pub fn next(&self) -> Option<usize> {
        (!self.done).then_some(self.offset)
    }

    /// A page of `items` came back, from a list that says it holds `total`.
    pub fn read(&mut self, items: usize, total: usize) {
        self.offset += items;
        self.done = items == 0 || self.offset >= total;
    }
}

/// Reads the rest of a link's charges, a page from `page(offset)` at a time, until it holds all of them
/// (or a page comes back empty). `Ok(false)` when `page` gives none (the run is stopping).
pub async fn all_charges<E, F, Fut>(link: &mut shape::Listed, mut page: F) -> Result<bool, E>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<Option<shape::Charges>, E>>,
{
    let mut pager = Pager::from(link.charges.charges.len());
    while let Some(offset) = pager.next().filter(|_| !link.complete()) {
        let Some(more) = page(offset).await? else { return Ok(false) };
        pager.read(more.charges.len(), usize::try_from(link.charges.total).unwrap_or(usize::MAX));
        link.charges.charges.extend(more.charges);
    }
    Ok(true)
}

#[cfg(test)]
mod pager_tests {
    use super::Pager;

    #[test]
    fn a_list_is_read_at_its_total_or_at_an_empty_page() {
        let mut pager = Pager::default();
        let mut offsets = Vec::new();
        // 250 items, 100 a page.
        while let Some(offset) = pager.next() {
            offsets.push(offset);
            pager.read((250 - offset).min(100), 250);
        }
        assert_eq!(offsets, [0, 100, 200]);
        // A list that shrank while it was read: its empty page ends it.
        let mut shrunk = Pager::from(100);
        shrunk.read(0, 250);
        assert_eq!(shrunk.next(), None);
    }
}

/// A classified failure.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    /// A 2xx answer linkbatch cannot read: it is never a reason to act (for a create, the link may well
    /// exist). The body is kept for the ledger, with the key redacted should the server echo it.
    #[error("HTTP {status} answer without a readable {missing}")]
    Unreadable {
        /// HTTP status.
        status: u16,
        /// What could not be read.
        missing: String,
        /// The answer as sent (at most 64 KiB).
        body: String,
    },
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
    /// No server could be reached (connection refused, no such host, a TLS handshake or a connection that
    /// did not complete in time): nothing was sent. The run waits for the server, spending no row's attempt.
    #[error("the server cannot be reached: {reason}")]
    Unreachable {
        /// What happened.
        reason: String,
    },
    /// The server's certificate was refused: nothing was sent, and nothing will be until the host trusts
    /// its CA. Stops the run.
    #[error(
        "{reason}: nothing was sent. If the server is right (a staging host with an internal CA, a proxy that inspects TLS), trust its CA: name its PEM file in SSL_CERT_FILE (or a directory in SSL_CERT_DIR), or add it to the system's trust store"
    )]
    Untrusted {
        /// What the check refused.
        reason: String,
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
    answers: Answers,
    /// The server's time, from the `Date` of every answer.
    clock: ServerClock,
}

/// How many answers of each HTTP status this client and its copies got (0: no answer at all), for the
/// run's metrics.
#[derive(Debug, Clone, Default)]
pub struct Answers(std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<u16, u64>>>);

impl Answers {
    fn count(&self, status: u16) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(status).or_default() += 1;
    }

    /// The counts so far, by status.
    pub fn by_status(&self) -> std::collections::BTreeMap<u16, u64> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
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
        let mut http = reqwest::Client::builder();
        for root in trust::host_roots() {
            http = http.add_root_certificate(root.clone());
        }
        if let Ok(url) = url::Url::parse(base) {
            let route = trust::proxy_for(&url).map_or_else(
                || "go direct (no proxy in the environment)".to_owned(),
                |proxy| format!("go through the proxy {proxy}"),
            );
            tracing::debug!("requests to {} {route}", url.host_str().unwrap_or_default());
        }
        let http = http
            .user_agent(USER_AGENT)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .pool_max_idle_per_host(64)
            // A create is never re-posted to a place the job did not name (a 3xx is an error).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
            api,
            auth,
            answers: Answers::default(),
            clock: ServerClock::default(),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        let key = self.key.expose();
        match (self.api, self.auth) {
            (ApiKind::Links, _) => builder.basic_auth(key, Some("")).header("Omise-Version", OMISE_VERSION),
            (ApiKind::LinksPlus, AuthScheme::Basic) => builder.basic_auth(key, Some("")),
            (ApiKind::LinksPlus, scheme) => {
                // `Auto` is settled before the first request (cli); until then the raw key is what is tried first.
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
    /// A 2xx comes back as its status and body, to be read by the caller; everything else is an error.
    async fn send(&self, builder: reqwest::RequestBuilder, mutating: bool) -> Result<Answer, ApiError> {
        let lost = |reason: String| {
            if mutating {
                ApiError::Uncertain { reason }
            } else {
                ApiError::Retryable { retry_after: None, rate_limited: false, reason }
            }
        };
        let response = builder.send().await.inspect_err(|_| self.answers.count(0)).map_err(|e| unanswered(&e, lost))?;
        let status = response.status().as_u16();
        self.answers.count(status);
        let headers = response.headers().clone();
        self.hear_date(&headers);
        let body = response.bytes().await.map_err(|e| lost(describe(&e)))?;
        let json = serde_json::from_slice::<Value>(&body).ok();
        if (200..300).contains(&status) && shape::error_object(json.as_ref()).is_none() {
            return Ok(Answer { status, json, body });
        }
        Err(classify(status, &headers, json.as_ref(), mutating))
    }

    fn hear_date(&self, headers: &reqwest::header::HeaderMap) {
        if let Some(date) = headers.get(reqwest::header::DATE).and_then(|v| v.to_str().ok()) {
            self.clock.heard(date, std::time::Instant::now());
        }
    }

    /// The server's clock as this client has heard it.
    pub fn clock(&self) -> &ServerClock {
        &self.clock
    }

    /// Asks the server its time (the `Date` of any answer) without the key and without counting against
    /// a rate window: `GET` of the base URL. Any HTTP answer will do; an error says the server could not
    /// be reached, and its time stays unknown.
    pub async fn read_clock(&self) -> Result<(), ApiError> {
        let lost = |reason| ApiError::Retryable { retry_after: None, rate_limited: false, reason };
        let response = self.http.get(format!("{}/", self.base)).send().await.map_err(|e| unanswered(&e, lost))?;
        self.hear_date(response.headers());
        Ok(())
    }

    /// An answer linkbatch cannot read, kept as the server sent it (less the key, should it echo it).
    fn unreadable(&self, answer: &Answer, missing: String) -> ApiError {
        let body = String::from_utf8_lossy(&answer.body[..answer.body.len().min(MAX_KEPT_BODY)]);
        ApiError::Unreadable { status: answer.status, missing, body: self.key.redact(&body) }
    }

    /// Reads a 2xx answer with `read`; what it cannot read is an [`ApiError::Unreadable`].
    fn read<T>(&self, answer: &Answer, read: impl FnOnce(&Value) -> Result<T, Unreadable>) -> Result<T, ApiError> {
        let json = answer.json.as_ref().ok_or_else(|| self.unreadable(answer, "JSON body".into()))?;
        read(json).map_err(|e| self.unreadable(answer, e.missing))
    }

    /// Creates one link. A 2xx whose link cannot be read is [`ApiError::Unreadable`]: the link may well
    /// exist, so the row must not be sent again (docs/reference.md, "Fail closed").
    pub async fn create(&self, request: &LinkRequest) -> Result<RemoteLink, ApiError> {
        let builder = match request {
            LinkRequest::Classic(r) => self.request(reqwest::Method::POST, "/links").form(&r.form()),
            LinkRequest::Plus(r) => self.request(reqwest::Method::POST, "/external/links").json(r),
        };
        let answer = self.send(builder, true).await?;
        self.read(&answer, |json| RemoteLink::read(self.api, json))
    }

    /// One page of links created at or after `since`, oldest first. Links+ lists one team. A page with an
    /// item that cannot be read is [`ApiError::Unreadable`], never a page without it.
    pub async fn list(&self, since: SystemTime, offset: usize, team_id: Option<u64>) -> Result<LinkPage, ApiError> {
        let answer = self.send(self.list_request(since, offset, team_id), false).await?;
        self.read(&answer, |json| shape::link_page(self.api, json))
    }

    fn list_request(&self, since: SystemTime, offset: usize, team_id: Option<u64>) -> reqwest::RequestBuilder {
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
        self.request(reqwest::Method::GET, &path).query(&query)
    }

    /// One page of links for `refresh`, created at or after `since`, oldest first (Links+: one team's): each
    /// with its embedded charges, and how many links match in all.
    pub async fn payment_page(
        &self,
        since: SystemTime,
        offset: usize,
        team_id: Option<u64>,
    ) -> Result<(Vec<shape::Listed>, usize), ApiError> {
        let answer = self.send(self.list_request(since, offset, team_id), false).await?;
        self.read(&answer, |json| shape::payment_page(self.api, json))
    }

    /// A page of the account's events created at or after `from`, oldest first (`GET /events`), and how many
    /// there are in all.
    pub async fn events(&self, from: SystemTime, offset: usize) -> Result<events::Page, ApiError> {
        let query = [
            ("from", humantime::format_rfc3339_seconds(from).to_string()),
            ("order", "chronological".to_owned()),
            ("offset", offset.to_string()),
            ("limit", PAGE.to_string()),
        ];
        let answer = self.send(self.request(reqwest::Method::GET, "/events").query(&query), false).await?;
        self.read(&answer, events::page)
    }

    /// A page of a classic link's charges from `offset` (`GET /links/{id}/charges`).
    pub async fn charges(&self, id: &str, offset: usize) -> Result<shape::Charges, ApiError> {
        let query = [("offset", offset.to_string()), ("limit", PAGE.to_string())];
        let path = format!("/links/{id}/charges");
        let page = self.send(self.request(reqwest::Method::GET, &path).query(&query), false).await?;
        self.read(&page, shape::charges)
    }

    /// A link as `refresh` reads it by id: `GET /links/{id}` with its embedded charges (Links+:
    /// `GET /external/links/{id}`). An answer whose payment state cannot be read is [`ApiError::Unreadable`].
    pub async fn link(&self, id: &str) -> Result<shape::Listed, ApiError> {
        let path = match self.api {
            ApiKind::Links => format!("/links/{id}"),
            ApiKind::LinksPlus => format!("/external/links/{id}"),
        };
        let answer = self.send(self.request(reqwest::Method::GET, &path), false).await?;
        self.read(&answer, |json| shape::Listed::read(self.api, id.to_owned(), json))
    }

    /// A link's payment state: [`Client::link`] and, when the link has more charges than it embeds, their
    /// pages (`GET /links/{id}/charges`). The runner reads the pages itself, each under the limits.
    pub async fn payment(&self, id: &str) -> Result<Payment, ApiError> {
        let mut listed = self.link(id).await?;
        all_charges(&mut listed, |from| async move { self.charges(id, from).await.map(Some) }).await?;
        Ok(listed.payment())
    }

    /// `DELETE /links/{id}`. A link already gone (404) counts as deleted; a lost answer is
    /// [`ApiError::Uncertain`], for the caller to confirm by a read. Any 2xx is enough: older versions answer
    /// `{object, id, deleted}` only.
    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        // A delete changes what the server holds: an answer lost after it was sent (a dropped connection, a
        // 5xx) is uncertain, and confirmed by a read before the delete is ever sent again.
        match self.send(self.request(reqwest::Method::DELETE, &format!("/links/{id}")), true).await {
            Ok(_) | Err(ApiError::Permanent { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET /external/templates/{id}`: the template's team id.
    pub async fn template_team(&self, template_id: u64) -> Result<u64, ApiError> {
        let path = format!("/external/templates/{template_id}");
        let answer = self.send(self.request(reqwest::Method::GET, &path), false).await?;
        self.read(&answer, shape::template_team)
    }

    /// `PATCH /links/{id}` with a new description and metadata (the Links guide: only these can change). The same body
    /// sent twice leaves the link the same, so a lost answer is safe to send again.
    pub async fn update(
        &self,
        id: &str,
        description: &str,
        metadata: &std::collections::BTreeMap<String, String>,
    ) -> Result<RemoteLink, ApiError> {
        let mut form = vec![("description".to_owned(), description.to_owned())];
        form.extend(metadata.iter().map(|(k, v)| (format!("metadata[{k}]"), v.clone())));
        let answer =
            self.send(self.request(reqwest::Method::PATCH, &format!("/links/{id}")).form(&form), false).await?;
        self.read(&answer, |json| RemoteLink::read(self.api, json))
    }

    /// `GET /external/{team_id}/templates`: the team's templates.
    pub async fn templates(&self, team_id: u64) -> Result<Vec<shape::TemplateInfo>, ApiError> {
        let answer =
            self.send(self.request(reqwest::Method::GET, &format!("/external/{team_id}/templates")), false).await?;
        self.read(&answer, shape::templates)
    }

    /// Whether the server takes this client's Links+ scheme: a read of the template, whatever its answer,
    /// unless it is a 401. Reads are safe to repeat, so this is how `auth = "auto"` finds the scheme.
    pub async fn accepts_auth(&self, template_id: u64) -> Result<bool, ApiError> {
        match self.template_team(template_id).await {
            Err(ApiError::Fatal { .. }) => Ok(false),
            Ok(_) | Err(ApiError::Permanent { .. } | ApiError::Unreadable { .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The same client with another Links+ scheme.
    pub fn with_auth(&self, auth: AuthScheme) -> Client {
        Client { auth, ..self.clone() }
    }

    /// The tally of answers by status, shared by this client and its copies.
    pub fn answers(&self) -> Answers {
        self.answers.clone()
    }
}

/// The most of an unreadable answer the ledger keeps.
const MAX_KEPT_BODY: usize = 64 * 1024;

/// A 2xx answer: its status, its body, and the body as JSON when it is JSON.
struct Answer {
    status: u16,
    json: Option<Value>,
    body: bytes::Bytes,
}

/// Every non-2xx answer (and a 2xx carrying an error object) classified once.
/// A request that got no answer: a refused certificate, no server reached (refused, no such host, a
/// handshake or a connect that timed out: nothing reached a server), or an answer lost on the way (`lost`).
fn unanswered(e: &reqwest::Error, lost: impl FnOnce(String) -> ApiError) -> ApiError {
    if let Some(reason) = trust::refused_certificate(e) {
        ApiError::Untrusted { reason }
    } else if e.is_connect() {
        ApiError::Unreachable { reason: describe(e) }
    } else {
        lost(describe(e))
    }
}

fn classify(status: u16, headers: &reqwest::header::HeaderMap, json: Option<&Value>, mutating: bool) -> ApiError {
    let (code, message) = shape::error_object(json)
        .unwrap_or_else(|| (format!("http_{status}"), format!("HTTP {status} with no Omise error object")));
    let retry_after = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(retry_after);
    match status {
        429 => {
            ApiError::Retryable { retry_after, rate_limited: true, reason: format!("rate limited (429): {message}") }
        }
        401 => ApiError::Fatal { code, message },
        300..=399 => {
            let location = headers.get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("nowhere");
            ApiError::Permanent {
                status,
                code: "redirected".into(),
                message: format!("HTTP {status} to {location}: redirects are not followed; check the base URL"),
            }
        }
        500..=599 if mutating => ApiError::Uncertain { reason: format!("HTTP {status}: {message}") },
        500..=599 => {
            ApiError::Retryable { retry_after, rate_limited: false, reason: format!("HTTP {status}: {message}") }
        }
        _ => ApiError::Permanent { status, code, message },
    }
}

/// `Retry-After`: seconds, or an HTTP date (the wait until then).
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// A transport error in one line, with its cause (reqwest's top line alone says little).
pub fn describe(e: &reqwest::Error) -> String {
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
    fn retry_after_is_seconds_or_an_http_date() {
        assert_eq!(retry_after("120"), Some(Duration::from_mins(2)));
        assert_eq!(retry_after(" 7 "), Some(Duration::from_secs(7)));
        let in_a_minute = httpdate::fmt_http_date(SystemTime::now() + Duration::from_mins(1));
        let wait = retry_after(&in_a_minute).unwrap();
        assert!(wait > Duration::from_secs(58) && wait <= Duration::from_mins(1), "{wait:?}");
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO), "a date past: no wait");
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn a_redirect_is_a_permanent_error_naming_where_it_pointed() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::LOCATION, HeaderValue::from_static("https://elsewhere.example/links"));
        let error = classify(307, &headers, None, true);
        let ApiError::Permanent { status: 307, code, message } = error else { panic!("{error:?}") };
        assert_eq!(code, "redirected");
        assert!(message.contains("https://elsewhere.example/links"), "{message}");
    }

    #[test]
    fn a_lost_create_is_uncertain_and_a_lost_read_is_retryable() {
        let headers = reqwest::header::HeaderMap::new();
        assert!(matches!(classify(503, &headers, None, true), ApiError::Uncertain { .. }));
        assert!(matches!(classify(503, &headers, None, false), ApiError::Retryable { rate_limited: false, .. }));
        assert!(matches!(classify(429, &headers, None, false), ApiError::Retryable { rate_limited: true, .. }));
        let refused = serde_json::json!({"object": "error", "code": "authentication_failure", "message": "no"});
        assert!(matches!(classify(401, &headers, Some(&refused), true), ApiError::Fatal { .. }));
    }
}
