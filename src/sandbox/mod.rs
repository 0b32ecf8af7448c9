//! The sandbox: both Omise link APIs on localhost, in memory, with Omise's objects and errors, sliding-window
//! rate limits and injected faults.
//!
//! It is a faithful peer, not an echo: it validates what it is sent, refuses what Omise refuses, and keeps the
//! counts (`/__sandbox/stats`) that let a test prove "one link per row" and "never over the limit" from the
//! server's side. It owns its own accept loop so that `drop-after-commit` can close a connection with no answer.

mod clock;
pub mod mail;
mod routes;
pub mod rules;
mod store;
pub mod tls;
pub mod webhook;

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower_service::Service;

use crate::rate::Rate;
pub use clock::parse_offset;
pub use store::{ApiFault, Deletes, Stats, Team, Template, WindowStats, default_teams};

/// A fault the sandbox can inject, each with its own probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// 500 before anything is stored.
    ServerErrorBefore,
    /// 500 after the link is stored.
    ServerErrorAfter,
    /// 429 whatever the windows say.
    RateLimited,
    /// The link is stored, then the answer waits past the client's timeout.
    SlowAfter,
    /// The link is stored, then the connection closes with no answer at all.
    DropAfterCommit,
    /// The link is stored, then a 200 answers in a shape no client can read (no id, no URL).
    UnreadableAfter,
    /// Mail: the first recipient refused for good (550).
    SmtpRejectRcpt,
    /// Mail: the end of data answered with a 451, the message not kept.
    Smtp4xx,
    /// Mail: the message kept, and the connection closed before the reply to its end of data.
    SmtpDropAfterData,
}

impl FaultKind {
    const ALL: [FaultKind; 9] = [
        FaultKind::ServerErrorBefore,
        FaultKind::ServerErrorAfter,
        FaultKind::RateLimited,
        FaultKind::SlowAfter,
        FaultKind::DropAfterCommit,
        FaultKind::UnreadableAfter,
        FaultKind::SmtpRejectRcpt,
        FaultKind::Smtp4xx,
        FaultKind::SmtpDropAfterData,
    ];

    /// The name used on the command line and in the stats.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::ServerErrorBefore => "500-before",
            FaultKind::ServerErrorAfter => "500-after",
            FaultKind::RateLimited => "429",
            FaultKind::SlowAfter => "slow-after",
            FaultKind::DropAfterCommit => "drop-after-commit",
            FaultKind::UnreadableAfter => "unreadable-after",
            FaultKind::SmtpRejectRcpt => "smtp-reject-rcpt",
            FaultKind::Smtp4xx => "smtp-4xx",
            FaultKind::SmtpDropAfterData => "smtp-drop-after-data",
        }
    }

    /// Whether the fault is the mail catcher's (drawn per SMTP transaction, not per API request).
    pub fn is_mail(self) -> bool {
        matches!(self, FaultKind::SmtpRejectRcpt | FaultKind::Smtp4xx | FaultKind::SmtpDropAfterData)
    }

    /// Whether the fault needs a stored link, and so only applies to create requests.
    fn after_commit(self) -> bool {
        matches!(
            self,
            FaultKind::ServerErrorAfter
                | FaultKind::SlowAfter
                | FaultKind::DropAfterCommit
                | FaultKind::UnreadableAfter
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `KIND=PROB`, as given to `--fault`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultSpec {
    /// Which fault.
    pub kind: FaultKind,
    /// Probability per eligible request, 0.0–1.0.
    pub probability: f64,
}

impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let names = || FaultKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
        let (kind, probability) =
            text.split_once('=').ok_or_else(|| format!("fault `{text}` is not KIND=PROB (kinds: {})", names()))?;
        let kind = FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == kind.trim())
            .ok_or_else(|| format!("unknown fault kind `{kind}` (kinds: {})", names()))?;
        let probability: f64 =
            probability.trim().parse().map_err(|_| format!("fault probability `{probability}` is not a number"))?;
        if !(0.0..=1.0).contains(&probability) {
            return Err(format!("fault probability {probability} is outside 0.0–1.0"));
        }
        Ok(FaultSpec { kind, probability })
    }
}

/// The shape the sandbox answers in, each one a recording of the real API (`tests/fixtures/omise/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// API version 2019-05-29: `created_at`, `deleted`, lower-case currency, full charge objects with
    /// `refunded_amount`, a full link as the DELETE answer (the Java recordings).
    #[default]
    Current,
    /// An older API version (the 2016 Ruby recordings): `created`, no `deleted`, charges with `refunded`,
    /// `{object, id, livemode, deleted}` as the DELETE answer. Also what a client asking for an
    /// `Omise-Version` older than 2019-05-29 gets.
    Legacy,
    /// The 2025 staging recording (PHP): `deleted_at`, `used_at`, currency in upper case.
    Recorded2025,
    /// Links+ as third-party code reads it: `transaction_url` and `state`, ids as strings.
    PlusVariant,
}

