//! Why a run stops before its end, ordered by how grave the cause is: a later, graver cause replaces a
//! lesser one (as nextest's cancel reasons do), so the summary names the cause a user must act on first,
//! whichever worker met it first.

/// A run's abort reason. Variants run from the least grave to the most: a breaker that tripped is a job's
/// rows all refused alike; a ledger that cannot be written makes every further step unsafe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Abort {
    /// The same refusal, row after row (`[retry] breaker`).
    Breaker(String),
    /// The server was away for longer than `[retry] outage`.
    Outage(String),
    /// The input or the ledger is not the file the run started from.
    Changed(String),
    /// The server refused the key, or the host refused the server's certificate.
    Refused(String),
    /// An answer that cannot be read: nothing more is sent until it is settled.
    Unreadable(String),
    /// The ledger could not be written.
    Ledger(String),
}

impl Abort {
    /// How grave: a higher rank replaces a lower one.
    fn rank(&self) -> u8 {
        match self {
            Abort::Breaker(_) => 0,
            Abort::Outage(_) => 1,
            Abort::Changed(_) => 2,
            Abort::Refused(_) => 3,
            Abort::Unreadable(_) => 4,
            Abort::Ledger(_) => 5,
        }
    }

    /// The words the summary gives it.
    pub fn reason(&self) -> &str {
        match self {
            Abort::Breaker(reason)
            | Abort::Outage(reason)
            | Abort::Changed(reason)
            | Abort::Refused(reason)
            | Abort::Unreadable(reason)
            | Abort::Ledger(reason) => reason,
        }
    }

    /// `current` after `next` is met: the graver of the two, the earlier on a tie.
    pub fn graver(current: Option<Abort>, next: Abort) -> Abort {
        match current {
            Some(current) if current.rank() >= next.rank() => current,
            _ => next,
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::Abort::{self, Breaker, Changed, Ledger, Outage, Refused, Unreadable};

    #[rstest]
    #[case::first_is_kept_alone(None, Breaker("b".into()), Breaker("b".into()))]
    #[case::a_graver_replaces(Some(Breaker("b".into())), Ledger("disk full".into()), Ledger("disk full".into()))]
    #[case::a_lesser_does_not(Some(Refused("401".into())), Outage("away".into()), Refused("401".into()))]
    #[case::a_tie_keeps_the_first(Some(Changed("input".into())), Changed("ledger".into()), Changed("input".into()))]
    #[case::unreadable_outranks_refused(Some(Refused("401".into())), Unreadable("row 3".into()), Unreadable("row 3".into()))]
    fn a_graver_cause_replaces_a_lesser(#[case] current: Option<Abort>, #[case] next: Abort, #[case] kept: Abort) {
        assert_eq!(Abort::graver(current, next), kept);
    }

    #[test]
    fn the_order_runs_from_breaker_to_ledger() {
        let all = [Breaker(String::new()), Outage(String::new()), Changed(String::new())];
        let more = [Refused(String::new()), Unreadable(String::new()), Ledger(String::new())];
        let ranks: Vec<u8> = all.iter().chain(&more).map(Abort::rank).collect();
        assert!(ranks.is_sorted() && ranks.len() == 6, "{ranks:?}");
    }
}
