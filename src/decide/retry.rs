//! When an idempotent request (a read, a delete) that failed is sent again, and how long after.

use std::time::Duration;

use crate::api::ApiError;

/// After an idempotent request (a read, a delete) failed: how long to wait before sending it again, or
/// `None` to give up (the error is permanent or fatal, or `next_delay` says the attempts ran out).
pub fn retry_read(error: &ApiError, delays: &mut impl Iterator<Item = Duration>) -> Option<Duration> {
    match error {
        ApiError::Permanent { .. }
        | ApiError::Fatal { .. }
        | ApiError::Unreadable { .. }
        | ApiError::Untrusted { .. } => None,
        // The turn waits while the server is away (at most `[retry] outage`); no attempt is spent.
        ApiError::Unreachable { .. } => Some(Duration::ZERO),
        ApiError::Retryable { .. } | ApiError::Uncertain { .. } => delays.next().map(|d| d.max(retry_after(error))),
    }
}

/// The server's `Retry-After`, when the error carries one (zero otherwise).
pub(super) fn retry_after(error: &ApiError) -> Duration {
    match error {
        ApiError::Retryable { retry_after, .. } => retry_after.unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rstest::rstest;

    use super::*;
    use crate::decide::fixtures::E;

    #[rstest]
    #[case::retryable_waits_the_backoff(E::Retry, Some(3), Some(3))]
    #[case::retryable_waits_a_longer_retry_after(E::RetryAfter(10), Some(3), Some(10))]
    #[case::rate_limited_waits_retry_after(E::RateLimited(4), Some(1), Some(4))]
    #[case::retryable_out_of_attempts(E::Retry, None, None)]
    #[case::uncertain_read_is_sent_again(E::Uncertain, Some(2), Some(2))]
    #[case::uncertain_read_out_of_attempts(E::Uncertain, None, None)]
    #[case::permanent_is_final(E::Permanent, Some(2), None)]
    #[case::fatal_is_final(E::Fatal, Some(2), None)]
    #[case::unreadable_is_final(E::Unreadable, Some(2), None)]
    #[case::unreachable_spends_no_attempt(E::Unreachable, None, Some(0))]
    #[case::untrusted_is_final(E::Untrusted, Some(2), None)]
    fn idempotent_retries(#[case] error: E, #[case] next: Option<u64>, #[case] expected: Option<u64>) {
        let mut delays = next.map(Duration::from_secs).into_iter();
        let wait = retry_read(&error.error(), &mut delays);
        assert_eq!(wait, expected.map(Duration::from_secs));
        if error == E::Unreachable {
            assert_eq!(delays.count(), usize::from(next.is_some()), "no attempt spent");
        }
    }
}