impl Profile {
    /// Every profile, for tests that run on each.
    pub const ALL: [Profile; 4] = [Profile::Current, Profile::Legacy, Profile::Recorded2025, Profile::PlusVariant];

    /// The name `--profile` takes.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Current => "current",
            Profile::Legacy => "legacy",
            Profile::Recorded2025 => "2025",
            Profile::PlusVariant => "plus-variant",
        }
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Profile::ALL.into_iter().find(|p| p.name() == text).ok_or_else(|| {
            let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
            format!("unknown profile `{text}` (one of {})", names.join(", "))
        })
    }
}

/// How a sandbox behaves.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Sliding windows enforced per key (empty: no limit).
    pub limits: Vec<Rate>,
    /// Faults to inject.
    pub faults: Vec<FaultSpec>,
    /// Seed for ids and fault draws.
    pub seed: u64,
    /// Added to every API answer (simulated server latency).
    pub latency: Duration,
    /// Up to this much more latency, drawn afresh for every answer.
    pub jitter: Duration,
    /// How long a `slow-after` answer waits once the link is stored.
    pub slow_delay: Duration,
    /// Links+ teams and templates.
    pub teams: Vec<Team>,
    /// The shape of the answers.
    pub profile: Profile,
    /// Links+: accept only this scheme (`None`: raw, bearer and basic alike).
    pub plus_auth: Option<crate::terms::AuthScheme>,
    /// Refuse a create past this many active links per key (standard accounts hold 100).
    pub active_links: Option<usize>,
    /// Serve HTTPS with this certificate ([`tls::server_config`]); plain HTTP when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Close every connection after its answer: each request a new connection (and over TLS a handshake).
    pub close_each: bool,
    /// Where the mail catcher listens (`None`: a free port on 127.0.0.1).
    pub smtp_addr: Option<SocketAddr>,
    /// The only login the mail catcher accepts (`None`: any login, or none).
    pub smtp_login: Option<(String, String)>,
    /// With `tls`: the mail catcher speaks TLS from the first byte (as port 465 does), not STARTTLS.
    pub smtps: bool,
    /// The server's clock, this many milliseconds from the host's (negative: behind).
    pub clock_offset_ms: i64,
    /// Where each event is posted as it happens (`--webhook`), and how it is signed.
    pub webhooks: webhook::Webhooks,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            limits: Vec::new(),
            faults: Vec::new(),
            seed: 0,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            slow_delay: Duration::from_secs(40),
            teams: default_teams(),
            profile: Profile::Current,
            plus_auth: None,
            active_links: None,
            tls: None,
            close_each: false,
            smtp_addr: None,
            smtp_login: None,
            smtps: false,
            clock_offset_ms: 0,
            webhooks: webhook::Webhooks { first_retry: Duration::from_millis(500), ..webhook::Webhooks::default() },
        }
    }
}

impl SandboxConfig {
    /// Checks that the fault probabilities of each kind of draw (an API request, a mail transaction) can be
    /// drawn from one number.
    pub fn validate(&self) -> Result<(), String> {
        for mail in [false, true] {
            let total: f64 = self.faults.iter().filter(|f| f.kind.is_mail() == mail).map(|f| f.probability).sum();
            if total > 1.0 + 1e-9 {
                let of = if mail { "mail" } else { "API" };
                return Err(format!("{of} fault probabilities add up to {total}, more than 1.0"));
            }
        }
        Ok(())
    }
}

/// State shared by every connection.
struct Shared {
    store: Mutex<store::Store>,
    config: SandboxConfig,
    /// The messages the mail catcher kept.
    mail: Mutex<Vec<mail::Caught>>,
    /// The server's time.
    clock: clock::Clock,
}

impl Shared {
    /// The store. A poisoned lock (a panic mid-update) still holds consistent data: every update is a
    /// single push or flag set, so the sandbox keeps serving.
    fn store(&self) -> MutexGuard<'_, store::Store> {
        self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The store's stats and the messages caught.
    fn stats(&self) -> Stats {
        let mut stats = self.store().stats();
        stats.mail = self.mailbox().len() as u64;
        stats
    }
}

/// A running sandbox.
pub struct Sandbox {
    base_url: String,
    smtp_port: u16,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    mail_task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox").field("base_url", &self.base_url).finish()
    }
}

