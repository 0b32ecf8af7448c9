//! The breaker: when every row gets the same refusal, dispatch stops before the hour's budget goes on
//! refusals. A decision, with no I/O: the runner asks it for each create's turn and tells it each answer.

/// The breaker: `limit` permanent failures in a row with the same code mean every row would get it (the
/// account's cap, a frozen account, a field every row gets wrong), so dispatch stops rather than spend the
/// hour's budget on refusals. A link made, or another code, starts the count again.
///
/// A link made counts only when its create took its turn after the latest refusal was heard: one already
/// in flight then says nothing about the cap now. After a refusal, creates go one at a time until one
/// succeeds; with at most `limit` in flight at once, at most `limit` refusals of one code reach the server,
/// whatever the concurrency.
#[derive(Debug, Clone)]
pub struct Breaker {
    limit: u32,
    code: Option<String>,
    run: u32,
    /// Creates since the count began whose answer was lost and whose link reconciliation did not find:
    /// each may have been a refusal the server counted, so each counts toward the limit.
    lost: u32,
    /// Turns handed out so far.
    turns: u64,
    /// Turns handed out when the latest refusal was heard: those creates were in flight or done.
    refused: u64,
}

impl Breaker {
    /// A breaker that trips after `limit` failures in a row with one code.
    pub fn new(limit: u32) -> Breaker {
        Breaker { limit, code: None, run: 0, lost: 0, turns: 0, refused: 0 }
    }

    /// A create is about to be sent: its place in sending order, and whether it must go alone (a refusal
    /// is being counted, so the count never runs past the limit with requests already in flight).
    pub fn turn(&mut self) -> (u64, bool) {
        self.turns += 1;
        (self.turns, self.run + self.lost > 0)
    }

    /// The create sent at `turn` got its link (`None`: a link adopted, no create sent): the count starts
    /// again, unless that create was already in flight when the latest refusal was heard.
    pub fn success(&mut self, turn: Option<u64>) {
        if turn.unwrap_or(self.turns + 1) > self.refused {
            (self.code, self.run, self.lost) = (None, 0, 0);
        }
    }

    /// A create's answer was lost and no link was found for it: perhaps a refusal, perhaps never sent.
    /// Counted toward the limit as a refusal would be (and creates go alone after it), so that lost
    /// answers cannot carry the refusals that reach the server past the limit. `limit` lost answers in a
    /// row trip it even with no refusal heard: any of them may have been one, and the server made no link
    /// for any. (A create lost to an outage is the outage's, and the runner does not count it here.)
    pub fn lost(&mut self) -> Option<String> {
        self.lost += 1;
        self.refused = self.turns;
        self.tripped()
    }

    /// A create failed for good with `code`; the reason to stop dispatch when this makes `limit` in a row.
    /// Retries run out is the server's trouble, not a refusal: it neither counts nor starts the count again.
    pub fn failure(&mut self, code: &str) -> Option<String> {
        if code == super::codes::RETRIES_EXHAUSTED {
            return None;
        }
        if self.code.as_deref() == Some(code) {
            self.run += 1;
        } else {
            (self.code, self.run) = (Some(code.to_owned()), 1);
        }
        self.refused = self.turns;
        self.tripped()
    }

    /// The reason dispatch stops, once the refusals and lost answers in a row reach the limit.
    fn tripped(&self) -> Option<String> {
        if self.run + self.lost < self.limit {
            return None;
        }
        let Some(code) = &self.code else {
            return Some(format!(
                "{} creates in a row got no answer and the server made no link for any: each may have been refused, \
                 so dispatch stopped at the breaker's limit and the rows not sent are pending. Look at what the \
                 server says in the dashboard (or allow a longer [api] timeout), then run again",
                self.lost
            ));
        };
        let lost =
            if self.lost > 0 { format!(" (and {} more whose answer was lost)", self.lost) } else { String::new() };
        Some(format!(
            "{} creates in a row were refused with `{code}`{lost}: every row would be, so dispatch stopped and the \
             rows not sent are pending. Fix the cause (the account's active-link cap, the account's state, or a \
             field every row gets wrong), then run again",
            self.run
        ))
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    /// Outcomes in the order answers come back; every create took its turn just before its answer.
    #[rstest]
    #[case::trips_at_the_limit(3, &["cap", "cap", "cap"], Some(2))]
    #[case::another_code_starts_again(3, &["cap", "cap", "other", "cap", "cap"], None)]
    #[case::a_success_starts_again(3, &["cap", "cap", "ok", "cap", "cap"], None)]
    #[case::after_a_success_trips_again(2, &["cap", "ok", "cap", "cap"], Some(3))]
    #[case::a_limit_of_one_trips_at_once(1, &["cap"], Some(0))]
    #[case::retries_run_out_count_for_nothing(2, &["cap", "retries_exhausted", "cap"], Some(2))]
    #[case::lost_answers_count_once_a_refusal_is_heard(3, &["lost", "cap", "lost"], Some(2))]
    #[case::lost_answers_alone_trip_at_the_limit(2, &["lost", "lost", "lost"], Some(1))]
    #[case::lost_answers_below_the_limit_trip_nothing(3, &["lost", "lost", "ok", "lost", "lost"], None)]
    #[case::a_success_forgets_lost_answers(3, &["cap", "lost", "ok", "cap", "lost"], None)]
    fn the_breaker(#[case] limit: u32, #[case] outcomes: &[&str], #[case] trips_at: Option<usize>) {
        let mut breaker = Breaker::new(limit);
        let mut tripped = None;
        for (i, outcome) in outcomes.iter().enumerate() {
            let (turn, _) = breaker.turn();
            if *outcome == "ok" {
                breaker.success(Some(turn));
            } else if *outcome == "lost" {
                if let Some(reason) = breaker.lost() {
                    assert!(reason.contains("pending"), "{reason}");
                    tripped.get_or_insert(i);
                }
            } else if let Some(reason) = breaker.failure(outcome) {
                assert!(reason.contains(&format!("`{outcome}`")) && reason.contains("pending"), "{reason}");
                tripped.get_or_insert(i);
            }
        }
        assert_eq!(tripped, trips_at);
    }

    #[test]
    fn a_link_in_flight_when_a_refusal_is_heard_starts_nothing() {
        let mut breaker = Breaker::new(3);
        let (first, second, third) = (breaker.turn().0, breaker.turn().0, breaker.turn().0);
        assert_eq!(breaker.failure("cap"), None);
        breaker.success(Some(first));
        assert_eq!(breaker.turn(), (4, true), "sent before the refusal was heard: the cap may still hold");
        assert_eq!(breaker.failure("cap"), None);
        breaker.success(Some(second));
        assert!(breaker.failure("cap").is_some(), "the third refusal in a row trips, the successes in flight aside");
        breaker.success(Some(third));
        let (alone, _) = breaker.turn();
        breaker.success(Some(alone));
        assert_eq!(breaker.turn(), (6, false), "a link sent after the refusals starts the count again");
    }
}
