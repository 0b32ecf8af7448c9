//! The sandbox's HTTP surface: routes, authentication as Omise does it, the rate-limit and fault gate every
//! API request passes, and the Omise error object for every refusal.
//!
//! Nothing here answers 500 unless a 500 fault was drawn: a malformed request is the client's error (400).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine;

use crate::terms::AuthScheme;
use rand::Rng;
use serde_json::{Map, Value};

use super::store::{Admission, ApiFault, ListQuery};
use super::{ConnectionKill, FaultKind, Profile, Shared};

type Sandbox = State<Arc<Shared>>;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/links", post(create_classic).get(list_classic))
        .route("/links/{id}", get(get_classic).delete(delete_classic).patch(update_classic))
        .route("/links/{id}/charges", get(link_charges))
        .route("/events", get(list_events))
        .route("/events/{id}", get(get_event))
        .route("/external/links", post(create_plus))
        .route("/external/links/{id}", get(get_plus))
        .route("/external/templates/{id}", get(get_template))
        .route("/external/{team_id}/links", get(list_plus))
        .route("/external/{team_id}/templates", get(list_templates))
        .route("/", get(root))
        .route("/__sandbox/stats", get(stats))
        .route("/__sandbox/mail", get(mail))
        .route("/__sandbox/clock", get(clock).post(set_clock))
        .route("/__sandbox/links/{id}/pay", post(pay))
        .route("/__sandbox/links/{id}/refund", post(refund))
        .route("/pay/{id}", get(payment_page))
        .route("/pay/plus/{id}", get(payment_page))
        .fallback(unknown_route)
        .layer(middleware::from_fn_with_state(shared.clone(), count_answers))
        .with_state(shared)
}

/// Which API a request is for: they differ in the authentication schemes they take.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Classic,
    Plus,
}

/// What a request that passed the gate carries into its handler.
struct Admitted {
    key: String,
    fault: Option<FaultKind>,
    /// The shape to answer in: the sandbox's profile, or `Legacy` for a client asking for an API version
    /// older than the one the sandbox answers in ([`super::rules::API_VERSION`]).
    profile: Profile,
}

fn answer(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(body)).into_response()
}

fn refuse(fault: ApiFault) -> Response {
    answer(fault.status, fault.body())
}

fn too_many(retry_after: u64) -> Response {
    let mut response = refuse(ApiFault::new(429, "too_many_requests", "rate limit exceeded, retry later"));
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

fn result(outcome: Result<Value, ApiFault>) -> Response {
    match outcome {
        Ok(body) => answer(200, body),
        Err(fault) => refuse(fault),
    }
}

/// The secret key of a request, as Omise reads it: Basic with the key as user name; on Links+ also
/// `Bearer KEY` or the raw key.
fn secret_key(headers: &HeaderMap, api: Api, only: Option<AuthScheme>) -> Result<String, ApiFault> {
    let unauthorized = |message: &str| ApiFault::new(401, "authentication_failure", message);
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or_else(|| unauthorized("authentication failed: no secret key was given"))?;
    let scheme = if value.starts_with("Basic ") {
        AuthScheme::Basic
    } else if value.starts_with("Bearer ") {
        AuthScheme::Bearer
    } else {
        AuthScheme::Raw
    };
    if let Some(only) = only.filter(|_| api == Api::Plus).filter(|&only| only != scheme) {
        return Err(unauthorized(&format!("authentication failed: this server takes the {} scheme", only.name())));
    }
    let key = if let Some(encoded) = value.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| unauthorized("authentication failed: malformed Basic credentials"))?;
        decoded.split_once(':').map_or(decoded.clone(), |(user, _)| user.to_owned())
    } else if api == Api::Plus {
        value.strip_prefix("Bearer ").unwrap_or(value).trim().to_owned()
    } else {
        return Err(unauthorized("authentication failed: use HTTP Basic with your secret key as the user name"));
    };
    if key.starts_with("pkey_") {
        return Err(unauthorized("authentication failed: a public key cannot be used here, use your secret key"));
    }
    let known = ["skey_test_", "skey_live_"].iter().any(|p| key.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
    if !known {
        return Err(unauthorized("authentication failed: unknown secret key"));
    }
    Ok(key)
}

