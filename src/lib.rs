//! linkbatch: rows of a CSV or JSONL file in, one Omise payment link per row out, exactly once.

pub mod money;
pub mod rate;
pub mod sandbox;
