//! `[deliver]` checked: its templates parsed, its addresses and mail server read, its reminder's timing.
//! What a message says for one row is rendered by [`crate::mail`]; this module only says what the job asks.
//!
//! Owns the rule of which mail servers a job may name: `smtps://` anywhere, `smtp://` with STARTTLS required,
//! plain SMTP on a loopback address only (the sandbox's catcher).

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;

use super::{PlanError, template};
use crate::job::{DeliverSpec, ReminderSpec};
use crate::rate::Rate;
use crate::template::Template;

/// Placeholders a message's templates see beside the row's columns and `--var` values: the link's own.
pub const LINK_FIELDS: [&str; 3] = ["payment_uri", "link_id", "amount_display"];

/// How the connection to the mail server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtps://`: TLS from the first byte (port 465).
    Tls,
    /// `smtp://` to another host: STARTTLS, and nothing is sent if the server does not offer it.
    StartTls,
    /// `smtp://` to a loopback address: STARTTLS when offered, plain otherwise.
    Loopback,
}

/// The mail server a job names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpServer {
    /// Host name or address.
    pub host: String,
    /// Port (465 for `smtps://`, 587 for `smtp://` when not given).
    pub port: u16,
    /// How the connection is secured.
    pub security: Security,
}

impl SmtpServer {
    /// Reads `smtps://host:465` or `smtp://host:587`.
    pub fn parse(text: &str) -> Result<SmtpServer, String> {
        let url = url::Url::parse(text).map_err(|e| format!("smtp = \"{text}\" is not a URL: {e}"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("smtp must not carry a user or password: set user_env and password_env".into());
        }
        // `smtp` is not a scheme the URL standard knows, so an address comes back as a domain: read it here.
        let host_text = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        let loopback = match host_text.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => super::is_loopback(url.host()),
        };
        let security = match url.scheme() {
            "smtps" => Security::Tls,
            "smtp" if loopback => Security::Loopback,
            "smtp" => Security::StartTls,
            other => return Err(format!("smtp = \"{text}\": the scheme is `{other}`, not smtps:// or smtp://")),
        };
        let host =
            url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("smtp = \"{text}\" names no host"))?;
        let port = url.port().unwrap_or(if security == Security::Tls { 465 } else { 587 });
        Ok(SmtpServer { host: host.trim_start_matches('[').trim_end_matches(']').to_owned(), port, security })
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A message's subject and bodies.
#[derive(Debug, Clone)]
pub struct Content {
    /// Subject.
    pub subject: Template,
    /// Plain-text body.
    pub text: Option<Template>,
    /// HTML body.
    pub html: Option<Template>,
}

/// `[deliver.reminder]`, checked.
#[derive(Debug, Clone)]
pub struct Reminder {
    /// How long after a row's last message its next reminder goes.
    pub after: Duration,
    /// What it says.
    pub content: Content,
    /// Reminders per row at most.
    pub at_most: u32,
}

/// `[deliver]`, checked.
#[derive(Debug, Clone)]
pub struct DeliverPlan {
    /// The recipient's address.
    pub to: Template,
    /// The recipient's name.
    pub to_name: Option<Template>,
    /// The sender.
    pub from: Mailbox,
    /// Where replies go.
    pub reply_to: Option<Mailbox>,
    /// The first message.
    pub content: Content,
    /// The mail server.
    pub smtp: SmtpServer,
    /// Variable of the SMTP user.
    pub user_env: Option<String>,
    /// Variable of the SMTP password.
    pub password_env: Option<String>,
    /// Windows for messages.
    pub rates: Vec<Rate>,
    /// Reminders, when the job has them.
    pub reminder: Option<Reminder>,
}

fn refused(text: impl Into<String>) -> PlanError {
    PlanError::Deliver(text.into())
}

/// A body from its template or its file (never both), parsed.
fn body(
    section: &str,
    name: &str,
    inline: Option<&String>,
    file: Option<&Path>,
) -> Result<Option<Template>, PlanError> {
    let source = match (inline, file) {
        (Some(_), Some(_)) => return Err(refused(format!("{section} sets both {name} and {name}_file: keep one"))),
        (Some(text), None) => text.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| refused(format!("{section} {name}_file {}: {e}", path.display())))?,
        (None, None) => return Ok(None),
    };
    template(&format!("{section} {name}"), &source).map(Some)
}