/// Authentication, then the key's windows, then the fault draw, then the configured latency.
// A refusal is the answer itself, made once per request: boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn gate(shared: &Shared, headers: &HeaderMap, api: Api, commits: bool) -> Result<Admitted, Response> {
    let key = secret_key(headers, api, shared.config.plus_auth).map_err(refuse)?;
    let fault = {
        let mut store = shared.store();
        if let Admission::Limited { retry_after } = store.admit(&key, Instant::now()) {
            return Err(too_many(retry_after));
        }
        // One draw per admitted request, whatever is configured, keeps a seed's sequence stable.
        let draw: f64 = store.rng.random();
        let mut threshold = 0.0;
        let mut chosen = None;
        for spec in shared.config.faults.iter().filter(|f| !f.kind.is_mail()) {
            threshold += spec.probability;
            if draw < threshold {
                chosen = Some(spec.kind);
                break;
            }
        }
        let fault = chosen.filter(|kind| commits || !kind.after_commit());
        match fault {
            Some(FaultKind::ServerErrorBefore) => {
                store.count_fault(FaultKind::ServerErrorBefore.name());
                return Err(refuse(ApiFault::new(500, "internal_error", "injected fault: 500 before commit")));
            }
            Some(FaultKind::RateLimited) => {
                store.count_fault(FaultKind::RateLimited.name());
                return Err(too_many(1));
            }
            other => other,
        }
    };
    let legacy = headers
        .get("omise-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|version| version.trim() < super::rules::API_VERSION);
    let profile = if legacy { Profile::Legacy } else { shared.config.profile };
    Ok(Admitted { key, fault, profile })
}

/// Applies an after-commit fault to a create or delete that succeeded.
async fn after_commit(
    shared: &Shared,
    fault: Option<FaultKind>,
    outcome: Result<Value, ApiFault>,
    kill: ConnectionKill,
) -> Response {
    let (Ok(body), Some(kind)) = (&outcome, fault) else {
        return result(outcome);
    };
    shared.store().count_fault(kind.name());
    match kind {
        FaultKind::ServerErrorAfter => refuse(ApiFault::new(500, "internal_error", "injected fault: 500 after commit")),
        FaultKind::SlowAfter => {
            tokio::time::sleep(shared.config.slow_delay).await;
            answer(200, body.clone())
        }
        FaultKind::DropAfterCommit => {
            shared.store().count_response("dropped");
            kill.0.notify_one();
            // The connection task drops this future together with the socket.
            std::future::pending().await
        }
        FaultKind::UnreadableAfter => answer(200, serde_json::json!({"object": "link", "state": "processing"})),
        FaultKind::ServerErrorBefore
        | FaultKind::RateLimited
        | FaultKind::SmtpRejectRcpt
        | FaultKind::Smtp4xx
        | FaultKind::SmtpDropAfterData => result(outcome),
    }
}

/// A form-encoded or JSON body as one map; malformed bodies are a 400.
fn fields(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, ApiFault> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().contains("json"));
    if json {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(ApiFault::bad_request("request body must be a JSON object")),
            Err(e) => Err(ApiFault::bad_request(format!("malformed JSON body: {e}"))),
        }
    } else {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| ApiFault::bad_request(format!("malformed form body: {e}")))?;
        Ok(pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
    }
}

fn list_query(raw: Option<String>) -> Result<ListQuery, ApiFault> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| ApiFault::bad_request(format!("malformed query string: {e}")))?;
    ListQuery::parse(&pairs)
}

macro_rules! admitted {
    ($shared:expr, $headers:expr, $api:expr, $commits:expr) => {
        match gate(&$shared, &$headers, $api, $commits) {
            Ok(admitted) => admitted,
            Err(response) => return response,
        }
    };
}

async fn create_classic(
    State(s): Sandbox,
    Extension(kill): Extension<ConnectionKill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gate = admitted!(s, headers, Api::Classic, true);
    let outcome =
        fields(&headers, &body).and_then(|f| s.store().create_classic(&gate.key, &f, gate.profile, s.clock.now()));
    after_commit(&s, gate.fault, outcome, kill).await
}

async fn list_classic(State(s): Sandbox, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let gate = admitted!(s, headers, Api::Classic, false);
    result(list_query(query).map(|q| s.store().list_classic(&gate.key, &q, gate.profile, s.clock.now())))
}

async fn list_events(State(s): Sandbox, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let gate = admitted!(s, headers, Api::Classic, false);
    result(list_query(query).map(|q| s.store().list_events(&gate.key, &q, gate.profile, s.clock.now())))
}

async fn get_event(State(s): Sandbox, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let gate = admitted!(s, headers, Api::Classic, false);
    result(s.store().get_event(&gate.key, &id, gate.profile))
}

async fn get_classic(State(s): Sandbox, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let gate = admitted!(s, headers, Api::Classic, false);
    result(s.store().get_classic(&gate.key, &id, gate.profile, s.clock.now()))
}

async fn update_classic(State(s): Sandbox, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let gate = admitted!(s, headers, Api::Classic, false);
    result(fields(&headers, &body).and_then(|f| s.store().update_classic(&gate.key, &id, &f, s.clock.now())))
}

async fn link_charges(
    State(s): Sandbox,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let gate = admitted!(s, headers, Api::Classic, false);
    result(list_query(query).and_then(|q| s.store().link_charges(&gate.key, &id, &q, s.clock.now())))
}

