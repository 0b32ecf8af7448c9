//! A ledger time: a wall-clock instant to the millisecond, written as RFC 3339 (`2026-11-30T04:44:01.029Z`).
//! Held as a time from the moment it is made, so a run compares times, never their text; serde writes the
//! same bytes every ledger has held. Reads no clock but [`Time::now`], the host's.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant as the ledger keeps it: to the millisecond, so the time a run holds is the time the file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(SystemTime);

impl Time {
    /// The host's time now: when a line was written. (An intent's time is the server's: see
    /// [`crate::clock::ServerClock`].)
    pub fn now() -> Time {
        Time::from(SystemTime::now())
    }

    /// `at`, to the millisecond below (a time before 1970 is 1970).
    pub fn from(at: SystemTime) -> Time {
        let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        Time(SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX)))
    }

    /// Reads RFC 3339 (any precision; a lowercase `t` or `z`, or a space for the `T`, too).
    pub fn parse(text: &str) -> Option<Time> {
        humantime::parse_rfc3339_weak(text).ok().map(Time::from)
    }

    /// The instant.
    pub fn system(self) -> SystemTime {
        self.0
    }

    /// Milliseconds since 1970.
    pub fn millis(self) -> u64 {
        self.0.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// The time `millis` milliseconds after 1970.
    pub fn from_millis(millis: u64) -> Time {
        Time(SystemTime::UNIX_EPOCH + Duration::from_millis(millis))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_rfc3339_millis(self.0).fmt(f)
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Time, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Time;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Time, E> {
                Time::parse(text).ok_or_else(|| E::custom(format!("time `{text}` is not RFC 3339")))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_s_text_reads_back_to_the_same_text_and_the_same_instant() {
        let text = "2026-11-30T04:44:01.029Z";
        let time = Time::parse(text).unwrap();
        assert_eq!(time.to_string(), text);
        assert_eq!(serde_json::to_string(&time).unwrap(), format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<Time>(&format!("\"{text}\"")).unwrap(), time);
        assert_eq!(Time::from_millis(time.millis()), time);
    }

    #[test]
    fn a_time_is_held_to_the_millisecond_it_is_written_with() {
        let at = SystemTime::UNIX_EPOCH + Duration::new(1_764_477_841, 29_999_999);
        assert_eq!(Time::from(at).to_string(), "2025-11-30T04:44:01.029Z");
        assert_eq!(Time::parse(&Time::from(at).to_string()), Some(Time::from(at)));
        assert_eq!(Time::from(SystemTime::UNIX_EPOCH - Duration::from_secs(1)).millis(), 0);
    }

    #[test]
    fn text_that_is_no_time_is_refused_by_name() {
        let error = serde_json::from_str::<Time>("\"yesterday\"").unwrap_err().to_string();
        assert_eq!(error, "time `yesterday` is not RFC 3339 at line 1 column 11");
        assert_eq!(Time::parse("2026-13-01T00:00:00Z"), None);
    }
}
