//! The sandbox's mail catcher: an SMTP server on loopback that keeps every message it takes (listed at
//! `GET /__sandbox/mail`) and delivers none, with faults of its own.
//!
//! It speaks what a submission server speaks (RFC 5321 with `EHLO`, `STARTTLS` when the sandbox has a
//! certificate, `AUTH PLAIN` and `AUTH LOGIN`), so that a client that works against it works against a real
//! one. Owns the rule the client relies on: a message is kept only once its end of data arrived.

use std::sync::Arc;

use base64::Engine as _;
use rand::Rng as _;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{FaultKind, Shared};

/// A message the catcher took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Caught {
    /// The envelope's sender.
    pub from: String,
    /// The envelope's recipients.
    pub to: Vec<String>,
    /// Its `Message-ID` header.
    pub message_id: String,
    /// Its headers, unfolded, in order.
    pub headers: Vec<(String, String)>,
    /// Its body, as sent (after the blank line).
    pub body: String,
    /// When it was taken (RFC 3339).
    pub at: String,
}

/// Longest message kept (a client sending more is refused with 552).
const MAX_MESSAGE: usize = 10 << 20;

/// Serves SMTP on `listener` until the sandbox stops.
pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stopped: watch::Receiver<bool>,
) {
    super::accept_each(listener, stopped, move |stream, mut stopped| {
        let (shared, tls) = (shared.clone(), tls.clone());
        async move {
            tokio::select! {
                () = connection(stream, shared, tls) => {}
                _ = stopped.changed() => {}
            }
        }
    })
    .await;
}

async fn connection(stream: TcpStream, shared: Arc<Shared>, tls: Option<tokio_rustls::TlsAcceptor>) {
    if let Some(acceptor) = tls.as_ref().filter(|_| shared.config.smtps) {
        // TLS from the first byte, as on port 465.
        let Ok(secured) = acceptor.accept(stream).await else { return };
        let mut secured = BufReader::new(secured);
        if secured.get_mut().write_all(b"220 linkbatch-sandbox ESMTP ready\r\n").await.is_err() {
            return;
        }
        Session::secured(&shared).talk(&mut secured).await;
        return;
    }
    let mut plain = BufReader::new(stream);
    if plain.get_mut().write_all(b"220 linkbatch-sandbox ESMTP ready\r\n").await.is_err() {
        return;
    }
    let Some(upgrade) = Session::new(&shared, tls.is_some()).talk(&mut plain).await else { return };
    let Ok(secured) = upgrade.accept(plain.into_inner()).await else { return };
    Session::secured(&shared).talk(&mut BufReader::new(secured)).await;
}

/// One transaction's fault, drawn once at its first recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Planned {
    Clean,
    Deferred,
    Dropped,
}

struct Session<'a> {
    shared: &'a Shared,
    can_starttls: bool,
    secure: bool,
    logged_in: bool,
    from: Option<String>,
    to: Vec<String>,
    planned: Planned,
}