/// A delete changes what the server holds, as a create does: an after-commit fault loses its answer once
/// the link is deleted.
async fn delete_classic(
    State(s): Sandbox,
    Extension(kill): Extension<ConnectionKill>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let gate = admitted!(s, headers, Api::Classic, true);
    let outcome = s.store().delete_classic(&gate.key, &id, gate.profile, s.clock.now());
    after_commit(&s, gate.fault, outcome, kill).await
}

async fn create_plus(
    State(s): Sandbox,
    Extension(kill): Extension<ConnectionKill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gate = admitted!(s, headers, Api::Plus, true);
    let outcome = fields(&headers, &body).and_then(|f| s.store().create_plus(&gate.key, &f, s.clock.now()));
    after_commit(&s, gate.fault, outcome, kill).await
}

async fn get_plus(State(s): Sandbox, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let gate = admitted!(s, headers, Api::Plus, false);
    result(s.store().get_plus(&gate.key, &id))
}

async fn list_plus(
    State(s): Sandbox,
    headers: HeaderMap,
    Path(team): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let gate = admitted!(s, headers, Api::Plus, false);
    result(list_query(query).and_then(|q| s.store().list_plus(&gate.key, &team, &q, s.clock.now())))
}

async fn get_template(State(s): Sandbox, headers: HeaderMap, Path(id): Path<String>) -> Response {
    admitted!(s, headers, Api::Plus, false);
    result(s.store().get_template(&id))
}

async fn list_templates(State(s): Sandbox, headers: HeaderMap, Path(team): Path<String>) -> Response {
    admitted!(s, headers, Api::Plus, false);
    result(s.store().list_templates(&team))
}

async fn stats(State(s): Sandbox) -> Response {
    Json(s.stats()).into_response()
}

/// `GET /__sandbox/mail`: every message the catcher kept (envelope, headers, body).
async fn mail(State(s): Sandbox) -> Response {
    Json(s.mailbox().clone()).into_response()
}

/// `GET /__sandbox/clock`: the server's time and its offset from the host's.
async fn clock(State(s): Sandbox) -> Response {
    let now = humantime::format_rfc3339_millis(s.clock.now()).to_string();
    Json(serde_json::json!({ "now": now, "offset_ms": s.clock.offset_ms() })).into_response()
}

/// `POST /__sandbox/clock?offset=-1h`: moves the server's clock to that offset from the host's, as a host
/// whose clock is stepped sees it.
async fn set_clock(State(s): Sandbox, RawQuery(query): RawQuery) -> Response {
    let offset = query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "offset").map(|(_, v)| v.into_owned())
    });
    match offset.as_deref().map(super::clock::parse_offset) {
        Some(Ok(ms)) => {
            s.clock.set(ms);
            clock(State(s)).await
        }
        Some(Err(e)) => answer(400, serde_json::json!({ "object": "error", "code": "bad_request", "message": e })),
        None => answer(
            400,
            serde_json::json!({ "object": "error", "code": "bad_request", "message": "give ?offset=DURATION" }),
        ),
    }
}

async fn pay(State(s): Sandbox, Path(id): Path<String>) -> Response {
    result(s.store().pay(&id, s.clock.now()))
}

async fn refund(State(s): Sandbox, Path(id): Path<String>) -> Response {
    result(s.store().refund(&id, s.clock.now()))
}

async fn payment_page(Path(id): Path<String>) -> Html<String> {
    let id: String = id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    Html(format!(
        "<!doctype html><title>linkbatch sandbox</title><p>Sandbox payment page for link <code>{id}</code>. \
         Simulate a payment with <code>POST /__sandbox/links/{id}/pay</code>.</p>"
    ))
}

/// `GET /`: what a client asking only for the server's `Date` gets.
async fn root() -> Response {
    Json(serde_json::json!({ "object": "sandbox", "links": "/links", "links_plus": "/external/links" })).into_response()
}

async fn unknown_route() -> Response {
    refuse(ApiFault::not_found("the requested resource"))
}

/// Counts every API answer and applies the configured latency and jitter. The latency comes after the handler, so a
/// create is stored as soon as it arrives and only its answer is slow: a client that times out and then looks
/// for the link finds it, as it would on a server that commits before it answers.
async fn count_answers(State(s): Sandbox, request: Request, next: Next) -> Response {
    // The root answers a client asking the time (`Client::read_clock`): not an API request.
    let internal = request.uri().path().starts_with("/__sandbox") || request.uri().path() == "/";
    let mut response = next.run(request).await;
    // The server's `Date`, from its own clock (hyper would write the host's).
    let date = httpdate::fmt_http_date(s.clock.now());
    if let Ok(value) = HeaderValue::from_str(&date) {
        response.headers_mut().insert(header::DATE, value);
    }
    if !internal {
        s.store().count_response(response.status().as_str());
        // Jitter draws from its own generator: the seeded one keeps its fault sequence.
        let jitter = s.config.jitter.mul_f64(rand::random::<f64>());
        let delay = s.config.latency + jitter;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    response
}