/// Per-connection switch a handler pulls to close its connection with no answer.
#[derive(Clone)]
struct ConnectionKill(Arc<Notify>);

impl Sandbox {
    /// Binds `addr` (`127.0.0.1:0` for an ephemeral port) and serves until [`Sandbox::shutdown`].
    pub async fn start(config: SandboxConfig, addr: SocketAddr) -> std::io::Result<Sandbox> {
        config.validate().map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        let base_url = format!("{scheme}://{addr}");
        let mut store =
            store::Store::new(config.teams.clone(), config.limits.clone(), StdRng::seed_from_u64(config.seed));
        store.set_base_url(base_url.clone());
        store.profile = config.profile;
        store.active_links = config.active_links;
        let (outbox, events) = tokio::sync::mpsc::unbounded_channel();
        if !config.webhooks.urls.is_empty() {
            store.set_outbox(outbox);
        }
        let smtp = TcpListener::bind(config.smtp_addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))).await?;
        let smtp_port = smtp.local_addr()?.port();
        let clock = clock::Clock::new(config.clock_offset_ms);
        let shared = Arc::new(Shared { store: Mutex::new(store), config, mail: Mutex::new(Vec::new()), clock });
        let (stop, stopped) = watch::channel(false);
        let mail_tls = shared.config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let mail_task = tokio::spawn(mail::serve(smtp, shared.clone(), mail_tls, stopped.clone()));
        if !shared.config.webhooks.urls.is_empty() {
            tokio::spawn(webhook::send_all(events, shared.config.webhooks.clone(), stopped.clone()));
        }
        let close_each = shared.config.close_each;
        let acceptor = shared.config.tls.clone().map(|tls| {
            if !close_each {
                return tokio_rustls::TlsAcceptor::from(tls);
            }
            // HTTP/2 would carry every request on one connection: offer HTTP/1.1 alone.
            let mut one_each = (*tls).clone();
            one_each.alpn_protocols = vec![b"http/1.1".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(one_each))
        });
        let task = tokio::spawn(serve(listener, acceptor, close_each, routes::router(shared.clone()), stopped));
        Ok(Sandbox { base_url, smtp_port, shared, stop, task, mail_task })
    }

    /// The mail catcher's port on 127.0.0.1 (or on `smtp_addr`'s address).
    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }

    /// The messages the mail catcher kept, in the order it took them.
    pub fn mail(&self) -> Vec<mail::Caught> {
        self.shared.mailbox().clone()
    }

    /// `http://127.0.0.1:PORT`, the base URL of both APIs.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// What the sandbox holds and served so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The test-mode key `linkbatch sandbox --seed SEED` prints: the same for the same seed, so the ledger
    /// a trial made works with a sandbox started again with that seed. (Any `skey_test_…` key is taken.)
    pub fn test_key(seed: u64) -> String {
        format!("skey_test_sandbox{seed:016x}")
    }

    /// Stops accepting and closes every connection.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let _ = self.mail_task.await;
    }
}

/// Accepts connections until the sandbox stops, each served by `serve_one` on a task of its own (both the
/// APIs and the mail catcher); every one still open ends when the sandbox stops.
async fn accept_each<F, Fut>(listener: TcpListener, mut stopped: watch::Receiver<bool>, mut serve_one: F)
where
    F: FnMut(tokio::net::TcpStream, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors or a reset during the handshake: keep serving the others.
                Err(_) => continue,
            },
            _ = stopped.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_one(stream, stopped.clone()));
        // Reap finished connections so the set stays the size of the open ones.
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    close_each: bool,
    router: axum::Router,
    stopped: watch::Receiver<bool>,
) {
    accept_each(listener, stopped, move |stream, stopped| {
        let (router, tls) = (router.clone(), tls.clone());
        async move {
            match tls {
                // A handshake the client gives up on (a certificate it does not trust) ends here.
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        connection(stream, close_each, router, stopped).await;
                    }
                }
                None => connection(stream, close_each, router, stopped).await,
            }
        }
    })
    .await;
}

/// One connection served until it ends, a handler kills it, or the sandbox stops.
async fn connection<S>(stream: S, close_each: bool, router: axum::Router, mut stopped: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let kill = Arc::new(Notify::new());
    let handler_kill = ConnectionKill(kill.clone());
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(handler_kill.clone());
        let mut router = router.clone();
        async move { Ok::<_, Infallible>(router.call(request).await.unwrap_or_else(|never| match never {})) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(!close_each);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    // Dropping the connection future closes the socket: the client sees no answer at all.
    tokio::select! {
        _ = connection => {}
        () = kill.notified() => {}
        _ = stopped.changed() => {}
    }
}
