//! Rate limits (`60/min`), durations (`30s`) and the exact sliding-window count.
//!
//! One definition of a window serves both sides: the sandbox enforces it, the client's throttle obeys it,
//! so the two can never disagree on what "60 per minute" means.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// `COUNT` requests in any `period`, as written `COUNT/PERIOD` (`60/min`, `1000/h`, `5/10s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed in one window.
    pub count: u32,
    /// Length of the window.
    pub period: Duration,
}

/// Why a rate or duration string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RateError {
    /// Not of the form `COUNT/PERIOD`.
    #[error("rate `{0}` is not COUNT/PERIOD, e.g. 60/min, 1000/h, 5/10s")]
    Shape(String),
    /// A count of zero or a period of zero.
    #[error("rate `{0}` must have a count and a period above zero")]
    Zero(String),
    /// The period or duration could not be read.
    #[error("duration `{0}` is not understood (use e.g. 500ms, 30s, 2min, 1h)")]
    Duration(String),
    /// A count or period outside what any rate limit means.
    #[error("rate `{0}`: the count must be 1 to {MAX_COUNT} and the period 1ms to 7 days")]
    Range(String),
}

/// The largest count a rate may have.
pub const MAX_COUNT: u32 = 1_000_000;
/// The longest period a rate may have: a week.
pub const MAX_PERIOD: Duration = Duration::from_hours(7 * 24);

impl Rate {
    /// The even spacing between requests that this rate allows.
    pub fn interval(&self) -> Duration {
        self.period / self.count
    }
}

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (count, period) = text.trim().split_once('/').ok_or_else(|| RateError::Shape(text.to_owned()))?;
        let count: u32 = count.trim().parse().map_err(|_| RateError::Shape(text.to_owned()))?;
        let period = period.trim();
        // "60/min" means one minute; "5/10s" means ten seconds: a bare unit gets an implicit 1.
        let period = if period.starts_with(|c: char| c.is_ascii_digit()) {
            parse_duration(period)?
        } else {
            parse_duration(&format!("1{period}"))?
        };
        if count == 0 || period.is_zero() {
            return Err(RateError::Zero(text.to_owned()));
        }
        if count > MAX_COUNT || period > MAX_PERIOD || period < Duration::from_millis(1) {
            return Err(RateError::Range(text.to_owned()));
        }
        Ok(Rate { count, period })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.period.as_secs();
        let period = match secs {
            3600 if self.period.subsec_nanos() == 0 => "h".to_owned(),
            60 if self.period.subsec_nanos() == 0 => "min".to_owned(),
            1 if self.period.subsec_nanos() == 0 => "s".to_owned(),
            _ => humantime::format_duration(self.period).to_string().replace(' ', ""),
        };
        write!(f, "{}/{}", self.count, period)
    }
}

impl serde::Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A `--limit` value: one window, or `none` to lift every window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `none`.
    Lifted,
    /// `COUNT/PERIOD`.
    Window(Rate),
}

impl FromStr for Limit {
    type Err = RateError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().eq_ignore_ascii_case("none") { Ok(Limit::Lifted) } else { text.parse().map(Limit::Window) }
    }
}

impl Limit {
    /// The windows a list of `--limit` flags gives: `None` when none was given (the job's stand), no window
    /// when one of them is `none`.
    pub fn windows(limits: &[Limit]) -> Option<Vec<Rate>> {
        if limits.is_empty() {
            return None;
        }
        if limits.contains(&Limit::Lifted) {
            return Some(Vec::new());
        }
        Some(limits.iter().filter_map(|l| if let Limit::Window(rate) = l { Some(*rate) } else { None }).collect())
    }
}

/// Parses `500ms`, `30s`, `2min`, `1h` (and `min`, `h` as units for rates).
pub fn parse_duration(text: &str) -> Result<Duration, RateError> {
    humantime::parse_duration(text.trim()).map_err(|_| RateError::Duration(text.to_owned()))
}

/// An exact sliding-window log: the instants of the requests admitted in the last `period`.
///
/// Memory is bounded by `count` entries per window, whatever the traffic.
#[derive(Debug, Clone)]
pub struct SlidingWindow<T> {
    rate: Rate,
    admitted: VecDeque<T>,
}

