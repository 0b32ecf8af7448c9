//! linkbatch: rows of a CSV or JSONL file in, one Omise payment link per row out, exactly once.
//!
//! The binary is a thin shell over this library ([`run`]), so tests and benchmarks can drive every
//! piece directly: the [`sandbox`], a [`plan::Plan`], the [`runner`].

pub mod api;
pub mod cli;
pub mod clock;
pub mod decide;
pub mod delivery;
pub mod digest;
pub mod input;
pub mod job;
pub mod ledger;
pub mod listen;
pub mod mail;
pub mod money;
pub mod monitor;
pub mod outcome;
pub mod output;
pub mod plan;
pub mod progress;
pub mod rate;
pub mod redact;
pub mod request;
pub mod row_key;
pub mod rows;
pub mod runner;
pub mod said;
pub mod sandbox;
pub mod secret;
pub mod stop;
pub mod summary;
pub mod template;
pub mod terms;
pub mod throttle;
pub mod told;
pub mod wait;

pub use cli::run;
