//! A row's delivery and its next message, from what the ledger holds of its rounds: the rules of
//! docs/reference.md, "Delivery", as pure functions with a table of tests.
//!
//! The rule that matters most: a round whose end of data may have reached the server, with no reply heard,
//! is `uncertain` and is never sent again unless the user asks (`--resend-uncertain`). A round intended but
//! never committed is safe to send again: a server delivers nothing whose end of data it did not receive.

use std::time::{Duration, SystemTime};

use crate::ledger::{Reply, Round};
use crate::terms::Delivery;

/// A round's state.
pub fn round_state(round: &Round) -> Delivery {
    match &round.reply {
        Some(Reply::Delivered { .. }) => Delivery::Delivered,
        Some(Reply::Failed { .. }) => Delivery::Failed,
        None if round.committed || round.uncertain_before => Delivery::Uncertain,
        None => Delivery::Pending,
    }
}

/// A row's delivery: its latest round's state (`pending` when none was intended).
pub fn delivery(rounds: &[Round]) -> Delivery {
    rounds.last().map_or(Delivery::Pending, round_state)
}

/// When the row's latest message was taken, and the server's reply to it.
pub fn last_delivered(rounds: &[Round]) -> Option<(SystemTime, &str)> {
    rounds.iter().rev().find_map(|r| match &r.reply {
        Some(Reply::Delivered { reply, at }) => Some((at.system(), reply.as_str())),
        _ => None,
    })
}

/// The server's words on the latest round, delivered or refused.
pub fn last_reply(rounds: &[Round]) -> Option<String> {
    match &rounds.last()?.reply {
        Some(Reply::Delivered { reply, .. }) => Some(reply.clone()),
        Some(Reply::Failed { code, reply }) => Some(format!("{code} {reply}")),
        None => None,
    }
}

/// What `deliver` is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Asked {
    /// `--remind`, with `[deliver.reminder]`'s `after` and `at_most`.
    pub remind: Option<(Duration, u32)>,
    /// `--resend-uncertain`.
    pub resend_uncertain: bool,
}

/// The message a row gets next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send this round (0: the first message).
    Send(u32),
    /// Nothing now.
    Nothing,
}

/// The next message of a row that has a link: `unpaid` is what a fresh refresh read (`None`: not read).
pub fn next(rounds: &[Round], asked: Asked, unpaid: Option<bool>, now: SystemTime) -> Next {
    let Some(last) = rounds.last() else { return Next::Send(0) };
    match round_state(last) {
        Delivery::Pending => Next::Send(last.round),
        Delivery::Uncertain if asked.resend_uncertain => Next::Send(last.round),
        Delivery::Delivered => {
            let Some((after, at_most)) = asked.remind else { return Next::Nothing };
            let due = last_delivered(rounds).is_some_and(|(at, _)| now.duration_since(at).is_ok_and(|d| d >= after));
            if unpaid == Some(true) && last.round < at_most && due { Next::Send(last.round + 1) } else { Next::Nothing }
        }
        Delivery::Uncertain | Delivery::Failed | Delivery::Rejected => Next::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Time;

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn round(n: u32, committed: bool, before: bool, reply: Option<Reply>) -> Round {
        Round { round: n, message_id: format!("<{n}@t>"), committed, uncertain_before: before, reply }
    }

    fn taken(n: u32, secs: u64) -> Round {
        let reply =
            Reply::Delivered { reply: "250 queued as Q1".into(), at: Time::from(T0 + Duration::from_secs(secs)) };
        round(n, true, false, Some(reply))
    }

    #[test]
    fn a_round_is_uncertain_exactly_when_its_end_may_have_left_unanswered() {
        let refused = Some(Reply::Failed { code: 550, reply: "no such user".into() });
        let table = [
            (round(0, false, false, None), Delivery::Pending),
            (round(0, true, false, None), Delivery::Uncertain),
            (round(0, false, true, None), Delivery::Uncertain),
            (round(0, true, false, refused), Delivery::Failed),
            (taken(0, 0), Delivery::Delivered),
        ];
        for (r, expected) in table {
            assert_eq!(round_state(&r), expected, "{r:?}");
        }
    }

    /// Rounds, what was asked, unpaid, seconds since T0, and the next message.
    type Case = (Vec<Round>, Asked, Option<bool>, u64, Next);

    #[test]
    fn the_next_message_follows_the_table() {
        let remind = Asked { remind: Some((Duration::from_secs(3), 2)), resend_uncertain: false };
        let resend = Asked { remind: None, resend_uncertain: true };
        let plain = Asked::default();
        let at = |s| T0 + Duration::from_secs(s);
        let table: Vec<Case> = vec![
            (vec![], plain, None, 0, Next::Send(0)),
            (vec![round(0, false, false, None)], plain, None, 0, Next::Send(0)),
            (vec![round(0, true, false, None)], plain, None, 0, Next::Nothing),
            (vec![round(0, true, false, None)], resend, None, 0, Next::Send(0)),
            (vec![round(0, false, true, None)], plain, None, 0, Next::Nothing),
            (vec![taken(0, 0)], plain, Some(true), 100, Next::Nothing),
            (vec![taken(0, 0)], remind, Some(true), 2, Next::Nothing),
            (vec![taken(0, 0)], remind, Some(true), 3, Next::Send(1)),
            (vec![taken(0, 0)], remind, Some(false), 3, Next::Nothing),
            (vec![taken(0, 0)], remind, None, 3, Next::Nothing),
            (vec![taken(0, 0), taken(1, 3)], remind, Some(true), 5, Next::Nothing),
            (vec![taken(0, 0), taken(1, 3)], remind, Some(true), 6, Next::Send(2)),
            (vec![taken(0, 0), taken(1, 3), taken(2, 6)], remind, Some(true), 60, Next::Nothing),
            (vec![taken(0, 0), round(1, true, false, None)], remind, Some(true), 60, Next::Nothing),
            (vec![taken(0, 0), round(1, false, false, None)], remind, Some(true), 60, Next::Send(1)),
        ];
        for (rounds, asked, unpaid, now, expected) in table {
            assert_eq!(next(&rounds, asked, unpaid, at(now)), expected, "{rounds:?} {asked:?} {unpaid:?} at {now}");
        }
    }
}
