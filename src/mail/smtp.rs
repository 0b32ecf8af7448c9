//! The SMTP client: lettre's connection, driven one step at a time so that the ledger can hear the moment a
//! message's end of data may leave (RFC 5321: a server delivers nothing whose end of data it did not get).
//!
//! Owns telling the server's replies apart: a 5xx is the row's refusal, a 4xx the row's retry, a cut or a
//! silence after the end of data an uncertain delivery, and a connection, certificate or login the server
//! refuses the run's problem. Never logs an address, a body or a credential.

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;

use crate::plan::{Security, SmtpServer};

/// Why a step of a message did not end in the server taking it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// A 5xx reply: the server refuses this message for good.
    #[error("{code} {reply}")]
    Refused {
        /// The reply's code.
        code: u16,
        /// Its words.
        reply: String,
    },
    /// A 4xx reply: try again later.
    #[error("{code} {reply}")]
    Deferred {
        /// The reply's code.
        code: u16,
        /// Its words.
        reply: String,
    },
    /// The connection failed before the end of data left: nothing was delivered, the message may be sent again.
    #[error("the connection failed before the message was complete ({0})")]
    Cut(String),
    /// The end of data may have left and no reply came: the server may hold the message.
    #[error("no reply after the message's end ({0})")]
    Uncertain(String),
    /// The mail server cannot be used at all (unreachable, a certificate refused, no STARTTLS, the login
    /// refused): the run's problem, not a row's.
    #[error("{0}")]
    Systemic(String),
}

/// The words of a lettre error, and its reply's code when the server gave one.
fn classify(error: &lettre::transport::smtp::Error) -> (Option<u16>, String) {
    let code = error.status().and_then(|c| c.to_string().parse().ok());
    let mut words = error.to_string();
    if let Some(code) = code {
        // "permanent error (550): 5.1.1 no such user" → "5.1.1 no such user"
        words = words.split_once("): ").map_or(words.clone(), |(_, rest)| rest.to_owned());
        return (Some(code), words.trim().to_owned());
    }
    // Each cause once: lettre's words already hold their source's, and an I/O error wraps its own.
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !words.contains(&text) {
            words = format!("{words}: {text}");
        }
        source = cause.source();
    }
    (None, words)
}

/// A reply as a [`MailError`] when it is one (`before_end`: the end of data has not left).
fn reply_error(error: &lettre::transport::smtp::Error, before_end: bool) -> MailError {
    match classify(error) {
        (Some(code), reply) if (500..600).contains(&code) => MailError::Refused { code, reply },
        (Some(code), reply) if (400..500).contains(&code) => MailError::Deferred { code, reply },
        (_, words) if before_end => MailError::Cut(words),
        (_, words) => MailError::Uncertain(words),
    }
}

/// A connection to the job's mail server, logged in.
pub struct Mailer {
    server: SmtpServer,
    credentials: Option<Credentials>,
    timeout: Duration,
    connection: Option<AsyncSmtpConnection>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("server", &self.server.address()).finish()
    }
}

impl Mailer {
    /// A mailer for `server`, logging in with `credentials` (user, password) when given. Connects on first use.
    pub fn new(server: SmtpServer, credentials: Option<(String, String)>, timeout: Duration) -> Mailer {
        let credentials = credentials.map(|(user, password)| Credentials::new(user, password));
        Mailer { server, credentials, timeout, connection: None }
    }

    /// The server, `host:port`.
    pub fn address(&self) -> String {
        self.server.address()
    }

    async fn within<T>(&self, step: impl Future<Output = T>) -> Option<T> {
        tokio::time::timeout(self.timeout, step).await.ok()
    }

