//! Mail: a row's message written ([`compose`]) and spoken to a mail server ([`smtp`]). Knows nothing of the
//! ledger; [`crate::delivery`] goes through the rows and records each step before it is taken.

pub mod compose;
pub mod smtp;
mod socket;

pub use compose::{Composed, LinkFields, Refusal, Rendered, amount_of, check, compose};
pub use smtp::{MailError, Mailer};
