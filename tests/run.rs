//! `linkbatch run`, `validate` and `status` on each sample job, as a new user would use them.

use std::time::Duration;

use linkbatch::sandbox::{FaultKind, SandboxConfig};

use crate::support::{JobFile, World, count, faults, requests, statuses};

#[test]
fn catalog_import_validate_run_and_run_again() {
    let world = World::new();
    let validated = world
        .linkbatch(&["validate", "jobs/catalog-import.toml", "--ledger", world.path("ledger.jsonl").to_str().unwrap()])
        .code(0);
    assert!(validated.stdout.contains("new:              60"), "{}", validated.stdout);
    assert_eq!(requests(&world.stats()), 0, "validate sends nothing");

    world.run_job("jobs/catalog-import.toml", &["--limit", "100/s"]).code(0);
    let rows = world.output();
    assert_eq!(rows.len(), 60);
    assert_eq!(count(&rows, "created"), 60);
    let stats = world.stats();
    assert_eq!((stats.links_held, stats.creates, stats.identical_extra), (60, 60, 0));
    // Input order, major units converted exactly, extra columns copied.
    assert_eq!(rows[0]["key"], "SKU-0001");
    assert_eq!(rows[0]["line"], "1");
    assert_eq!(rows[0]["sku"], "SKU-0001");
    assert!(
        rows.iter().all(|r| r["payment_uri"].starts_with(&world.base_url()) && r["link_id"].starts_with("link_test_"))
    );
    // JPY has no minor unit: the sample's "2024" yen is 2024, never 202400 (regression: the old check here
    // passed for 202400 too).
    let jpy = rows.iter().find(|r| r["currency"] == "jpy").unwrap();
    assert_eq!((jpy["key"].as_str(), jpy["amount"].as_str()), ("SKU-0005", "2024"));

    // Again: nothing sent at all, every row reported as existing with the same link.
    let served = requests(&world.stats());
    world.run_job("jobs/catalog-import.toml", &["--limit", "100/s"]).code(0);
    assert_eq!(requests(&world.stats()), served, "a finished job sends no request");
    let again = world.output();
    assert_eq!(count(&again, "existing"), 60);
    assert_eq!(
        again.iter().map(|r| &r["link_id"]).collect::<Vec<_>>(),
        rows.iter().map(|r| &r["link_id"]).collect::<Vec<_>>()
    );
    let status = world
        .linkbatch(&["status", "jobs/catalog-import.toml", "--ledger", world.path("ledger.jsonl").to_str().unwrap()])
        .code(0);
    let counts: Vec<&str> = status.stdout.lines().skip(1).take(2).collect();
    assert_eq!(counts, ["  created:    0   (by the latest run)", "  existing:  60   (by earlier runs)"]);
}

#[test]
fn monthly_subscriptions_one_link_per_subscription_and_month() {
    let world = World::new();
    let month = |m: &str| {
        world.run_job("jobs/monthly-subscriptions.toml", &["--var", &format!("billing_month={m}"), "--limit", "100/s"])
    };
    // Without the month the job cannot be planned: nothing is sent.
    world.run_job("jobs/monthly-subscriptions.toml", &[]).code(2);
    month("2026-11").code(0);
    assert_eq!(world.stats().creates, 24);
    let rows = world.output();
    assert_eq!(rows[0]["key"], "SUB-1001:2026-11");
    assert_eq!(rows[0]["title"], "Standard plan - 2026-11");
    assert_eq!(rows[0]["customer_email"], "nattaya.wongsakul@example.co.th");
    month("2026-11").code(0);
    assert_eq!(world.stats().creates, 24, "the same month again creates nothing");
    month("2026-12").code(0);
    assert_eq!(world.stats().creates, 48, "next month is a new round");
    assert_eq!(world.stats().identical_extra, 0);
}

#[test]
fn event_tickets_classic_and_links_plus() {
    let world = World::new();
    world.run_job("jobs/event-tickets.toml", &["--limit", "100/s"]).code(0);
    let rows = world.output();
    assert_eq!(statuses(&rows)["created"], 5);
    assert_eq!(rows.iter().find(|r| r["tier"] == "VIP").unwrap()["amount"], "450000");

    let plus = World::new();
    plus.run_job("jobs/event-tickets-plus.toml", &["--limit", "100/s"]).code(0);
    let rows = plus.output();
    assert_eq!(count(&rows, "created"), 3);
    assert!(rows.iter().all(|r| r["payment_uri"].contains("/pay/plus/")), "payment_url lands in payment_uri");
    assert_eq!(plus.stats().plus_links, 3);
    plus.run_job("jobs/event-tickets-plus.toml", &["--limit", "100/s"]).code(0);
    assert_eq!(plus.stats().creates, 3);
}

#[test]
fn links_plus_wrong_template_creates_nothing() {
    let world = World::new();
    let job = JobFile::sample("event-tickets-plus").set("link.template_id", 321).write(&world, "wrong.toml");
    let outcome = world.run_job(&job, &[]).code(2);
    assert_eq!(
        outcome.error(),
        "error: [link] template_id 321 belongs to team 789, not to team_id 456; nothing was created"
    );
    let job = JobFile::sample("event-tickets-plus")
        .set("link.custom_webhook", "http://tickets.example.com/hooks/omise")
        .write(&world, "http.toml");
    let outcome = world.run_job(&job, &[]).code(2);
    assert_eq!(
        outcome.error(),
        "error: [link] custom_webhook `http://tickets.example.com/hooks/omise` must be an https:// URL with a host"
    );
    assert_eq!(world.stats().creates, 0);
}