impl<'a> Session<'a> {
    fn new(shared: &'a Shared, can_starttls: bool) -> Session<'a> {
        Session {
            shared,
            can_starttls,
            secure: false,
            logged_in: false,
            from: None,
            to: Vec::new(),
            planned: Planned::Clean,
        }
    }

    /// A session over TLS already (no STARTTLS offered).
    fn secured(shared: &'a Shared) -> Session<'a> {
        Session { secure: true, ..Session::new(shared, false) }
    }

    /// Answers commands until the client quits or the connection ends; `Some` when the client asked for
    /// STARTTLS and was told to go ahead.
    async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut BufReader<S>,
    ) -> Option<tokio_rustls::TlsAcceptor> {
        let mut line = String::new();
        loop {
            line.clear();
            match stream.read_line(&mut line).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let command = line.trim_end().to_owned();
            let verb = command.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
            let reply = match verb.as_str() {
                "EHLO" | "HELO" => self.hello(&verb),
                "STARTTLS" if self.can_starttls && !self.secure => {
                    stream.get_mut().write_all(b"220 2.0.0 ready to start TLS\r\n").await.ok()?;
                    return self.shared.config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
                }
                "AUTH" => self.auth(&command, stream).await?,
                "MAIL" => self.mail(&command),
                "RCPT" => self.rcpt(&command),
                "DATA" => match self.data(stream).await? {
                    Some(reply) => reply,
                    // smtp-drop-after-data: the message is kept, and the connection closes unanswered.
                    None => return None,
                },
                "RSET" => {
                    self.reset();
                    "250 2.0.0 OK".into()
                }
                "NOOP" => "250 2.0.0 OK".into(),
                "QUIT" => {
                    let _ = stream.get_mut().write_all(b"221 2.0.0 bye\r\n").await;
                    return None;
                }
                _ => "502 5.5.2 command not recognized".into(),
            };
            stream.get_mut().write_all(format!("{reply}\r\n").as_bytes()).await.ok()?;
        }
    }

    fn hello(&mut self, verb: &str) -> String {
        self.reset();
        if verb == "HELO" {
            return "250 linkbatch-sandbox".into();
        }
        let mut lines = vec!["linkbatch-sandbox", "8BITMIME", "SMTPUTF8", "AUTH PLAIN LOGIN"];
        if self.can_starttls && !self.secure {
            lines.push("STARTTLS");
        }
        let last = lines.len() - 1;
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    fn reset(&mut self) {
        self.from = None;
        self.to.clear();
        self.planned = Planned::Clean;
    }

    /// `AUTH PLAIN [initial]` or `AUTH LOGIN`: any login when the sandbox names none, else only its own.
    async fn auth<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        command: &str,
        stream: &mut BufReader<S>,
    ) -> Option<String> {
        let words: Vec<&str> = command.split_whitespace().collect();
        let decode = |text: &str| {
            base64::engine::general_purpose::STANDARD.decode(text.trim()).ok().and_then(|b| String::from_utf8(b).ok())
        };
        let (user, password) = match words.get(1).map(|m| m.to_ascii_uppercase()).as_deref() {
            Some("PLAIN") => {
                let initial = match words.get(2) {
                    Some(initial) => (*initial).to_owned(),
                    None => self.challenge("", stream).await?,
                };
                let text = decode(&initial).unwrap_or_default();
                let mut parts = text.split('\0').skip(1);
                (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned())
            }
            Some("LOGIN") => {
                let user = decode(&self.challenge("VXNlcm5hbWU6", stream).await?).unwrap_or_default();
                let password = decode(&self.challenge("UGFzc3dvcmQ6", stream).await?).unwrap_or_default();
                (user, password)
            }
            _ => return Some("504 5.5.4 unrecognized authentication type".into()),
        };
        let accepted = match &self.shared.config.smtp_login {
            Some((u, p)) => *u == user && *p == password,
            None => true,
        };
        self.logged_in = accepted;
        Some(
            if accepted {
                "235 2.7.0 authentication succeeded"
            } else {
                "535 5.7.8 authentication credentials invalid"
            }
            .into(),
        )
    }

    async fn challenge<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        prompt: &str,
        stream: &mut BufReader<S>,
    ) -> Option<String> {
        stream.get_mut().write_all(format!("334 {prompt}\r\n").as_bytes()).await.ok()?;
        let mut answer = String::new();
        stream.read_line(&mut answer).await.ok().filter(|&n| n > 0)?;
        Some(answer.trim_end().to_owned())
    }

    fn mail(&mut self, command: &str) -> String {
        if self.shared.config.smtp_login.is_some() && !self.logged_in {
            return "530 5.7.0 authentication required".into();
        }
        self.reset();
        self.from = Some(address_in(command));
        "250 2.1.0 OK".into()
    }

    fn rcpt(&mut self, command: &str) -> String {
        if self.from.is_none() {
            return "503 5.5.1 MAIL first".into();
        }
        if self.to.is_empty() {
            let fault = self.shared.draw_mail_fault();
            match fault {
                Some(FaultKind::SmtpRejectRcpt) => return "550 5.1.1 mailbox unavailable (injected fault)".into(),
                Some(FaultKind::Smtp4xx) => self.planned = Planned::Deferred,
                Some(FaultKind::SmtpDropAfterData) => self.planned = Planned::Dropped,
                _ => {}
            }
        }
        self.to.push(address_in(command));
        "250 2.1.5 OK".into()
    }