fn content(
    section: &str,
    subject: &str,
    text: [Option<&String>; 2],
    files: [Option<PathBuf>; 2],
) -> Result<Content, PlanError> {
    let content = Content {
        subject: template(&format!("{section} subject"), subject)?,
        text: body(section, "text", text[0], files[0].as_deref())?,
        html: body(section, "html", text[1], files[1].as_deref())?,
    };
    if content.text.is_none() && content.html.is_none() {
        return Err(refused(format!("{section} needs a body: text, text_file, html or html_file")));
    }
    Ok(content)
}

fn mailbox(field: &str, text: &str) -> Result<Mailbox, PlanError> {
    text.parse::<Mailbox>().map_err(|e| refused(format!("[deliver] {field} = \"{text}\" is not an address: {e}")))
}

fn reminder(spec: &ReminderSpec, beside: &impl Fn(&Path) -> PathBuf) -> Result<Reminder, PlanError> {
    let after =
        crate::rate::parse_duration(&spec.after).map_err(|e| refused(format!("[deliver.reminder] after: {e}")))?;
    if after.is_zero() {
        return Err(refused("[deliver.reminder] after must be longer than zero"));
    }
    if spec.at_most == 0 {
        return Err(refused("[deliver.reminder] at_most must be 1 or more (leave the section out for no reminders)"));
    }
    let content = content(
        "[deliver.reminder]",
        &spec.subject,
        [spec.text.as_ref(), spec.html.as_ref()],
        [spec.text_file.as_deref().map(beside), spec.html_file.as_deref().map(beside)],
    )?;
    Ok(Reminder { after, content, at_most: spec.at_most })
}

impl DeliverPlan {
    /// Checks `[deliver]`: templates, addresses, server, rates, reminder.
    /// `beside` says where a body file the job names is (`JobSpec::beside`).
    pub fn new(spec: &DeliverSpec, beside: impl Fn(&Path) -> PathBuf) -> Result<DeliverPlan, PlanError> {
        let rates = spec
            .rates
            .iter()
            .map(|r| r.parse::<Rate>().map_err(|e| refused(format!("[deliver] rates: {e}"))))
            .collect::<Result<_, _>>()?;
        Ok(DeliverPlan {
            to: template("[deliver] to", &spec.to)?,
            to_name: spec.to_name.as_deref().map(|t| template("[deliver] to_name", t)).transpose()?,
            from: mailbox("from", &spec.from)?,
            reply_to: spec.reply_to.as_deref().map(|r| mailbox("reply_to", r)).transpose()?,
            content: content(
                "[deliver]",
                &spec.subject,
                [spec.text.as_ref(), spec.html.as_ref()],
                [spec.text_file.as_deref().map(&beside), spec.html_file.as_deref().map(&beside)],
            )?,
            smtp: SmtpServer::parse(&spec.smtp).map_err(|e| refused(format!("[deliver] {e}")))?,
            user_env: spec.user_env.clone(),
            password_env: spec.password_env.clone(),
            rates,
            reminder: spec.reminder.as_ref().map(|r| reminder(r, &beside)).transpose()?,
        })
    }

    /// Every template, with the field it fills, for the placeholder check.
    pub fn templates(&self) -> Vec<(&'static str, &Template)> {
        let mut all = vec![("[deliver] to", &self.to), ("[deliver] subject", &self.content.subject)];
        all.extend(self.to_name.iter().map(|t| ("[deliver] to_name", t)));
        all.extend(self.content.text.iter().map(|t| ("[deliver] text", t)));
        all.extend(self.content.html.iter().map(|t| ("[deliver] html", t)));
        if let Some(r) = &self.reminder {
            all.push(("[deliver.reminder] subject", &r.content.subject));
            all.extend(r.content.text.iter().map(|t| ("[deliver.reminder] text", t)));
            all.extend(r.content.html.iter().map(|t| ("[deliver.reminder] html", t)));
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_servers_are_tls_starttls_or_loopback() {
        let tls = SmtpServer::parse("smtps://mail.example.com").unwrap();
        assert_eq!((tls.port, tls.security), (465, Security::Tls));
        let start = SmtpServer::parse("smtp://mail.example.com").unwrap();
        assert_eq!((start.port, start.security), (587, Security::StartTls));
        let local = SmtpServer::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!((local.host.as_str(), local.port, local.security), ("127.0.0.1", 2525, Security::Loopback));
        assert_eq!(
            SmtpServer::parse("http://mail.example.com").unwrap_err(),
            "smtp = \"http://mail.example.com\": the scheme is `http`, not smtps:// or smtp://"
        );
        assert_eq!(
            SmtpServer::parse("smtps://me:pw@mail.example.com").unwrap_err(),
            "smtp must not carry a user or password: set user_env and password_env"
        );
    }
}
