//! What must stop a run, and what must never leak: keys, locks, mismatched ledgers.

use std::collections::BTreeMap;

use linkbatch::ledger::{Header, Ledger, VERSION};

use crate::support::{World, edited, read_csv, requests};

#[test]
fn wrong_key_aborts_after_one_request() {
    let world = World::new();
    let outcome = world
        // A key that does not say its mode runs only with --live (treated as live).
        .run_job("jobs/catalog-import.toml", &["--limit", "none", "--concurrency", "8", "--live"])
        .env("OMISE_SECRET_KEY", "skey-wrong")
        .code(3);
    assert_eq!(outcome.error(), "error: aborted: authentication_failure: authentication failed: unknown secret key");
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
    assert_eq!(
        outcome.error(),
        "error: the key in $OMISE_SECRET_KEY is a public key (pkey_…); link creation needs the secret key (skey_…)"
    );
    let outcome = world.run_job("jobs/catalog-import.toml", &[]).env_remove("OMISE_SECRET_KEY").code(2);
    assert_eq!(
        outcome.error(),
        "error: no secret key: set the environment variable $OMISE_SECRET_KEY (or use --sandbox to try the job without an account)"
    );
    assert_eq!(requests(&world.stats()), 0);
}

#[test]
fn live_key_needs_live_flag() {
    let world = World::new();
    let live = "skey_live_sandboxonly";
    let outcome = world.run_job("jobs/event-tickets.toml", &["--limit", "100/s"]).env("OMISE_SECRET_KEY", live).code(2);
    assert_eq!(
        outcome.error(),
        "error: the key in $OMISE_SECRET_KEY is a live key: it creates real payment links. Pass --live to confirm"
    );
    assert_eq!(requests(&world.stats()), 0);
    world.run_job("jobs/event-tickets.toml", &["--limit", "100/s", "--live"]).env("OMISE_SECRET_KEY", live).code(0);
    assert!(world.output().iter().all(|r| r["link_id"].starts_with("link_") && !r["link_id"].contains("test")));
}

#[test]
fn plain_http_only_on_loopback() {
    let world = World::new();
    let outcome = world.linkbatch(&["run", "jobs/event-tickets.toml", "--base-url", "http://api.example.com"]).code(2);
    assert_eq!(
        outcome.error(),
        "error: base URL `http://api.example.com` must use https:// (plain http is allowed on loopback only)"
    );
}

#[test]
fn a_locked_ledger_stops_a_second_run() {
    let world = World::new();
    let header = Header {
        version: VERSION,
        api: linkbatch::terms::ApiKind::Links,
        base_url: world.base_url(),
        mode: Some(linkbatch::terms::Mode::Test),
        key_hash: "x".into(),
        auth: None,
    };
    let _held = Ledger::open(&world.path("ledger.jsonl"), &header).unwrap();
    let outcome = world.run_job("jobs/event-tickets.toml", &[]).code(3);
    assert_eq!(
        outcome.error(),
        &format!(
            "error: ledger {} is in use by another linkbatch run (it is locked); wait for that run to finish, or stop the job's `linkbatch listen` while this one runs",
            world.path("ledger.jsonl").display()
        )
    );
    assert_eq!(requests(&world.stats()), 0);
}

#[test]
fn a_ledger_from_another_key_or_mode_is_refused() {
    let world = World::new();
    world.run_job("jobs/event-tickets.toml", &["--limit", "100/s"]).code(0);
    let other =
        world.run_job("jobs/event-tickets.toml", &[]).env("OMISE_SECRET_KEY", "skey_test_another_account").code(3);
    assert_eq!(
        other.error(),
        &format!(
            "error: ledger {} was made with a different secret key (another account); this run would use this key. Use another --ledger (or --output) for this run",
            world.path("ledger.jsonl").display()
        )
    );
    let live = world.run_job("jobs/event-tickets.toml", &["--live"]).env("OMISE_SECRET_KEY", "skey_live_x").code(3);
    assert_eq!(
        live.error(),
        format!(
            "error: ledger {} was made with a test-mode key; this run would use a live-mode key. Use another --ledger (or --output) for this run",
            world.path("ledger.jsonl").display()
        )
    );
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
            "--live",
        ])
        .env("OMISE_SECRET_KEY", "SECRETMARKER-wrong")
        .code(3);
    // A slip of the shell puts the key where a flag's value goes; a ledger refused for another key.
    let flags = world.run_job("jobs/event-tickets.toml", &["--var", "=skey_test_SECRETMARKER", "-vv"]).code(2);
    let refused = world
        .run_job("jobs/event-tickets.toml", &["-vv"])
        .env("OMISE_SECRET_KEY", "skey_test_SECRETMARKER_other")
        .code(3);
    let ledger = std::fs::read_to_string(world.path("ledger.jsonl")).unwrap();
    let output = std::fs::read_to_string(world.path("out.csv")).unwrap();
    for (place, text) in [
        ("stderr", &outcome.stderr),
        ("stdout", &outcome.stdout),
        ("json logs", &json.stderr),
        ("401 run", &wrong.stderr),
        ("bad flags", &flags.stderr),
        ("refused ledger", &refused.stderr),
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
    let counts: BTreeMap<&str, &str> = status
        .stdout
        .lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.trim(), v.split_whitespace().next().unwrap_or("")))
        .collect();
    assert_eq!((counts["created"], counts["rejected"], counts["pending"]), ("4", "9", "0"), "{}", status.stdout);
    assert_eq!(requests(&world.stats()), served);
    let _ = read_csv(&world.path("out.csv"));
}

