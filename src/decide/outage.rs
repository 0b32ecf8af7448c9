//! An outage: a server that cannot be reached, and what the next request does about it (wait and probe,
//! or give up after `[retry] outage`). A decision, with no I/O: the runner and the command line's reads
//! carry it out.

use std::time::{Duration, SystemTime};

/// A server that cannot be reached: since when, how many probes found it away, and what to do next. The
/// whole run waits together (one probe at a time, backing off) instead of each row spending its attempts,
/// and stops once the server has been away for `limit` (`[retry] outage`).
#[derive(Debug, Clone)]
pub struct Outage {
    since: Option<SystemTime>,
    reason: String,
    probes: u32,
    limit: Duration,
    base: Duration,
    max: Duration,
}

/// What an outage asks of the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Away {
    /// The server answers: go.
    Up,
    /// Wait this long, then send one probe (the others wait for its answer).
    Probe(Duration),
    /// Away for longer than `[retry] outage`: stop the run, with this reason.
    GiveUp(String),
}

impl Outage {
    /// No outage yet; `limit` is `[retry] outage`, `base` and `max` the backoff between probes.
    pub fn new(limit: Duration, base: Duration, max: Duration) -> Outage {
        Outage { since: None, reason: String::new(), probes: 0, limit, base: base.max(Duration::from_millis(100)), max }
    }

    /// A request found the server away at `now`; true when this starts an outage. The requests in flight
    /// that find it away together count once: only probes back off.
    pub fn away(&mut self, now: SystemTime, reason: &str) -> bool {
        let new = self.since.is_none();
        self.since.get_or_insert(now);
        reason.clone_into(&mut self.reason);
        new
    }

    /// Whether the server is away.
    pub fn is_away(&self) -> bool {
        self.since.is_some()
    }

    /// A request got an answer at `now`: the server is back. How long it was away, if it was.
    pub fn back(&mut self, now: SystemTime) -> Option<Duration> {
        self.probes = 0;
        self.since.take().map(|since| now.duration_since(since).unwrap_or_default())
    }

    /// `[retry] outage`.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// What the next request does at `now`; a probe it grants is counted, so the next one waits longer.
    pub fn next(&mut self, now: SystemTime) -> Away {
        let Some(since) = self.since else { return Away::Up };
        let away = now.duration_since(since).unwrap_or_default();
        if away >= self.limit {
            return Away::GiveUp(format!(
                "the server could not be reached since {} ({}); waited [retry] outage = {}, then stopped. The \
                 rows not sent are pending: run the same command again once the server is back",
                humantime::format_rfc3339_seconds(since),
                self.reason,
                humantime::format_duration(self.limit)
            ));
        }
        let backoff = self.base.saturating_mul(1 << self.probes.min(16)).min(self.max);
        self.probes += 1;
        Away::Probe(backoff.min(self.limit.saturating_sub(away)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn an_outage_probes_with_backoff_and_gives_up_at_its_limit() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let after = |s: u64| t0 + Duration::from_secs(s);
        let mut outage = Outage::new(Duration::from_secs(20), Duration::from_secs(1), Duration::from_secs(8));
        assert_eq!(outage.next(t0), Away::Up);
        assert!(outage.away(t0, "connection refused"), "the first refusal starts the outage");
        for _ in 0..7 {
            assert!(!outage.away(t0, "connection refused"), "the others in flight count once");
        }
        assert_eq!(outage.next(after(0)), Away::Probe(Duration::from_secs(1)));
        outage.away(after(1), "connection refused");
        assert_eq!(outage.next(after(1)), Away::Probe(Duration::from_secs(2)));
        assert_eq!(outage.next(after(3)), Away::Probe(Duration::from_secs(4)));
        assert_eq!(outage.next(after(7)), Away::Probe(Duration::from_secs(8)));
        assert_eq!(outage.next(after(15)), Away::Probe(Duration::from_secs(5)), "never past the limit");
        let Away::GiveUp(reason) = outage.next(after(20)) else { panic!("not given up at the limit") };
        assert!(reason.starts_with("the server could not be reached since 1970-01-12T13:46:40Z (connection refused)"));
        assert_eq!(outage.back(after(21)), Some(Duration::from_secs(21)));
        assert_eq!((outage.next(after(22)), outage.back(after(22))), (Away::Up, None));
        assert!(outage.away(after(30), "no route"));
        assert_eq!(outage.next(after(30)), Away::Probe(Duration::from_secs(1)), "a new outage backs off afresh");
    }
}
