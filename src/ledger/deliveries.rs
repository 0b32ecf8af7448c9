//! What the ledger says of each row's messages: per round, whether its end of data may have left and what
//! the server replied. Holds facts only; what a row's delivery is, and what to send next, is
//! [`crate::decide::delivery`]'s to say.

use super::{Event, Time};
use crate::digest::Digest;
use std::collections::HashMap;

/// The server's last word on a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Taken: the reply (its queue id), and when it was heard.
    Delivered {
        /// The reply.
        reply: String,
        /// When.
        at: Time,
    },
    /// Refused for good.
    Failed {
        /// The reply's code.
        code: u16,
        /// The server's words.
        reply: String,
    },
}

/// One round of a row's messages (0: the first, then reminders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    /// The round.
    pub round: u32,
    /// The Message-ID every attempt of it carries.
    pub message_id: String,
    /// The latest attempt's end of data may have left (a `deliver_commit` line).
    pub committed: bool,
    /// An earlier attempt's end of data may have left and no reply was heard for it.
    pub uncertain_before: bool,
    /// The server's last word, once heard.
    pub reply: Option<Reply>,
}

/// Every row's rounds, by key.
#[derive(Debug, Default)]
pub struct Deliveries {
    by_key: HashMap<Digest, Vec<Round>>,
    /// When each transaction began (`deliver_intent`), for the mail windows of a later run.
    sent: Vec<Time>,
}

impl Deliveries {
    /// The rounds of a key, oldest first.
    pub fn of(&self, key: &Digest) -> &[Round] {
        self.by_key.get(key).map_or(&[], Vec::as_slice)
    }

    /// When transactions began, for the windows of `[deliver] rates`.
    pub fn sent(&self) -> impl Iterator<Item = Time> + '_ {
        self.sent.iter().copied()
    }

    /// Whether any message was ever intended.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    fn round(&mut self, key: Digest, round: u32) -> Option<&mut Round> {
        self.by_key.get_mut(&key)?.iter_mut().find(|r| r.round == round)
    }

    /// Applies one of the delivery events; any other event changes nothing here.
    pub(super) fn apply(&mut self, event: Event) {
        match event {
            Event::DeliverIntent { key, round, message_id, at } => {
                self.sent.push(at);
                self.intent(key.id(), round, message_id);
            }
            Event::DeliverCommit { key, round, .. } => self.commit(key.id(), round, true),
            Event::DeliverDeferred { key, round, .. } => self.commit(key.id(), round, false),
            Event::Delivered { key, round, reply, at } => self.reply(key.id(), round, Reply::Delivered { reply, at }),
            Event::DeliverFailed { key, round, code, reply, .. } => {
                self.reply(key.id(), round, Reply::Failed { code, reply });
            }
            _ => {}
        }
    }

    fn intent(&mut self, key: Digest, round: u32, message_id: String) {
        let rounds = self.by_key.entry(key).or_default();
        if let Some(known) = rounds.iter_mut().find(|r| r.round == round) {
            // Another attempt of the same round (after a 4xx, a cut before the end of data, or the user's
            // --resend-uncertain): an earlier one that may have reached the server is remembered.
            known.uncertain_before |= known.committed && known.reply.is_none();
            known.committed = false;
            known.reply = None;
            known.message_id = message_id;
        } else {
            rounds.push(Round { round, message_id, committed: false, uncertain_before: false, reply: None });
            rounds.sort_by_key(|r| r.round);
        }
    }

    fn commit(&mut self, key: Digest, round: u32, committed: bool) {
        if let Some(r) = self.round(key, round) {
            r.committed = committed;
        }
    }

    fn reply(&mut self, key: Digest, round: u32, reply: Reply) {
        if let Some(r) = self.round(key, round) {
            // A reply settles every attempt of the round: the server took (or refused) the one it answered,
            // and an earlier uncertain one carried the same Message-ID.
            r.uncertain_before = false;
            r.reply = Some(reply);
        }
    }
}