#[test]
fn broken_input_rejects_rows_by_line_and_runs_the_rest() {
    let world = World::new();
    let outcome = world
        .run_job("jobs/catalog-import.toml", &["--input", "samples/catalog-broken.jsonl", "--limit", "100/s"])
        .code(1);
    let summary = outcome.stderr.lines().last().unwrap();
    assert!(summary.starts_with("13 rows: 4 created, 9 rejected in "), "{summary}");
    let rows = world.output();
    assert_eq!(rows.len(), 13);
    assert_eq!(count(&rows, "created"), 4);
    assert_eq!(world.stats().creates, 4);
    let by_line = |line: &str| rows.iter().find(|r| r["line"] == line).unwrap().clone();
    assert_eq!((by_line("2")["status"].as_str(), by_line("2")["error_code"].as_str()), ("rejected", "invalid_amount"));
    assert_eq!(by_line("3")["error_code"], "invalid_currency");
    assert_eq!(
        by_line("4")["error_message"],
        "amount `9.999` has more decimals than usd allows (2); it is never rounded"
    );
    assert_eq!(by_line("6")["error_code"], "invalid_title");
    let messages = ["8", "9", "12"].map(|line| by_line(line)["error_message"].clone());
    assert_eq!(
        messages,
        [
            "malformed JSON: EOF while parsing a value at line 1 column 51",
            "duplicate key `SKU-B001`: an earlier row has the same key",
            "line is not valid UTF-8"
        ]
    );
    // A title a spreadsheet would run as a formula is neutralised in the output.
    assert!(by_line("10")["title"].starts_with("'="), "{:?}", by_line("10"));
}

#[test]
fn limits_and_faults_end_with_one_link_per_row() {
    let world = World::with(SandboxConfig {
        limits: vec!["40/s".parse().unwrap()],
        faults: faults(&[
            (FaultKind::ServerErrorBefore, 0.08),
            (FaultKind::ServerErrorAfter, 0.05),
            (FaultKind::RateLimited, 0.05),
            (FaultKind::DropAfterCommit, 0.05),
            (FaultKind::SlowAfter, 0.03),
        ]),
        seed: 11,
        slow_delay: Duration::from_secs(3),
        ..Default::default()
    });
    let job = JobFile::sample("catalog-import")
        .add("retry.attempts", 12)
        .add("retry.base_delay", "50ms")
        .add("retry.max_delay", "300ms")
        .add("api.timeout", "1s")
        .write(&world, "catalog.toml");
    world.run_job(&job, &["--limit", "40/s"]).code(0);
    let stats = world.stats();
    let rows = world.output();
    assert_eq!(count(&rows, "created"), 60, "{:?}", statuses(&rows));
    assert_eq!(stats.links_held, 60, "exactly one link per row: {stats:?}");
    assert_eq!(stats.identical_extra, 0);
    assert_eq!(stats.rate_limited, 0, "the throttle keeps inside the server's window");
    assert!(stats.faults.values().sum::<u64>() > 5, "faults were served: {:?}", stats.faults);
    // Every link in the output is one the sandbox holds.
    let held: std::collections::BTreeSet<_> = stats.links_per_title.keys().cloned().collect();
    assert!(rows.iter().all(|r| held.contains(&r["title"])));
}

#[test]
fn a_429_pauses_every_worker() {
    // The job does not know the server's limit: only 429s and Retry-After teach it.
    let world = World::with(SandboxConfig { limits: vec!["10/s".parse().unwrap()], ..Default::default() });
    world.run_job("jobs/catalog-import.toml", &["--limit", "none", "--concurrency", "4"]).code(0);
    let stats = world.stats();
    assert_eq!(stats.links_held, 60);
    // Each pause can meet at most the requests already in flight (4); 60 rows at 10/s need about six windows.
    assert!(stats.rate_limited <= 4 * 7, "429s served: {}", stats.rate_limited);
}

#[test]
fn links_plus_auth_schemes_and_templates_per_row() {
    for auth in ["basic", "raw", "bearer"] {
        let world = World::new();
        let job = JobFile::sample("event-tickets-plus").add("api.auth", auth).write(&world, "plus.toml");
        world.run_job(&job, &["--limit", "100/s"]).code(0);
        assert_eq!(world.stats().plus_links, 3, "auth = {auth}");
    }
    // A template per row: every one is checked before the first create.
    let world = World::new();
    let input = world.path("tiers.csv");
    std::fs::write(&input, "tier,price,template\nA,10.00,123\nB,20.00,124\nC,30.00,999\n").unwrap();
    let job = JobFile::sample("event-tickets-plus")
        .set("link.template_id", "{template}")
        .set("link.name", "{tier}")
        .set("input.key", "{tier}")
        .set("output.columns", vec!["tier"])
        .write(&world, "per-row.toml");
    let outcome = world.run_job(&job, &["--input", input.to_str().unwrap()]).code(2);
    assert_eq!(
        outcome.error(),
        "error: [link] template_id 999 was not found (list your team's templates: GET /external/456/templates); nothing was created"
    );
    assert_eq!(world.stats().creates, 0);
    std::fs::write(&input, "tier,price,template\nA,10.00,123\nB,20.00,124\n").unwrap();
    world.run_job(&job, &["--input", input.to_str().unwrap(), "--limit", "100/s"]).code(0);
    assert_eq!(world.stats().plus_links, 2);
}