impl<T> SlidingWindow<T>
where
    T: Copy + Ord + std::ops::Sub<Output = Duration> + std::ops::Add<Duration, Output = T>,
{
    /// An empty window for `rate`.
    pub fn new(rate: Rate) -> Self {
        SlidingWindow { rate, admitted: VecDeque::with_capacity(rate.count.min(4096) as usize) }
    }

    /// The rate this window enforces.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// The earliest instant at or after `now` when one more request fits, with `margin` added to the
    /// period (the client's allowance for the server seeing a request later than it was sent): the request
    /// `count` places back must lie at least `period + margin` before it.
    pub fn next_free(&mut self, now: T, margin: Duration) -> T {
        let count = self.rate.count as usize;
        let Some(place) = self.admitted.len().checked_sub(count) else { return now };
        let free = self.admitted[place] + (self.rate.period + margin);
        if free > now { free } else { now }
    }

    /// Records a request at `at`. Callers keep `at` non-decreasing (a clock reading under a lock).
    pub fn record(&mut self, at: T) {
        self.admitted.push_back(at);
        // Entries beyond `count` can never block anything again; up to `count` more (at most 4096) are kept
        // so that a 429 can be read against what the window held just before it (see `throttle::learn`).
        let count = self.rate.count as usize;
        while self.admitted.len() > count + count.min(4096) {
            self.admitted.pop_front();
        }
    }

    /// Moves the request counted at `from` to `to`, keeping the log in time order (a request that left later
    /// than it was counted). Nothing when it is no longer remembered.
    pub fn restamp(&mut self, from: T, to: T) {
        let Some(place) = self.admitted.iter().rposition(|&at| at == from) else { return };
        self.admitted.remove(place);
        let after = self.admitted.iter().rposition(|&at| at <= to).map_or(0, |earlier| earlier + 1);
        self.admitted.insert(after, to);
    }

    /// The requests it remembers, oldest first.
    pub fn log(&self) -> impl Iterator<Item = T> + '_ {
        self.admitted.iter().copied()
    }

    /// Keeps the same requests under a different rate (a window learned to be tighter).
    pub fn retarget(&mut self, rate: Rate) {
        self.rate = rate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn parses_the_forms_the_spec_names() {
        assert_eq!("60/min".parse::<Rate>().unwrap(), Rate { count: 60, period: Duration::from_mins(1) });
        assert_eq!("1000/h".parse::<Rate>().unwrap().period, Duration::from_hours(1));
        assert_eq!("5/10s".parse::<Rate>().unwrap().period, Duration::from_secs(10));
        assert_eq!("2000/2min".parse::<Rate>().unwrap().period, Duration::from_mins(2));
        assert!(matches!("0/min".parse::<Rate>(), Err(RateError::Zero(_))));
        assert!(matches!("60".parse::<Rate>(), Err(RateError::Shape(_))));
        assert!(matches!("60/fortnightly".parse::<Rate>(), Err(RateError::Duration(_))));
        // Numbers no rate limit means, which would overflow a clock: refused, not panicked on.
        for text in ["1/18446744073709551615s", "1/8d", "1000001/s", "1/1us", "4294967295/h"] {
            assert!(matches!(text.parse::<Rate>(), Err(RateError::Range(_))), "{text}");
        }
        assert_eq!("1000000/7d".parse::<Rate>().map(|r| r.count), Ok(1_000_000));
    }

    #[test]
    fn displays_back_as_written() {
        for text in ["60/min", "1000/h", "5/10s", "3/s"] {
            assert_eq!(text.parse::<Rate>().unwrap().to_string(), text);
        }
    }

    proptest::proptest! {
        /// A `learned` ledger line holds rates as `Display` wrote them and reads them back with `FromStr`.
        #[test]
        fn every_rate_reads_back_from_what_it_displays(count in 1..=MAX_COUNT, millis in 1..=MAX_PERIOD.as_millis() as u64) {
            let rate = Rate { count, period: Duration::from_millis(millis) };
            proptest::prop_assert_eq!(rate.to_string().parse::<Rate>(), Ok(rate));
        }
    }

    #[test]
    fn window_admits_count_then_waits_for_the_oldest_to_leave() {
        let rate: Rate = "3/10s".parse().unwrap();
        let mut window = SlidingWindow::new(rate);
        let t0 = Instant::now();
        for i in 0..3 {
            let at = t0 + Duration::from_secs(i);
            assert_eq!(window.next_free(at, Duration::ZERO), at);
            window.record(at);
        }
        let t3 = t0 + Duration::from_secs(3);
        assert_eq!(window.next_free(t3, Duration::ZERO), t0 + Duration::from_secs(10));
        assert_eq!(window.next_free(t3, Duration::from_millis(50)), t0 + Duration::from_millis(10_050));
        let t10 = t0 + Duration::from_secs(10);
        assert_eq!(window.log().filter(|&at| t10 - at < rate.period).count(), 2);
    }

    #[test]
    fn a_request_restamped_later_blocks_until_later() {
        let mut window = SlidingWindow::new("2/s".parse().unwrap());
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        window.record(ms(0));
        window.record(ms(10));
        // The first left 70 ms after it was counted (its intent reached the disk first).
        window.restamp(ms(0), ms(70));
        assert_eq!(window.log().collect::<Vec<_>>(), vec![ms(10), ms(70)]);
        assert_eq!(window.next_free(ms(100), Duration::ZERO), ms(1010));
        window.record(ms(1010));
        assert_eq!(window.next_free(ms(1010), Duration::ZERO), ms(1070));
        // Forgotten already: nothing moves.
        window.restamp(ms(5), ms(2000));
        assert_eq!(window.log().count(), 3);
    }
}
