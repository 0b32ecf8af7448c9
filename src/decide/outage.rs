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
