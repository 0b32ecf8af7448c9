//! `linkbatch listen`'s HTTP side: Omise's webhook posts taken on an address (HTTPS with a certificate, or
//! plain behind the user's proxy), each checked before it is believed: a body over 64 KiB refused unread
//! (413), a signature that does not verify refused (401) when the job names a secret, a body that is not an
//! event refused (400). What an event asks is carried out by the runner's [`Listener`]; the answer is 2xx
//! only once its reading is on disk, and 503 when it could not be (so the sender posts it again).

mod verify;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower_service::Service as _;

pub use verify::{Refused, TOLERANCE_SECS, verify};

use crate::runner::{Listener, Untaken};
use crate::terms::Taken;

/// The largest body read: an Omise event is a few kilobytes.
pub const MAX_BODY: usize = 64 * 1024;

/// What the server needs beside the listener.
#[derive(Clone)]
pub struct Serving {
    /// The webhook secret; `None` takes unsigned posts (loopback only, checked by the caller).
    pub secret: Option<String>,
    /// HTTPS with this certificate; plain HTTP when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is never printed.
        f.debug_struct("Serving").field("signed", &self.secret.is_some()).field("tls", &self.tls.is_some()).finish()
    }
}

#[derive(Clone)]
struct Shared {
    listener: Arc<Listener>,
    secret: Option<Arc<str>>,
}

/// Serves on `socket` until `stop` resolves; posts in flight then finish (their readings recorded) within
/// `grace`.
pub async fn serve(
    socket: TcpListener,
    listener: Arc<Listener>,
    serving: Serving,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) {
    let shared = Shared { listener, secret: serving.secret.map(Arc::from) };
    let router = axum::Router::new().fallback(take).with_state(shared);
    let acceptor = serving.tls.map(tokio_rustls::TlsAcceptor::from);
    let mut connections = tokio::task::JoinSet::new();
    // Each connection ends its keep-alive once asked, after the post it is answering.
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            () = &mut stop => break,
        };
        let (router, acceptor, stopped) = (router.clone(), acceptor.clone(), stopped.clone());
        connections.spawn(async move {
            match acceptor {
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        connection(stream, router, stopped).await;
                    }
                }
                None => connection(stream, router, stopped).await,
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(socket);
    let _ = stopping.send(true);
    let _ = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
    connections.shutdown().await;
}

async fn connection<S>(stream: S, router: axum::Router, mut stopped: tokio::sync::watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let mut router = router.clone();
        async move { Ok::<_, Infallible>(router.call(request).await.unwrap_or_else(|never| match never {})) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stopped.changed() => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}

fn answer(status: StatusCode, text: &str) -> Response {
    (status, format!("{text}\n")).into_response()
}

/// One post: size, signature, event, then the listener.
async fn take(State(shared): State<Shared>, method: Method, headers: HeaderMap, body: Body) -> Response {
    if method != Method::POST {
        return answer(StatusCode::METHOD_NOT_ALLOWED, "POST Omise's events here");
    }
    let declared = headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return answer(StatusCode::PAYLOAD_TOO_LARGE, "an event is at most 64 KiB");
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return answer(StatusCode::PAYLOAD_TOO_LARGE, "an event is at most 64 KiB");
    };
    if let Some(secret) = &shared.secret {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        if let Err(refused) =
            verify(secret, header("omise-signature"), header("omise-signature-timestamp"), &bytes, now)
        {
            crate::told::listen::refused(&refused);
            return answer(StatusCode::UNAUTHORIZED, "the signature does not verify");
        }
    }
    carry_out(&shared.listener, &bytes).await
}

async fn carry_out(listener: &Listener, bytes: &Bytes) -> Response {
    let hint = serde_json::from_slice(bytes)
        .map_err(|e| e.to_string())
        .and_then(|json| crate::api::events::hint(&json).map_err(|e| format!("no {}", e.missing)));
    let hint = match hint {
        Ok(hint) => hint,
        Err(why) => {
            crate::told::listen::not_an_event(&why);
            return answer(StatusCode::BAD_REQUEST, "not an Omise event");
        }
    };
    match listener.hint(&hint).await {
        Ok(taken) => {
            let link = hint.charge.as_ref().map_or("", |c| c.link.as_str());
            crate::told::listen::taken(&hint.id, &hint.key, link, taken);
            answer(
                StatusCode::OK,
                match taken {
                    Taken::Read | Taken::Folded | Taken::Retired(_) => "recorded",
                    Taken::Replayed => "recorded before",
                    Taken::NotOurs => "not this job's",
                },
            )
        }
        Err(untaken) => {
            crate::told::listen::untaken(&hint.id, &hint.key, &untaken);
            let retry = match untaken {
                Untaken::Unread(_) | Untaken::Unrecorded | Untaken::NotYet => "not recorded: post it again",
            };
            answer(StatusCode::SERVICE_UNAVAILABLE, retry)
        }
    }
}

/// Whether `addr` is on this machine: an unsigned listener serves there only.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}
