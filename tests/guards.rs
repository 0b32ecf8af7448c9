//! What must stop a run, and what must never leak: keys, locks, mismatched ledgers.

use std::collections::BTreeMap;

use linkbatch::ledger::{Header, Ledger, VERSION};

use crate::support::{World, read_csv, requests};

#[test]
fn wrong_key_aborts_after_one_request() {
    let world = World::new();
    let outcome = world
        .run_job("jobs/catalog-import.toml", &["--limit", "none", "--concurrency", "8"])
        .env("OMISE_SECRET_KEY", "skey-wrong")
        .code(3);
    assert!(outcome.stderr.contains("authentication_failure"), "{}", outcome.stderr);
    let stats = world.stats();
    assert_eq!(requests(&stats), 1, "{:?}", stats.requests);
    assert_eq!(stats.requests["401"], 1);
    // The output still says where every row stands.
    let rows = world.output();
    assert_eq!(rows.len(), 60);
    assert_eq!(rows.iter().filter(|r| r["status"] == "pending").count(), 59);
}

#[test]
fn public_key_is_refused_before_any_request() {
    let world = World::new();
    let outcome = world.run_job("jobs/catalog-import.toml", &[]).env("OMISE_SECRET_KEY", "pkey_test_public").code(2);
    assert!(outcome.stderr.contains("public key"), "{}", outcome.stderr);
    let outcome = world.run_job("jobs/catalog-import.toml", &[]).env_remove("OMISE_SECRET_KEY").code(2);
    assert!(outcome.stderr.contains("OMISE_SECRET_KEY"), "{}", outcome.stderr);
    assert_eq!(requests(&world.stats()), 0);
}

#[test]
fn live_key_needs_live_flag() {
    let world = World::new();
    let live = "skey_live_sandboxonly";
    let outcome = world.run_job("jobs/event-tickets.toml", &["--limit", "100/s"]).env("OMISE_SECRET_KEY", live).code(2);
    assert!(outcome.stderr.contains("--live"), "{}", outcome.stderr);
    assert_eq!(requests(&world.stats()), 0);
    world.run_job("jobs/event-tickets.toml", &["--limit", "100/s", "--live"]).env("OMISE_SECRET_KEY", live).code(0);
    assert!(world.output().iter().all(|r| r["link_id"].starts_with("link_") && !r["link_id"].contains("test")));
}

#[test]
fn plain_http_only_on_loopback() {
    let world = World::new();
    let outcome = world.linkbatch(&["run", "jobs/event-tickets.toml", "--base-url", "http://api.example.com"]).code(2);
    assert!(outcome.stderr.contains("https"), "{}", outcome.stderr);
}

#[test]
fn a_locked_ledger_stops_a_second_run() {
    let world = World::new();
    let header = Header {
        version: VERSION,
        api: "links".into(),
        base_url: world.base_url(),
        mode: "test".into(),
        key_hash: "x".into(),
    };
    let _held = Ledger::open(&world.path("ledger.jsonl"), &header).unwrap();
    let outcome = world.run_job("jobs/event-tickets.toml", &[]).code(3);
    assert!(outcome.stderr.contains("in use by another linkbatch run"), "{}", outcome.stderr);
    assert_eq!(requests(&world.stats()), 0);
}

#[test]
fn a_ledger_from_another_key_or_mode_is_refused() {
    let world = World::new();
    world.run_job("jobs/event-tickets.toml", &["--limit", "100/s"]).code(0);
    let other =
        world.run_job("jobs/event-tickets.toml", &[]).env("OMISE_SECRET_KEY", "skey_test_another_account").code(3);
    assert!(other.stderr.contains("different secret key"), "{}", other.stderr);
    let live = world.run_job("jobs/event-tickets.toml", &["--live"]).env("OMISE_SECRET_KEY", "skey_live_x").code(3);
    assert!(live.stderr.contains("test-mode"), "{}", live.stderr);
    assert_eq!(world.stats().creates, 5);
}

#[test]
fn the_secret_key_appears_nowhere() {
    let mut world = World::new();
    world.key = "skey_test_SECRETMARKER".to_owned();
    let outcome = world.run_job("jobs/event-tickets.toml", &["--limit", "100/s", "-vv"]).code(0);
    let json = world.run_job("jobs/event-tickets.toml", &["--log-format", "json", "-vv"]).code(0);
    let (base, other_ledger) = (world.base_url(), world.path("l2.jsonl"));
    let wrong = world
        .linkbatch(&[
            "run",
            "jobs/event-tickets.toml",
            "--base-url",
            &base,
            "--ledger",
            other_ledger.to_str().unwrap(),
            "-vv",
        ])
        .env("OMISE_SECRET_KEY", "SECRETMARKER-wrong")
        .code(3);
    let ledger = std::fs::read_to_string(world.path("ledger.jsonl")).unwrap();
    let output = std::fs::read_to_string(world.path("out.csv")).unwrap();
    for (place, text) in [
        ("stderr", &outcome.stderr),
        ("stdout", &outcome.stdout),
        ("json logs", &json.stderr),
        ("401 run", &wrong.stderr),
        ("ledger", &ledger),
        ("output", &output),
    ] {
        assert!(!text.contains("SECRETMARKER"), "the key leaked into {place}:\n{text}");
    }
}

#[test]
fn status_counts_without_requests() {
    let world = World::new();
    world.run_job("jobs/catalog-import.toml", &["--input", "samples/catalog-broken.jsonl", "--limit", "100/s"]).code(1);
    let served = requests(&world.stats());
    let ledger = world.path("ledger.jsonl");
    let status = world
        .linkbatch(&[
            "status",
            "jobs/catalog-import.toml",
            "--input",
            "samples/catalog-broken.jsonl",
            "--ledger",
            ledger.to_str().unwrap(),
        ])
        .code(0);
    let counts: BTreeMap<&str, &str> =
        status.stdout.lines().filter_map(|l| l.trim().split_once(':')).map(|(k, v)| (k.trim(), v.trim())).collect();
    assert_eq!((counts["created"], counts["rejected"], counts["pending"]), ("4", "9", "0"), "{}", status.stdout);
    assert_eq!(requests(&world.stats()), served);
    let _ = read_csv(&world.path("out.csv"));
}