    /// The message up to its end of data; `None` inside when the connection is to close unanswered.
    async fn data<S: AsyncRead + AsyncWrite + Unpin>(&mut self, stream: &mut BufReader<S>) -> Option<Option<String>> {
        if self.to.is_empty() {
            return Some(Some("503 5.5.1 RCPT first".into()));
        }
        stream.get_mut().write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n").await.ok()?;
        let mut message = Vec::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            if stream.read_until(b'\n', &mut line).await.ok()? == 0 {
                // Cut before its end: nothing is kept, as RFC 5321 asks.
                return None;
            }
            if line == b".\r\n" || line == b".\n" {
                break;
            }
            let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
            if message.len() + unstuffed.len() <= MAX_MESSAGE {
                message.extend_from_slice(unstuffed);
            }
        }
        let planned = self.planned;
        let (from, to) = (self.from.take().unwrap_or_default(), std::mem::take(&mut self.to));
        self.reset();
        if message.len() >= MAX_MESSAGE {
            return Some(Some("552 5.3.4 message too big".into()));
        }
        match planned {
            Planned::Deferred => {
                self.shared.store().count_fault(FaultKind::Smtp4xx.name());
                // As real servers do, the reply names the recipient: a log must not repeat it.
                let rcpt = to.first().map(String::as_str).unwrap_or_default();
                return Some(Some(format!("451 4.2.0 <{rcpt}>: try again later (injected fault)")));
            }
            Planned::Dropped => self.shared.store().count_fault(FaultKind::SmtpDropAfterData.name()),
            Planned::Clean => {}
        }
        let id = self.shared.keep(from, to, &message);
        match planned {
            Planned::Dropped => Some(None),
            _ => Some(Some(format!("250 2.0.0 OK: queued as {id}"))),
        }
    }
}

/// The address inside `<…>` of `MAIL FROM:<a@b>` or `RCPT TO:<a@b>`.
fn address_in(command: &str) -> String {
    let start = command.find('<').map_or(command.len(), |i| i + 1);
    let end = command[start..].find('>').map_or(command.len(), |i| start + i);
    command[start..end].to_owned()
}

/// Headers (unfolded) and body of a message as sent.
fn parse(message: &[u8]) -> (Vec<(String, String)>, String) {
    let text = String::from_utf8_lossy(message);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    (headers, body.to_owned())
}

impl Shared {
    /// One draw among the mail faults, for a transaction.
    fn draw_mail_fault(&self) -> Option<FaultKind> {
        let mut store = self.store();
        let draw: f64 = store.rng.random();
        let mut threshold = 0.0;
        for spec in self.config.faults.iter().filter(|f| f.kind.is_mail()) {
            threshold += spec.probability;
            if draw < threshold {
                if spec.kind == FaultKind::SmtpRejectRcpt {
                    store.count_fault(spec.kind.name());
                }
                return Some(spec.kind);
            }
        }
        None
    }

    /// Keeps a message; returns its queue id.
    fn keep(&self, from: String, to: Vec<String>, message: &[u8]) -> String {
        let (headers, body) = parse(message);
        let message_id = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("message-id"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let mut mailbox = self.mailbox();
        let id = format!("Q{:06}", mailbox.len() + 1);
        mailbox.push(Caught { from, to, message_id, headers, body, at });
        id
    }

    /// The messages kept so far.
    pub(super) fn mailbox(&self) -> std::sync::MutexGuard<'_, Vec<Caught>> {
        self.mail.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_unfolded_and_the_body_kept() {
        let (headers, body) = parse(b"Subject: a\r\n long one\r\nTo: x@y\r\n\r\nHello\r\n.. dotted\r\n");
        assert_eq!(headers, [("Subject".to_owned(), "a long one".to_owned()), ("To".to_owned(), "x@y".to_owned())]);
        assert_eq!(body, "Hello\r\n.. dotted\r\n");
        assert_eq!(address_in("RCPT TO:<bob@example.com> NOTIFY=NEVER"), "bob@example.com");
    }
}