    /// Connects, secures and logs in, unless connected already: every refusal here is the run's.
    pub async fn connect(&mut self) -> Result<(), MailError> {
        if self.connection.as_ref().is_some_and(|c| !c.has_broken()) {
            return Ok(());
        }
        self.connection = None;
        let address = self.address();
        let systemic = |what: &str, e: &lettre::transport::smtp::Error| {
            let words = crate::api::refused_certificate(e).map_or_else(|| classify(e).1, super::socket::trust_hint);
            MailError::Systemic(format!("mail server {address}: {what}: {words}"))
        };
        let hello = ClientId::Domain("localhost".into());
        let tls = || TlsParameters::builder(self.server.host.clone()).build_rustls();
        let refused = |why: String| MailError::Systemic(format!("mail server {address}: {why}"));
        let (host, port) = (self.server.host.as_str(), self.server.port);
        let stream = super::socket::connect(host, port, self.timeout).await.map_err(refused)?;
        let stream: Box<dyn AsyncTokioStream> = match self.server.security {
            Security::Tls => Box::new(super::socket::secure(stream, host, self.timeout).await.map_err(refused)?),
            Security::StartTls | Security::Loopback => Box::new(stream),
        };
        let greeted = self.within(AsyncSmtpConnection::connect_with_transport(stream, &hello)).await;
        let greeted = greeted.ok_or_else(|| refused(format!("no greeting within {:?}", self.timeout)))?;
        let mut connection = greeted.map_err(|e| systemic("no greeting", &e))?;
        let offered = connection.can_starttls();
        match self.server.security {
            Security::StartTls if !offered => {
                return Err(MailError::Systemic(format!(
                    "mail server {address} does not offer STARTTLS, and smtp:// to a host other than this one \
                     requires it: nothing was sent (use smtps:// if the server takes TLS on connect)"
                )));
            }
            Security::StartTls | Security::Loopback if offered => {
                let parameters = tls().map_err(|e| systemic("TLS", &e))?;
                let secured = self.within(connection.starttls(parameters, &hello)).await;
                secured
                    .ok_or_else(|| refused(format!("no answer to STARTTLS within {:?}", self.timeout)))?
                    .map_err(|e| systemic("STARTTLS", &e))?;
            }
            _ => {}
        }
        if let Some(credentials) = &self.credentials {
            // A server may hold a refused login's reply for a while (against guessing) or never send it:
            // every reply has the job's timeout, and no answer is the run's problem as a refusal is.
            let login = self.within(connection.auth(&[Mechanism::Plain, Mechanism::Login], credentials)).await;
            login
                .ok_or_else(|| refused(format!("no answer to the login within {:?}", self.timeout)))?
                .map_err(|e| systemic("the login was refused", &e))?;
        }
        self.connection = Some(connection);
        Ok(())
    }

    /// The transaction up to the message: `MAIL`, `RCPT`, `DATA`. Safe to repeat whatever happens.
    pub async fn begin(&mut self, envelope: &Envelope) -> Result<(), MailError> {
        self.connect().await?;
        let Some(connection) = self.connection.as_mut() else { return Err(MailError::Cut("not connected".into())) };
        let steps = async {
            connection.command(Mail::new(envelope.from().cloned(), vec![])).await?;
            for to in envelope.to() {
                connection.command(Rcpt::new(to.clone(), vec![])).await?;
            }
            connection.command(Data).await
        };
        let result = tokio::time::timeout(self.timeout, steps).await;
        self.outcome(result, true).await.map(drop)
    }

    /// The message and its end of data, then the server's reply (its queue id, mostly). The caller has
    /// recorded that the end may leave.
    pub async fn finish(&mut self, message: &[u8]) -> Result<String, MailError> {
        let Some(connection) = self.connection.as_mut() else { return Err(MailError::Cut("not connected".into())) };
        let result = tokio::time::timeout(self.timeout, connection.message(message)).await;
        let response = self.outcome(result, false).await?;
        Ok(format!("{} {}", response.code(), response.message().collect::<Vec<_>>().join(" ")))
    }

    /// A step's reply as the transaction goes on: a refusal (the transaction reset), or no reply within the
    /// timeout (the connection dropped): `Cut` while the end of data has not left (`before_end`), else
    /// `Uncertain`.
    async fn outcome(
        &mut self,
        result: Result<Result<Response, lettre::transport::smtp::Error>, tokio::time::error::Elapsed>,
        before_end: bool,
    ) -> Result<Response, MailError> {
        match result {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                let error = reply_error(&e, before_end);
                self.after_refusal(&error).await;
                Err(error)
            }
            Err(_) => {
                self.connection = None;
                let why = format!("no reply within {:?}", self.timeout);
                Err(if before_end { MailError::Cut(why) } else { MailError::Uncertain(why) })
            }
        }
    }

    /// After a refused step the transaction is reset (`RSET`) for the next message; after a cut the
    /// connection is dropped, and the next message connects again.
    async fn after_refusal(&mut self, error: &MailError) {
        let keep = matches!(error, MailError::Refused { .. } | MailError::Deferred { .. });
        let reset = match self.connection.as_mut() {
            Some(connection) if keep => {
                tokio::time::timeout(self.timeout, connection.command(lettre::transport::smtp::commands::Rset))
                    .await
                    .is_ok_and(|r| r.is_ok())
            }
            _ => false,
        };
        if !reset {
            self.connection = None;
        }
    }

    /// Says goodbye (`QUIT`), if connected.
    pub async fn quit(&mut self) {
        if let Some(mut connection) = self.connection.take() {
            let _ = self.within(connection.quit()).await;
        }
    }
}
