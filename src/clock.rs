//! The server's clock as this host sees it. The host's wall clock may run fast or slow, or be stepped (a VM
//! resumed, a container without NTP, NTP stepping it back), and Omise filters lists and counts its rate
//! windows by its own time. So the times that must agree with the server's (a request's `at` in the ledger,
//! the start of the list that looks for an uncertain request's link) are the server's: the last `Date` it
//! answered with, carried forward on the host's monotonic clock, which no step of the wall clock moves.
//! Learns only from answers; never sends anything itself.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// A server `Date` this far below what the clock already says means the server's own clock was stepped
/// back: the clock follows it. Anything closer is the `Date`'s rounding to the second and latency.
const STEPPED_BACK: Duration = Duration::from_secs(2);

/// The server's time, learned from the `Date` of its answers; shared by every copy of a client.
#[derive(Debug, Clone, Default)]
pub struct ServerClock(Arc<Mutex<Option<Reading>>>);

/// A `Date` heard, and the monotonic instant it was heard at.
#[derive(Debug, Clone, Copy)]
struct Reading {
    server: SystemTime,
    heard: Instant,
}

impl Reading {
    fn at(self, now: Instant) -> SystemTime {
        self.server + now.saturating_duration_since(self.heard)
    }
}

impl ServerClock {
    /// A `Date` header's value heard at `heard`. A `Date` says the second the server wrote its answer, so
    /// it is never later than the server's time when it arrives: of the readings, the one that says the
    /// latest time is the closest, unless the server's clock went back.
    pub fn heard(&self, date: &str, heard: Instant) {
        let Ok(server) = httpdate::parse_http_date(date) else { return };
        let reading = Reading { server, heard };
        let mut kept = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let keep = match *kept {
            None => true,
            Some(old) => {
                let (new_now, old_now) = (reading.at(heard), old.at(heard));
                new_now > old_now || old_now.duration_since(new_now).unwrap_or_default() > STEPPED_BACK
            }
        };
        if keep {
            *kept = Some(reading);
        }
    }

    /// The server's time now, once an answer said it.
    pub fn now(&self) -> Option<SystemTime> {
        let kept = *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.map(|r| r.at(Instant::now()))
    }

    /// The server's time now, or the host's while no answer has said it.
    pub fn now_or_host(&self) -> SystemTime {
        self.now().unwrap_or_else(SystemTime::now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(at: SystemTime) -> String {
        httpdate::fmt_http_date(at)
    }

    #[test]
    fn knows_nothing_before_an_answer() {
        let clock = ServerClock::default();
        assert!(clock.now().is_none());
        clock.heard("not a date", Instant::now());
        assert!(clock.now().is_none());
    }

    #[test]
    fn a_server_an_hour_behind_is_an_hour_behind() {
        let clock = ServerClock::default();
        let server = SystemTime::now() - Duration::from_hours(1);
        clock.heard(&date(server), Instant::now());
        let ahead = SystemTime::now().duration_since(clock.now().unwrap()).unwrap().as_millis();
        assert!((3_599_000..=3_601_000).contains(&ahead), "{ahead}");
    }

    #[test]
    fn keeps_the_latest_reading_and_follows_a_step_back() {
        let clock = ServerClock::default();
        let base = SystemTime::UNIX_EPOCH + Duration::from_hours(500_000);
        let now = Instant::now();
        clock.heard(&date(base + Duration::from_secs(10)), now);
        // An older Date (a slow answer, the second's rounding) does not pull the clock back.
        clock.heard(&date(base + Duration::from_secs(9)), now);
        let kept = clock.now().unwrap().duration_since(base).unwrap();
        assert!(kept >= Duration::from_secs(10), "{kept:?}");
        // The server's clock stepped back an hour: followed.
        clock.heard(&date(base - Duration::from_hours(1)), now);
        assert!(clock.now().unwrap() < base);
    }
}
