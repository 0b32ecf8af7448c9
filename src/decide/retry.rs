//! When an idempotent request (a read, a delete) that failed is sent again, and how long after.

use std::time::Duration;

use crate::api::ApiError;

/// After an idempotent request (a read, a delete) failed: whether it is worth sending again, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Again {
    /// The error is final (permanent, fatal, unreadable, untrusted).
    Never,
    /// At once, spending no attempt: the server is away, and the outage's gate holds the request.
    Now,
    /// After the policy's next delay, never sooner than the server's `Retry-After`.
    Backoff {
        /// The server's `Retry-After`, or zero.
        at_least: Duration,
    },
}

/// Whether a failed idempotent request (a read, a delete) goes again.
pub fn read_again(error: &ApiError) -> Again {
    match error {
        ApiError::Permanent { .. }
        | ApiError::Fatal { .. }
        | ApiError::Unreadable { .. }
        | ApiError::Untrusted { .. } => Again::Never,
        // The turn waits while the server is away (at most `[retry] outage`); no attempt is spent.
        ApiError::Unreachable { .. } => Again::Now,
        ApiError::Retryable { .. } | ApiError::Uncertain { .. } => Again::Backoff { at_least: retry_after(error) },
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
    #[case::retryable_waits_the_backoff(E::Retry, Again::Backoff { at_least: Duration::ZERO })]
    #[case::retryable_waits_at_least_retry_after(E::RetryAfter(10), Again::Backoff { at_least: Duration::from_secs(10) })]
    #[case::rate_limited_waits_retry_after(E::RateLimited(4), Again::Backoff { at_least: Duration::from_secs(4) })]
    #[case::uncertain_read_is_sent_again(E::Uncertain, Again::Backoff { at_least: Duration::ZERO })]
    #[case::permanent_is_final(E::Permanent, Again::Never)]
    #[case::fatal_is_final(E::Fatal, Again::Never)]
    #[case::unreadable_is_final(E::Unreadable, Again::Never)]
    #[case::unreachable_spends_no_attempt(E::Unreachable, Again::Now)]
    #[case::untrusted_is_final(E::Untrusted, Again::Never)]
    fn idempotent_retries(#[case] error: E, #[case] expected: Again) {
        assert_eq!(read_again(&error.error()), expected);
    }
}
