//! Fuzzing on stable Rust with `proptest`: the input readers (CSV and JSONL), the job parser and planner, and
//! the ledger reader, each fed mutations of real samples (bytes flipped, inserted, deleted, lines repeated
//! and spliced). Whatever comes in must end in a value or an error: a panic fails the target, and proptest
//! shrinks it to the smallest input that panics.
//!
//! Each target runs for `LINKBATCH_FUZZ_SECONDS` (2 in `cargo test`); the README gives the longer run.

use std::path::Path;
use std::time::{Duration, Instant};

use linkbatch::input::InputReader;
use linkbatch::job::JobSpec;
use linkbatch::ledger::Ledger;
use linkbatch::plan::{Overrides, Plan};
use linkbatch::terms::InputFormat;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// One change to a sample.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    /// A line repeated at another place.
    Repeat(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        Just(b"\"".to_vec()),
        Just(b"\n".to_vec()),
        Just(b",".to_vec()),
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just(b"1e309".to_vec()),
        Just(b"-".to_vec()),
        Just(b"18446744073709551616".to_vec()),
        Just(b"\\u0000".to_vec()),
        Just(b"[[".to_vec()),
        Just(b"=".to_vec()),
        prop::collection::vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, bit)| Mutation::Flip(at, 1 << (bit % 8))),
        (any::<usize>(), interesting).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<usize>(), 1..64usize).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<usize>(), any::<usize>()).prop_map(|(from, to)| Mutation::Repeat(from, to)),
    ]
}

fn mutate(sample: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = sample.to_vec();
    for m in mutations {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match m {
            Mutation::Flip(i, bit) if !bytes.is_empty() => {
                let i = at(*i, bytes.len());
                bytes[i] ^= bit;
            }
            Mutation::Flip(..) => {}
            Mutation::Insert(i, text) => {
                let i = at(*i, bytes.len() + 1);
                bytes.splice(i..i, text.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = at(*i, bytes.len() + 1);
                let end = (i + n).min(bytes.len());
                bytes.drain(i..end);
            }
            Mutation::Repeat(from, to) => {
                let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
                if !lines.is_empty() {
                    let line = lines[at(*from, lines.len())].to_vec();
                    let mut out: Vec<u8> = Vec::new();
                    let to = at(*to, lines.len());
                    for (i, l) in lines.iter().enumerate() {
                        if i == to {
                            out.extend_from_slice(&line);
                        }
                        out.extend_from_slice(l);
                    }
                    bytes = out;
                }
            }
        }
    }
    bytes
}

/// Runs `target` on mutations of `samples` for the fuzzing time, in rounds of proptest cases; returns how
/// many inputs were tried. A panic fails the test with the smallest input found.
fn fuzz(name: &str, samples: &[Vec<u8>], target: impl Fn(&[u8])) -> u64 {
    let seconds: u64 = std::env::var("LINKBATCH_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let strategy = (0..samples.len(), prop::collection::vec(mutation(), 1..6));
    let mut tried = 0u64;
    while Instant::now() < deadline {
        let mut runner = TestRunner::new(Config { cases: 200, failure_persistence: None, ..Config::default() });
        let result = runner.run(&strategy, |(sample, mutations)| {
            target(&mutate(&samples[sample], &mutations));
            Ok(())
        });
        if let Err(failure) = result {
            panic!("a fuzz input made the code panic: {failure}");
        }
        tried += 200;
    }
    eprintln!("{name}: {tried} inputs in {seconds}s, no panic");
    tried
}

fn samples(paths: &[&str]) -> Vec<Vec<u8>> {
    paths.iter().map(|p| std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap()).collect()
}

/// Reads every record of `bytes` as an input of `format`, its columns all wanted.
fn read_all(bytes: &[u8], format: InputFormat, dir: &Path) {
    let path = dir.join(if format == InputFormat::Csv { "in.csv" } else { "in.jsonl" });
    std::fs::write(&path, bytes).unwrap();
    let Ok(mut reader) = InputReader::open(&path, format, b',') else { return };
    let columns = reader.columns().to_vec();
    reader.select(columns);
    while reader.next_record().is_some() {}
}

#[test]
fn fuzz_input_readers() {
    let dir = tempfile::tempdir().unwrap();
    let csv = samples(&["samples/subscriptions.csv", "samples/tickets.csv", "samples/tickets-plus.csv"]);
    assert!(fuzz("CSV reader", &csv, |bytes| read_all(bytes, InputFormat::Csv, dir.path())) > 0);
    let jsonl = samples(&["samples/catalog.jsonl", "samples/catalog-broken.jsonl"]);
    assert!(fuzz("JSONL reader", &jsonl, |bytes| read_all(bytes, InputFormat::Jsonl, dir.path())) > 0);
}

/// A job file, parsed, planned against the sample input, and every row planned.
#[test]
fn fuzz_job_parser() {
    let jobs = samples(&[
        "jobs/catalog-import.toml",
        "jobs/monthly-subscriptions.toml",
        "jobs/event-tickets.toml",
        "jobs/event-tickets-plus.toml",
    ]);
    let root = env!("CARGO_MANIFEST_DIR");
    fuzz("job parser", &jobs, |bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else { return };
        let Ok(spec) = JobSpec::parse(text) else { return };
        let input = spec.input.path.as_ref().map(|p| Path::new(root).join(p));
        let overrides = Overrides {
            input,
            output: Some(std::env::temp_dir().join("linkbatch-fuzz-out.csv")),
            ledger: Some(std::env::temp_dir().join("linkbatch-fuzz-ledger.jsonl")),
            vars: vec![("billing_month".into(), "2026-11".into())],
            ..Overrides::default()
        };
        let Ok((plan, mut reader)) = Plan::new(spec, &overrides) else { return };
        while let Some(record) = reader.next_record() {
            if let Ok(record) = record {
                let _ = plan.row(&record);
            }
        }
    });
}

/// A ledger as a run writes it (intents, links, failures, a refresh), mutated, then read.
#[test]
fn fuzz_ledger_reader() {
    let dir = tempfile::tempdir().unwrap();
    let world = crate::support::World::new();
    world.run_job("jobs/event-tickets.toml", &["--limit", "100/s"]).code(0);
    world.job("refresh", "jobs/event-tickets.toml", &["--limit", "100/s"]).code(0);
    let ledger = std::fs::read(world.path("ledger.jsonl")).unwrap();
    let path = dir.path().join("ledger.jsonl");
    fuzz("ledger reader", &[ledger], |bytes| {
        std::fs::write(&path, bytes).unwrap();
        let _ = Ledger::inspect(&path);
    });
}
