//! One row's message, written: its templates rendered with the row's values and its link's fields, its
//! addresses read, and nothing that could become a header of its own.
//!
//! Owns the rule that a value can never add a header: a carriage return or a line feed in a value used in
//! a header (the recipient, their name, the subject) is the row's error, never a new line in the message.
//! Never logs: a message's addresses and words are the customer's.

use lettre::Address;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message, MultiPart, SinglePart};

use crate::digest::Digest;
use crate::plan::{Content, DeliverPlan, Plan, PlannedRow};

/// What a message's templates see of the row's link.
#[derive(Debug, Clone, Copy)]
pub struct LinkFields<'a> {
    /// `{payment_uri}`.
    pub payment_uri: &'a str,
    /// `{link_id}`.
    pub link_id: &'a str,
    /// `{amount_display}`: `990.00 THB`.
    pub amount_display: &'a str,
}

/// A message ready for the SMTP transaction.
#[derive(Debug, Clone)]
pub struct Composed {
    /// The envelope's recipient.
    pub to: Address,
    /// Its Message-ID, the same for every attempt of the round.
    pub message_id: String,
    /// The message as sent (headers and body).
    pub bytes: Vec<u8>,
}

/// Why a row's message cannot be written: the field, and what is wrong, without the value (it is the
/// customer's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[deliver] {field}: {reason}")]
pub struct Refusal {
    /// `to`, `subject`, `text`…
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn refusal(field: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal { field, reason: reason.into() }
}

/// `<lb.DIGEST.ROUND@DOMAIN>`: one id per row and round, wherever the message lands; the domain is the
/// sender's.
pub fn message_id(key: &str, round: u32, from: &Mailbox) -> String {
    format!("<lb.{}.{round}@{}>", Digest::of(key.as_bytes()), from.email.domain())
}

/// The row's amount as a customer reads it, for `{amount_display}` (`money::display`).
pub fn amount_of(row: &PlannedRow) -> String {
    crate::money::display(row.request.amount(), row.request.currency().unwrap_or(""))
}

struct Renderer<'a> {
    plan: &'a Plan,
    row: &'a PlannedRow,
    link: LinkFields<'a>,
}

impl Renderer<'_> {
    fn render(&self, field: &'static str, t: &crate::template::Template) -> Result<String, Refusal> {
        t.render(|name| match name {
            "payment_uri" => Some(self.link.payment_uri),
            "link_id" => Some(self.link.link_id),
            "amount_display" => Some(self.link.amount_display),
            _ => self.plan.mail_value(self.row, name),
        })
        .map_err(|name| refusal(field, format!("no value for `{name}` (empty or missing)")))
    }

    /// A value for a header: one line, whatever the row holds.
    fn header(&self, field: &'static str, t: &crate::template::Template) -> Result<String, Refusal> {
        let text = self.render(field, t)?;
        if text.contains(['\r', '\n']) {
            return Err(refusal(field, "holds a line break, which would start a header of its own"));
        }
        Ok(text)
    }
}

/// A row's message rendered and checked, not yet written out.
#[derive(Debug)]
pub struct Rendered<'p> {
    deliver: &'p DeliverPlan,
    to: Address,
    name: Option<String>,
    subject: String,
    text: Option<String>,
    html: Option<String>,
}

/// `row`'s message of `round` (0: the first; 1, 2…: reminders) rendered and checked (the address, no line
/// break in a header, every placeholder filled), or which field is wrong. Nothing is written out: what
/// `validate` and the output need to tell a rejected row.
pub fn check<'p>(plan: &'p Plan, row: &PlannedRow, link: LinkFields<'_>, round: u32) -> Result<Rendered<'p>, Refusal> {
    let deliver = plan.deliver().ok_or_else(|| refusal("to", "the job has no [deliver] section"))?;
    let content = content_of(deliver, round);
    let r = Renderer { plan, row, link };
    let address = r.header("to", &deliver.to)?;
    let to: Address = address.trim().parse().map_err(|_| refusal("to", "is not an email address"))?;
    let name = deliver.to_name.as_ref().map(|t| r.header("to_name", t)).transpose()?;
    let subject = r.header("subject", &content.subject)?;
    let text = content.text.as_ref().map(|t| r.render("text", t)).transpose()?;
    let html = content.html.as_ref().map(|t| r.render("html", t)).transpose()?;
    Ok(Rendered { deliver, to, name, subject, text, html })
}

/// Writes `row`'s message of `round` (0: the first; 1, 2…: reminders), or says which field is wrong.
pub fn compose(plan: &Plan, row: &PlannedRow, link: LinkFields<'_>, round: u32) -> Result<Composed, Refusal> {
    let Rendered { deliver, to, name, subject, text, html } = check(plan, row, link, round)?;
    // A body ends at its last line: a template's closing newline (TOML's `"""` puts one there) would be a blank
    // line more, since the message's end of data already ends its last line.
    let (text, html) = (text.map(|t| t.trim_end().to_owned()), html.map(|h| h.trim_end().to_owned()));
    let message_id = message_id(&row.key, round, &deliver.from);
    let mut builder = Message::builder()
        .from(deliver.from.clone())
        .to(Mailbox::new(name.filter(|n| !n.trim().is_empty()), to.clone()))
        .subject(subject)
        .message_id(Some(message_id.clone()))
        .date_now();
    if let Some(reply_to) = &deliver.reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    let message = match (text, html) {
        (Some(text), Some(html)) => builder.multipart(MultiPart::alternative_plain_html(text, html)),
        (Some(text), None) => builder.singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text)),
        (None, Some(html)) => builder.singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html)),
        (None, None) => return Err(refusal("text", "the job's message has no body")),
    }
    .map_err(|e| refusal("to", format!("cannot be written: {e}")))?;
    let mut bytes = message.formatted();
    // The SMTP client ends the data with CRLF `.` CRLF itself: a CRLF of the message's own before it would
    // be a blank line the customer sees.
    if bytes.ends_with(b"\r\n") {
        bytes.truncate(bytes.len() - 2);
    }
    Ok(Composed { to, message_id, bytes })
}

/// The first message's words for round 0, the reminder's after.
fn content_of(deliver: &DeliverPlan, round: u32) -> &Content {
    match (&deliver.reminder, round) {
        (Some(reminder), 1..) => &reminder.content,
        _ => &deliver.content,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_is_the_key_and_round_at_the_senders_domain() {
        let from: Mailbox = "Billing <billing@shop.example>".parse().unwrap();
        let first = message_id("sub-1:2026-12", 0, &from);
        assert_eq!(first, format!("<lb.{}.0@shop.example>", Digest::of(b"sub-1:2026-12")));
        assert_eq!(first, message_id("sub-1:2026-12", 0, &from));
        assert_ne!(first, message_id("sub-1:2026-12", 1, &from));
    }
}