#[test]
fn a_changed_row_is_a_conflict_never_a_second_link() {
    let world = World::new();
    world.run_job("jobs/event-tickets.toml", &["--limit", "100/s"]).code(0);
    let vip_link = world.output().iter().find(|r| r["tier"] == "VIP").unwrap()["link_id"].clone();
    let changed = world.path("tickets.csv");
    std::fs::write(
        &changed,
        edited(
            &std::fs::read_to_string("samples/tickets.csv").unwrap(),
            "VIP,Bangkok Jazz Night 2026,4500.00",
            "VIP,Bangkok Jazz Night 2026,5000.00",
        ),
    )
    .unwrap();
    world.run_job("jobs/event-tickets.toml", &["--input", changed.to_str().unwrap()]).code(1);
    let rows = world.output();
    let vip = rows.iter().find(|r| r["tier"] == "VIP").unwrap();
    assert_eq!((vip["status"].as_str(), vip["link_id"].as_str()), ("conflict", vip_link.as_str()));
    assert!(vip["error_message"].contains("amount 450000 -> 500000"), "{}", vip["error_message"]);
    assert_eq!(rows.iter().filter(|r| r["status"] == "existing").count(), 4);
    assert_eq!(world.stats().creates, 5, "nothing re-created");
    // Both runs wrote their output through a temporary file (the second as a draft while surveying): none is
    // left behind.
    let dir = world.path("out.csv").parent().unwrap().to_owned();
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_corrupt_ledger_line_stops_the_run_and_is_left_alone() {
    let world = World::new();
    world.run_job("jobs/event-tickets.toml", &["--limit", "100/s"]).code(0);
    let path = world.path("ledger.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&path).unwrap().lines().map(str::to_owned).collect();
    lines[2] = "{not json".into();
    let corrupt = lines.join("\n") + "\n";
    std::fs::write(&path, &corrupt).unwrap();
    let outcome = world.run_job("jobs/event-tickets.toml", &[]).code(3);
    assert_eq!(
        outcome.error(),
        &format!(
            "error: ledger {}: line 3 is corrupt (it has no checksum); the file was left untouched — restore it or move it aside",
            world.path("ledger.jsonl").display()
        )
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), corrupt);
    assert_eq!(world.stats().creates, 5);
}

#[test]
fn a_torn_last_line_is_dropped_with_a_warning() {
    let world = World::new();
    world.run_job("jobs/event-tickets.toml", &["--limit", "100/s"]).code(0);
    let path = world.path("ledger.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"type\":\"intent\",\"key\":\"Bang");
    std::fs::write(&path, text).unwrap();
    let outcome = world.run_job("jobs/event-tickets.toml", &[]).code(0);
    assert!(outcome.stderr.contains("torn last line"), "{}", outcome.stderr);
    assert_eq!(world.stats().creates, 5);
}

#[test]
fn sigterm_finishes_in_flight_writes_pending_and_resumes() {
    let world = World::new();
    let (base, output, ledger) = (world.base_url(), world.path("out.csv"), world.path("ledger.jsonl"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_linkbatch"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "jobs/catalog-import.toml", "--base-url", &base, "--limit", "10/s"])
        .args(["--output", output.to_str().unwrap(), "--ledger", ledger.to_str().unwrap()])
        .env("OMISE_SECRET_KEY", &world.key)
        .env("CI", "true")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let rows = read_csv(&output);
    let created = rows.iter().filter(|r| r["status"] == "created").count();
    let pending = rows.iter().filter(|r| r["status"] == "pending").count();
    assert!(created >= 5 && pending >= 30 && created + pending == 60, "created {created}, pending {pending}");
    assert_eq!(world.stats().links_held, created, "every request in flight was recorded");
    world.run_job("jobs/catalog-import.toml", &["--limit", "100/s"]).code(0);
    let stats = world.stats();
    assert_eq!((stats.links_held, stats.identical_extra), (60, 0));
    let status = world.linkbatch(&["status", "jobs/catalog-import.toml", "--ledger", ledger.to_str().unwrap()]).code(0);
    assert!(status.stdout.contains(&format!("created:   {}", 60 - created)), "{}", status.stdout);
    assert!(status.stdout.contains(&format!("existing:  {created}")), "{}", status.stdout);
}
