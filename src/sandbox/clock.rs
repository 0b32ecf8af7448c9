//! The sandbox's own clock: the host's, moved by an offset (`--clock-offset`, or `POST /__sandbox/clock`
//! while it runs), so a test can put the server's time apart from the client's, ahead, behind or stepped,
//! with no fake-time library. Every time the sandbox gives out (a link's `created_at`, the `Date` of an
//! answer, the list's `from` filter) is read here.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

/// The host's clock plus a signed offset, in milliseconds.
#[derive(Debug, Default)]
pub(super) struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    pub(super) fn new(offset_ms: i64) -> Clock {
        Clock { offset_ms: AtomicI64::new(offset_ms) }
    }

    /// The server's time now.
    pub(super) fn now(&self) -> SystemTime {
        let host = SystemTime::now();
        let offset = self.offset_ms.load(Ordering::SeqCst);
        let shift = Duration::from_millis(offset.unsigned_abs());
        if offset >= 0 { host + shift } else { host.checked_sub(shift).unwrap_or(SystemTime::UNIX_EPOCH) }
    }

    /// Moves the clock to `offset_ms` from the host's.
    pub(super) fn set(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::SeqCst);
    }

    pub(super) fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }
}

/// A signed duration as a user writes it: `150s`, `+1h`, `-90m`, in milliseconds.
pub fn parse_offset(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (sign, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let duration = crate::rate::parse_duration(magnitude.trim()).map_err(|e| e.to_string())?;
    let millis = i64::try_from(duration.as_millis()).map_err(|_| format!("`{text}` is too far"))?;
    Ok(sign * millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_read_with_their_sign() {
        assert_eq!(parse_offset("150s"), Ok(150_000));
        assert_eq!(parse_offset("+1h"), Ok(3_600_000));
        assert_eq!(parse_offset("-1h"), Ok(-3_600_000));
        assert_eq!(parse_offset(" -90m "), Ok(-5_400_000));
        assert!(parse_offset("soon").is_err());
    }

    #[test]
    fn the_clock_runs_apart_from_the_host() {
        let clock = Clock::new(-3_600_000);
        let behind = SystemTime::now().duration_since(clock.now()).unwrap();
        assert!(behind >= Duration::from_secs(3599) && behind <= Duration::from_secs(3601), "{behind:?}");
        clock.set(150_000);
        let ahead = clock.now().duration_since(SystemTime::now()).unwrap();
        assert!(ahead >= Duration::from_secs(149) && ahead <= Duration::from_secs(151), "{ahead:?}");
    }
}
