//! What Omise's Links guide documents (docs/reference.md, "What Omise documents"): the account's cap of
//! active links, a breaker for a refusal every row would get, and the Links+ templates a job needs.

use std::fmt::Write as _;

use linkbatch::sandbox::SandboxConfig;

use crate::support::{JobFile, World, count};

/// A catalog of `rows` multiple-use products, as `jobs/catalog-import.toml` reads them.
fn catalog(world: &World, rows: usize) -> String {
    let path = world.path("catalog.csv");
    let mut text = String::from("sku,name,description,price,currency,stock\n");
    for i in 0..rows {
        writeln!(text, "SKU-{i:04},Product {i},A product,{}.00,thb,1", 100 + i).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn a_job_past_the_accounts_cap_is_refused_before_sending() {
    let world = World::with(SandboxConfig { active_links: Some(100), ..SandboxConfig::default() });
    let input = catalog(&world, 150);
    let job = JobFile::sample("catalog-import").add("limits.active_links", 100).write(&world, "capped.toml");
    let ledger = world.path("ledger.jsonl");
    let outcome = world.linkbatch(&["validate", &job, "--input", &input, "--ledger", ledger.to_str().unwrap()]).code(2);
    assert!(
        outcome.stdout.contains("active links:     150 once run (the account holds at most 100)"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome.stderr.contains("would hold 150 active links") && outcome.stderr.contains("50 would be refused"),
        "{}",
        outcome.stderr
    );
    world.run_job(&job, &["--input", &input, "--limit", "1000/s"]).code(2);
    assert_eq!(world.stats().creates, 0, "refused before anything was sent");
}

#[test]
fn the_breaker_stops_a_refusal_every_row_would_get() {
    let world = World::with(SandboxConfig { active_links: Some(100), ..SandboxConfig::default() });
    let input = catalog(&world, 150);
    // The job does not know the cap: the server's refusals past it trip the breaker (default 10).
    let outcome = world
        .run_job("jobs/catalog-import.toml", &["--input", &input, "--limit", "1000/s", "--concurrency", "1"])
        .code(3);
    assert!(
        outcome.stderr.contains("10 creates in a row were refused with `link_limit_reached`"),
        "{}",
        outcome.stderr
    );
    let stats = world.stats();
    assert_eq!(stats.links_held, 100);
    let refused = stats.requests.get("400").copied().unwrap_or(0);
    assert_eq!(refused, 10, "K refusals, not one per row");
    let rows = world.output();
    assert_eq!((count(&rows, "created"), count(&rows, "failed"), count(&rows, "pending")), (100, 10, 40));

    // A smaller breaker from the job stops sooner.
    let world = World::with(SandboxConfig { active_links: Some(5), ..SandboxConfig::default() });
    let input = catalog(&world, 20);
    let job = JobFile::sample("catalog-import").add("retry.breaker", 3).write(&world, "breaker.toml");
    world.run_job(&job, &["--input", &input, "--limit", "1000/s", "--concurrency", "1"]).code(3);
    assert_eq!(world.stats().requests.get("400").copied().unwrap_or(0), 3);
}

/// Regression: with `breaker = 10` at concurrency 4, the creates already in flight when the breaker tripped
/// reached the server too: 14 refusals past the account's cap, not 10.
#[test]
fn the_breaker_counts_what_is_in_flight_at_any_concurrency() {
    for concurrency in ["4", "16"] {
        let world = World::with(SandboxConfig { active_links: Some(100), ..SandboxConfig::default() });
        let input = catalog(&world, 150);
        let args = ["--input", &input, "--limit", "1000/s", "--concurrency", concurrency];
        world.run_job("jobs/catalog-import.toml", &args).code(3);
        let stats = world.stats();
        assert_eq!(stats.links_held, 100, "concurrency {concurrency}");
        let refused = stats.requests.get("400").copied().unwrap_or(0);
        assert_eq!(refused, 10, "concurrency {concurrency}: refusals that reached the server");
        let rows = world.output();
        assert_eq!((count(&rows, "created"), count(&rows, "failed")), (100, 10), "concurrency {concurrency}");
    }
}

#[test]
fn templates_lists_the_teams_templates() {
    let world = World::new();
    let outcome =
        world.linkbatch(&["templates", "jobs/event-tickets-plus.toml", "--base-url", &world.base_url()]).code(0);
    assert!(outcome.stdout.starts_with("team 456: 2 template(s)"), "{}", outcome.stdout);
    assert!(outcome.stdout.contains("123      THB") && outcome.stdout.contains("124      USD"), "{}", outcome.stdout);
    let other = world
        .linkbatch(&["templates", "jobs/event-tickets-plus.toml", "--base-url", &world.base_url(), "--team", "789"])
        .code(0);
    assert!(other.stdout.contains("321      JPY"), "{}", other.stdout);
    world.linkbatch(&["templates", "jobs/event-tickets.toml", "--base-url", &world.base_url()]).code(2);
    assert_eq!(world.stats().creates, 0);
}

/// A classic job with metadata: an invoice-like id per row and the row's key; identical rows included.
fn tagged_job(world: &World, key_in_metadata: bool) -> (String, String) {
    let input = world.path("tiers.csv");
    let rows = "id,tier,event,price,currency,capacity\n1,VIP,Night,10.00,thb,5\n2,VIP,Night,10.00,thb,5\n3,Regular,Night,5.00,thb,9\n";
    std::fs::write(&input, rows).unwrap();
    let job = JobFile::sample("event-tickets")
        .set("input.key", "{id}")
        .add("link.metadata.ticket_id", "T-{id}")
        .add("link.key_in_metadata", key_in_metadata)
        .write(world, "tagged.toml");
    (job, input.to_str().unwrap().to_owned())
}

#[test]
fn metadata_is_held_on_the_link() {
    let world = World::new();
    let (job, input) = tagged_job(&world, true);
    world.run_job(&job, &["--input", &input, "--limit", "100/s"]).code(0);
    let http = world.http();
    let links = http.send(http.classic(reqwest::Method::GET, "/links")).body;
    let mut tickets: Vec<(String, String)> = links["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["metadata"]["ticket_id"].as_str().unwrap().to_owned(),
                l["metadata"]["linkbatch_key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    tickets.sort();
    assert_eq!(tickets, [("T-1".into(), "1".into()), ("T-2".into(), "2".into()), ("T-3".into(), "3".into())]);
}

#[test]
fn a_lost_ledger_is_rebuilt_by_recover() {
    for tagged in [true, false] {
        let world = World::new();
        let (job, input) = tagged_job(&world, tagged);
        let args = ["--input", input.as_str(), "--limit", "100/s"];
        world.run_job(&job, &args).code(0);
        let before = world.output();
        std::fs::remove_file(world.path("ledger.jsonl")).unwrap();
        // Lost: the run refuses, pointing at recover.
        let refused = world.run_job(&job, &args).code(3);
        assert!(refused.stderr.contains("linkbatch recover"), "{}", refused.stderr);
        let recovered = world.job("recover", &job, &args).code(0);
        let how = if tagged {
            "3 recovered (3 by the key"
        } else {
            "3 recovered (0 by the key in their metadata, 3 by content)"
        };
        assert!(recovered.stdout.contains(how), "{}", recovered.stdout);
        world.run_job(&job, &args).code(0);
        assert_eq!(world.stats().creates, 3, "tagged: {tagged}: nothing sent again");
        let after = world.output();
        assert!(after.iter().all(|r| r["status"] == "existing"), "{after:?}");
        if tagged {
            let ids = |rows: &[std::collections::BTreeMap<String, String>]| {
                rows.iter().map(|r| r["link_id"].clone()).collect::<Vec<_>>()
            };
            assert_eq!(ids(&after), ids(&before), "by key, each row has its own link back");
        }
    }
}

#[test]
fn a_description_change_is_updated_in_place_and_an_amount_change_stays_a_conflict() {
    let world = World::new();
    let (job, input) = tagged_job(&world, false);
    let args = ["--input", input.as_str(), "--limit", "100/s"];
    world.run_job(&job, &args).code(0);
    let before = world.output();
    // The description template changes: every row's description, nothing else.
    let changed = JobFile::sample("event-tickets")
        .set("input.key", "{id}")
        .set("link.description", "{tier} ticket for {event}, doors at 7")
        .add("link.metadata.ticket_id", "T-{id}")
        .write(&world, "changed.toml");
    world.run_job(&changed, &args).code(1);
    assert_eq!(count(&world.output(), "conflict"), 3, "without the flag: conflicts");
    world.run_job(&changed, &[&args[..], &["--update-changed"]].concat()).code(0);
    let stats = world.stats();
    assert_eq!((stats.creates, stats.updates), (3, 3), "one PATCH a row and no create");
    let after = world.output();
    assert!(after.iter().zip(&before).all(|(a, b)| a["status"] == "existing" && a["link_id"] == b["link_id"]));
    let http = world.http();
    let link = http.send(http.classic(reqwest::Method::GET, &format!("/links/{}", after[0]["link_id"]))).body;
    assert_eq!(link["description"], "VIP ticket for Night, doors at 7");
    // Again: nothing to do.
    world.run_job(&changed, &[&args[..], &["--update-changed"]].concat()).code(0);
    assert_eq!(world.stats().updates, 3);
    // An amount change is not a change in place: still a conflict, no PATCH, no create.
    std::fs::write(
        &input,
        std::fs::read_to_string(&input).unwrap().replace("3,Regular,Night,5.00", "3,Regular,Night,6.00"),
    )
    .unwrap();
    world.run_job(&changed, &[&args[..], &["--update-changed"]].concat()).code(1);
    let stats = world.stats();
    assert_eq!((stats.creates, stats.updates), (3, 3));
    assert_eq!(world.output()[2]["status"], "conflict");
}

#[test]
fn the_sandbox_changes_description_and_metadata_only() {
    let world = World::new();
    let http = world.http();
    let created = http.create(&[
        ("amount", "1000"),
        ("currency", "thb"),
        ("title", "t"),
        ("description", "d"),
        ("metadata[invoice]", "1"),
    ]);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["metadata"]["invoice"], "1");
    let patch =
        |form: &[(&str, &str)]| http.send(http.classic(reqwest::Method::PATCH, &format!("/links/{id}")).form(form));
    let ok = patch(&[("description", "new"), ("metadata[invoice]", "2")]);
    assert_eq!(
        (ok.status, ok.body["description"].as_str(), ok.body["metadata"]["invoice"].as_str()),
        (200, Some("new"), Some("2"))
    );
    assert_eq!(patch(&[("amount", "5")]).status, 400, "the guide: other fields cannot change");
}

/// `breaker = 10` at concurrency 16 against a server that refuses every create: at most 10 refusals reach
/// it, run after run.
#[test]
fn the_breaker_keeps_its_promise_under_load() {
    for run in 0..20 {
        // Answers that take their time, each its own, some past the client's timeout: refusals heard in any
        // order, and some not heard at all (a refusal whose answer is lost still reached the server).
        let slow = run % 2 == 1;
        let world = World::with(SandboxConfig {
            active_links: Some(0),
            seed: run,
            latency: std::time::Duration::from_millis(if slow { 250 } else { 5 }),
            jitter: std::time::Duration::from_millis(if slow { 100 } else { 40 }),
            ..SandboxConfig::default()
        });
        let input = catalog(&world, 60);
        let job = JobFile::sample("catalog-import")
            .add("api.timeout", "300ms")
            .add("retry.base_delay", "20ms")
            .add("retry.max_delay", "50ms")
            .write(&world, "c.toml");
        let args = ["--input", &input, "--limit", "none", "--concurrency", "16"];
        world.run_job(&job, &args).code(3);
        let refused = world.stats().requests.get("400").copied().unwrap_or(0);
        assert!(refused <= 10, "run {run}: {refused} refusals reached the server");
        assert_eq!(world.stats().creates, 0);
    }
}
