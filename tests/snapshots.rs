//! What a user reads, held as `insta` snapshots (`tests/snapshots/`): the help, `validate` and `status`
//! reports, and the output CSV. A change to any of them shows up as a diff to review, not as a test that
//! quietly passes. The sandbox's seed is fixed and the run goes one request at a time, so link ids are the
//! same every time; the sandbox's port and the scratch directory are replaced by fixed names.

use linkbatch::sandbox::SandboxConfig;

use crate::support::World;

/// `text` with this world's changing names (port, scratch directory) replaced by fixed ones.
fn steady(world: &World, text: &str) -> String {
    text.replace(&world.base_url(), "http://SANDBOX").replace(world.dir.path().to_str().unwrap(), "SCRATCH")
}

#[test]
fn help() {
    let world = World::new();
    insta::assert_snapshot!("help", world.linkbatch(&["--help"]).code(0).stdout);
    insta::assert_snapshot!("help_run", world.linkbatch(&["run", "--help"]).code(0).stdout);
}

#[test]
fn validate_reports_counts_eta_and_rejected_rows() {
    let world = World::new();
    let ledger = world.path("ledger.jsonl");
    let args = ["validate", "jobs/catalog-import.toml", "--ledger", ledger.to_str().unwrap()];
    insta::assert_snapshot!("validate_catalog", world.linkbatch(&args).code(0).stdout);
    let broken = [&args[..], &["--input", "samples/catalog-broken.jsonl"]].concat();
    insta::assert_snapshot!("validate_catalog_broken", world.linkbatch(&broken).code(1).stdout);
}

#[test]
fn output_csv_and_status_after_a_run_and_a_change() {
    let world = World::with(SandboxConfig { seed: 2026, ..SandboxConfig::default() });
    let one_at_a_time = ["--limit", "100/s", "--concurrency", "1"];
    world.run_job("jobs/event-tickets.toml", &one_at_a_time).code(0);
    let output = std::fs::read_to_string(world.path("out.csv")).unwrap();
    insta::assert_snapshot!("output_event_tickets", steady(&world, &output));

    // The VIP tier's price changed: a conflict, the rest existing.
    let changed = world.path("tickets.csv");
    let text = std::fs::read_to_string("samples/tickets.csv").unwrap();
    std::fs::write(
        &changed,
        crate::support::edited(&text, "VIP,Bangkok Jazz Night 2026,4500.00", "VIP,Bangkok Jazz Night 2026,5000.00"),
    )
    .unwrap();
    let input = ["--input", changed.to_str().unwrap()];
    world.run_job("jobs/event-tickets.toml", &[&one_at_a_time[..], &input].concat()).code(1);
    let output = std::fs::read_to_string(world.path("out.csv")).unwrap();
    insta::assert_snapshot!("output_event_tickets_conflict", steady(&world, &output));

    let ledger = world.path("ledger.jsonl");
    let status = world
        .linkbatch(&[&["status", "jobs/event-tickets.toml", "--ledger", ledger.to_str().unwrap()][..], &input].concat())
        .code(0);
    insta::assert_snapshot!("status_event_tickets_conflict", steady(&world, &status.stdout));
}
