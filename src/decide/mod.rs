//! Every decision about a row, as pure functions: where it stands, what the runner does next after each
//! answer, whether a link may be replaced, what the output says of it. No I/O, no clock, no locks.
//!
//! The runner carries the steps out (throttle, HTTP, ledger append) and asks here again with what it got
//! back; every transition therefore has a unit test below that needs no server.

mod abort;
mod breaker;
pub mod codes;
mod create;
pub mod delivery;
#[cfg(test)]
mod fixtures;
mod outage;
mod rates;
mod recover;
mod replace;
mod report;
mod retire;
mod retry;
mod row;

pub use abort::Abort;
pub use breaker::Breaker;
pub use create::{Answer, Creating, Step, Then};
pub use outage::{Away, Outage};
pub use rates::starting_rates;
pub use recover::{Recovered, recover};
pub use replace::{Replace, is_paid, replace};
pub use report::{Report, rejected, report, unreadable_stop, unsettled_words};
pub use retire::{AfterDelete, RowNow, Seen, after_delete, retire};
pub use retry::{Again, read_again};
pub use row::{Disposition, Task, Work, disposition, task, updatable};
