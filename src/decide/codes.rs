//! The error codes linkbatch itself writes into the output (the server's own codes pass through as sent).

/// The row changed after its link was made.
pub const CONFLICT: &str = "conflict";
/// The row changed, and its link was paid, so `--replace-changed` kept it.
pub const CONFLICT_PAID: &str = "conflict_paid";
/// The server answered the row's create in a shape linkbatch cannot read: settled by hand only.
pub const UNREADABLE_ANSWER: &str = "unreadable_answer";
/// The last request's outcome is unknown (the next run reconciles it).
pub const UNCERTAIN: &str = "uncertain";
/// Every attempt met a retryable failure.
pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";
/// A rejected row: `invalid_` and the field at fault (`invalid_amount`, `invalid_key`…).
pub const INVALID_PREFIX: &str = "invalid_";
