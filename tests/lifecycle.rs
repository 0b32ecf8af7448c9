//! A link's life (issue 30): `[lifecycle]` ends links as the business says, on a sandbox that holds at most
//! so many active links per key as a standard account does. Months pass on the sandbox's own clock
//! (`POST /__sandbox/clock`), so `expire_after` keeps its real value and no test sleeps a month.

use std::collections::BTreeMap;

use linkbatch::sandbox::{FaultKind, SandboxConfig};
use reqwest::Method;

use crate::support::{JobFile, World, count, faults, statuses};

const DAY_MS: i64 = 24 * 3_600_000;

fn pay(world: &World, link_id: &str) -> u16 {
    let http = world.http();
    http.send(http.request(Method::POST, &format!("/__sandbox/links/{link_id}/pay"))).status
}

fn move_clock(world: &World, offset_ms: i64) {
    let http = world.http();
    let moved = http.send(http.request(Method::POST, &format!("/__sandbox/clock?offset={offset_ms}ms")));
    assert_eq!(moved.status, 200, "{:?}", moved.body);
}

fn monthly(world: &World) -> String {
    JobFile::sample("monthly-subscriptions")
        .set("lifecycle.expire_after", "30d")
        .set("retry.base_delay", "20ms")
        .set("retry.max_delay", "100ms")
        .write(world, "monthly.toml")
}

/// The monthly job for twelve months in a row under a cap of 100 active links: each month `run --retire`,
/// then about 60% of the new links paid, then the sandbox's clock a month on.
#[test]
fn twelve_months_stay_under_the_cap() {
    let world = World::with(SandboxConfig { active_links: Some(100), ..Default::default() });
    // The job knows the account's cap too: each month's run counts the ledger's earlier links against it.
    let job = JobFile::sample("monthly-subscriptions")
        .set("lifecycle.expire_after", "30d")
        .add("limits.active_links", 100)
        .write(&world, "monthly.toml");
    let mut offset = 0;
    let mut paid_total = 0;
    for month in 1..=12 {
        let var = format!("billing_month=2026-{month:02}");
        let outcome = world.run_job(&job, &["--retire", "--var", &var, "--limit", "200/s"]).run();
        assert_eq!(outcome.code, 0, "month {month}\n{}", outcome.stderr);
        let rows = world.output();
        assert_eq!(count(&rows, "created"), 24, "month {month}: {:?}", statuses(&rows));
        for (i, row) in rows.iter().enumerate() {
            if i % 5 < 3 {
                assert_eq!(pay(&world, &row["link_id"]), 200, "month {month}");
                paid_total += 1;
            }
        }
        let stats = world.stats();
        assert!(stats.deletes.active <= 100, "month {month}: {} active", stats.deletes.active);
        assert_eq!(stats.deletes.paid_single_use, 0, "month {month}: a paid link was deleted");
        assert_eq!(stats.deletes.asked_twice, 0, "month {month}");
        offset += 31 * DAY_MS;
        move_clock(&world, offset);
    }
    let stats = world.stats();
    // Every month's unpaid links (24 - 15 = 9 a month) but the last month's were retired.
    assert_eq!(stats.deleted_links, 11 * 9, "{:?}", stats.deletes);
    assert_eq!(paid_total, 12 * 15);
    let retired = world.ledger_events("retired");
    assert_eq!(retired.len(), 99);
    assert!(retired.iter().all(|e| e["reason"] == "expired"), "{retired:?}");
}

/// Without `--retire`, unpaid links are never ended: with none of them paid, four months hold 96 active
/// links and the fifth meets the cap after 4 creates, exit 3 (issue 30's measurement, kept as why the rules exist).
#[test]
fn without_retire_the_cap_fills_in_month_five() {
    let world = World::with(SandboxConfig { active_links: Some(100), ..Default::default() });
    let job = monthly(&world);
    let mut codes = Vec::new();
    for month in 1..=5 {
        let var = format!("billing_month=2026-{month:02}");
        codes.push(world.run_job(&job, &["--var", &var, "--limit", "200/s"]).run().code);
        move_clock(&world, i64::from(month) * 31 * DAY_MS);
    }
    assert_eq!(codes, [0, 0, 0, 0, 3], "the fifth month meets the cap (the breaker stops it)");
    assert_eq!(count(&world.output(), "created"), 4);
}

fn catalog(world: &World, input: &str) -> (String, String) {
    let job = JobFile::sample("catalog-import").add("lifecycle.prune", true).write(world, "catalog.toml");
    let path = world.path(input);
    (job, path.to_str().unwrap().to_owned())
}

/// Three products removed from the catalog: exactly their three links deleted; one put back: a new link.
#[test]
fn pruned_products_lose_their_links_and_one_put_back_gets_a_new_one() {
    let world = World::new();
    let lines: Vec<String> =
        std::fs::read_to_string("jobs/../samples/catalog.jsonl").unwrap().lines().map(str::to_owned).collect();
    let (job, input) = catalog(&world, "catalog.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    world.run_job(&job, &["--input", &input, "--limit", "200/s"]).code(0);
    let before: BTreeMap<String, String> =
        world.output().into_iter().map(|r| (r["key"].clone(), r["link_id"].clone())).collect();
    let removed = [&lines[3], &lines[10], &lines[20]];
    let kept: Vec<String> = lines.iter().filter(|l| !removed.contains(l)).cloned().collect();
    std::fs::write(&input, kept.join("\n") + "\n").unwrap();
    // `validate` says what a retire would do, before anything is read or sent.
    let ledger = world.path("ledger.jsonl");
    let validate =
        world.linkbatch(&["validate", &job, "--input", &input, "--ledger", ledger.to_str().unwrap()]).code(0);
    let due = validate.stdout.lines().find(|l| l.trim_start().starts_with("to retire now:"));
    assert_eq!(
        due.map(str::trim),
        Some("to retire now:    3 (3 pruned) as the ledger last saw them (`linkbatch retire` reads the server first)"),
        "{}",
        validate.stdout
    );
    assert_eq!(world.stats().deletes.requests, 0);
    let retired = world.job("retire", &job, &["--input", &input, "--limit", "200/s"]).code(0);
    assert!(retired.stderr.contains("retired 3 links (3 pruned)"), "{}", retired.stderr);
    let stats = world.stats();
    assert_eq!((stats.deleted_links, stats.deletes.requests), (3, 3));
    let gone: Vec<String> = world.ledger_events("retired").iter().map(|e| e["key"].as_str().unwrap().into()).collect();
    assert_eq!(gone.len(), 3);
    // Nothing else was touched, and the kept rows still have their links.
    let after = world.output();
    assert_eq!(count(&after, "existing"), before.len() - 3, "{:?}", statuses(&after));

    // One product back: a new link for it, and the other two stay retired.
    let mut back = kept.clone();
    back.push(removed[0].clone());
    std::fs::write(&input, back.join("\n") + "\n").unwrap();
    world.run_job(&job, &["--input", &input, "--limit", "200/s"]).code(0);
    let rows = world.output();
    let returned = rows.iter().find(|r| gone.contains(&r["key"]) && r["status"] == "created").expect("a new link");
    assert_ne!(returned["link_id"], before[&returned["key"]], "a new link, not the deleted one");
    assert_eq!(world.stats().creates as usize, before.len() + 1);
    world.job("retire", &job, &["--input", &input, "--limit", "200/s"]).code(0);
    assert_eq!(world.stats().deleted_links, 3, "a second retire deletes nothing more");
}

/// A tier with capacity 30 paid 40 times, `retire` run after every 5 payments: the link is retired once the
/// 30th lands, the sandbox refuses every payment after, and the output says `sold_out`.
#[test]
fn a_sold_out_tier_is_retired_and_takes_no_more_payments() {
    let world = World::new();
    let input = world.path("tickets.csv");
    std::fs::write(&input, "event,tier,price,currency,capacity\nGala,Standard,500.00,thb,30\nGala,VIP,900.00,thb,5\n")
        .unwrap();
    let input = input.to_str().unwrap().to_owned();
    let job = JobFile::sample("event-tickets").set("lifecycle.capacity", "{capacity}").write(&world, "tickets.toml");
    world.run_job(&job, &["--input", &input, "--limit", "200/s"]).code(0);
    let link = world.output().iter().find(|r| r["tier"] == "Standard").unwrap()["link_id"].clone();
    let (mut landed, mut refused) = (0, 0);
    for n in 1..=40 {
        match pay(&world, &link) {
            200 => landed += 1,
            _ => refused += 1,
        }
        if n % 5 == 0 {
            world.job("retire", &job, &["--input", &input, "--limit", "200/s"]).code(0);
        }
    }
    assert_eq!((landed, refused), (30, 10), "retired at the 30th, checked every 5 payments");
    let rows = world.output();
    let standard = rows.iter().find(|r| r["tier"] == "Standard").unwrap();
    assert_eq!((standard["status"].as_str(), standard["retired_reason"].as_str()), ("retired", "sold_out"));
    assert!(!standard["retired_at"].is_empty());
    let vip = rows.iter().find(|r| r["tier"] == "VIP").unwrap();
    assert_eq!(vip["status"], "existing", "an unsold tier is untouched");
    // A retired row is never sent again.
    world.run_job(&job, &["--input", &input, "--limit", "200/s"]).code(0);
    assert_eq!(world.stats().creates, 2);
}

/// Deletes whose answers are lost (the delete made, then the connection dropped or a 500 sent) are
/// confirmed by a read and never sent twice; a retire run again until nothing is left deletes each once.
#[test]
fn lost_delete_answers_are_confirmed_never_sent_twice() {
    let world = World::with(SandboxConfig {
        faults: faults(&[(FaultKind::DropAfterCommit, 0.2), (FaultKind::ServerErrorAfter, 0.2)]),
        seed: 30,
        ..Default::default()
    });
    let job = JobFile::sample("catalog-import")
        .add("lifecycle.expire_after", "1d")
        .add("retry.attempts", 12)
        .add("retry.base_delay", "10ms")
        .add("retry.max_delay", "50ms")
        .add("api.timeout", "1s")
        .write(&world, "catalog.toml");
    world.run_job(&job, &["--limit", "500/s"]).code(0);
    let made = world.stats().links_held;
    let lost_making: u64 = world.stats().faults.values().sum();
    move_clock(&world, 2 * DAY_MS);
    let mut runs = 0;
    while world.stats().deleted_links < made && runs < 5 {
        world.job("retire", &job, &["--limit", "500/s"]).run();
        runs += 1;
    }
    let stats = world.stats();
    assert_eq!(stats.deleted_links, made, "{:?}", stats.deletes);
    assert_eq!(stats.deletes.asked_twice, 0, "a delete that landed was never sent again: {:?}", stats.deletes);
    assert!(stats.faults.values().sum::<u64>() > lost_making, "delete answers were lost: {:?}", stats.faults);
    assert_eq!(world.ledger_events("retired").len(), made);
    let again = world.job("retire", &job, &["--limit", "500/s"]).code(0);
    assert!(again.stderr.contains("retired 0 links of 0 read"), "{}", again.stderr);
}

/// Payment Links+ has no API to end a link: a Links+ job with `[lifecycle]` is refused when it is read.
#[test]
fn links_plus_with_a_lifecycle_is_refused_before_anything_is_sent() {
    let world = World::new();
    let job = JobFile::sample("event-tickets-plus").add("lifecycle.expire_after", "30d").write(&world, "plus.toml");
    let refused = world.run_job(&job, &[]).code(2);
    assert!(refused.stderr.contains("[lifecycle] needs the classic Links API"), "{}", refused.stderr);
    assert_eq!(crate::support::requests(&world.stats()), 0);
}

/// `retire` of 300 expired links, `SIGKILLed` at random moments against a sandbox that drops connections
/// after a delete and answers 500 after one, then run until it ends: every link deleted once, never asked
/// twice, every one recorded `retired`, and a retire run again sends nothing.
#[test]
fn retire_killed_at_random_moments_deletes_each_link_once() {
    use rand::{Rng, SeedableRng};
    let world = World::with(SandboxConfig {
        faults: faults(&[(FaultKind::DropAfterCommit, 0.06), (FaultKind::ServerErrorAfter, 0.05)]),
        seed: 300,
        ..Default::default()
    });
    let rows: String = std::iter::once("id,title,amount\n".to_owned())
        .chain((0..300).map(|i| format!("K{i:03},Item {i},{}\n", 1000 + i)))
        .collect();
    std::fs::write(world.path("rows.csv"), rows).unwrap();
    let job = format!(
        "name = \"ends\"\n[api]\nkind = \"links\"\ntimeout = \"400ms\"\n[input]\npath = \"{}\"\nkey = \"{{id}}\"\n\
         [link]\namount = \"{{amount}}\"\namount_unit = \"minor\"\ntitle = \"{{title}}\"\ndescription = \"{{title}}\"\ncurrency = \"thb\"\n\
         [limits]\nrates = []\nconcurrency = 8\n[retry]\nattempts = 30\nbase_delay = \"10ms\"\nmax_delay = \"100ms\"\n\
         [lifecycle]\nexpire_after = \"30d\"\n",
        world.path("rows.csv").display()
    );
    let job_path = world.path("ends.toml");
    std::fs::write(&job_path, job).unwrap();
    let job = job_path.to_str().unwrap();
    let made = (0..5).map(|_| world.job("run", job, &["-q"]).run().code).position(|code| code == 0);
    assert!(made.is_some(), "the 300 links are made");
    assert_eq!(world.stats().links_held, 300);
    let lost_making: u64 = world.stats().faults.values().sum();
    move_clock(&world, 31 * DAY_MS);

    let mut rng = rand::rngs::StdRng::seed_from_u64(300);
    let mut kills = 0;
    while kills < 12 {
        let mut child = world.job("retire", job, &["-q"]).command_for_spawn().spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.random_range(20..250)));
        let ended = child.try_wait().unwrap().is_some();
        if !ended {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        if ended {
            break;
        }
    }
    let finished = (0..5).any(|_| world.job("retire", job, &["-q"]).run().code == 0);
    let stats = world.stats();
    assert!(finished && kills > 0, "{kills} kills, then a retire that ends 0: {finished}");
    assert_eq!(stats.deleted_links, 300, "{:?}", stats.deletes);
    assert_eq!(stats.deletes.asked_twice, 0, "a delete that landed was never sent again: {:?}", stats.deletes);
    let lost_retiring = stats.faults.values().sum::<u64>() - lost_making;
    assert!(lost_retiring > 0, "delete answers were lost: {:?}", stats.faults);
    let retired: std::collections::BTreeSet<String> =
        world.ledger_events("retired").iter().map(|e| e["key"].as_str().unwrap().to_owned()).collect();
    assert_eq!(retired.len(), 300, "every retired row recorded once");
    assert_eq!(world.ledger_events("retired").len(), 300);
    let before = crate::support::requests(&world.stats());
    let again = world.job("retire", job, &[]).code(0);
    assert!(again.stderr.contains("retired 0 links of 0 read"), "{}", again.stderr);
    assert_eq!(crate::support::requests(&world.stats()), before, "a retire run again sends nothing");
    let out = world.output();
    assert_eq!(count(&out, "retired"), 300, "{:?}", statuses(&out));
    eprintln!("{kills} kills; {lost_retiring} delete answers lost; {:?}", stats.deletes);
}

/// The way out of `conflict_paid` (docs/reference.md, "A link's life"): a row changed after its link was
/// paid keeps that link, and every run says so (exit 1), until the row is put back as it was (exit 0,
/// nothing sent) or the changed row gets a key of its own (a link of its own; with `prune`, the old key's
/// paid single-use link is never retired).
#[test]
fn a_row_changed_after_payment_has_two_ways_out() {
    let world = World::new();
    let job = JobFile::sample("monthly-subscriptions").add("lifecycle.prune", true).write(&world, "monthly.toml");
    let month = ["--var", "billing_month=2026-12", "--limit", "200/s"];
    let run = |input: &str, extra: &[&str]| {
        let mut args = month.to_vec();
        args.extend(["--input", input]);
        args.extend(extra);
        world.run_job(&job, &args).run()
    };
    let original = "samples/subscriptions.csv";
    assert_eq!(run(original, &[]).code, 0);
    let paid = world.output()[0]["link_id"].clone();
    assert_eq!(pay(&world, &paid), 200);
    let text = std::fs::read_to_string(original).unwrap();
    // SUB-1001's price alone changes after the customer paid.
    let line = text.lines().nth(1).unwrap();
    assert!(line.starts_with("SUB-1001,") && line.ends_with(",59900"), "{line}");
    let raised = line.replace(",59900", ",64900");
    let changed = world.path("changed.csv");
    std::fs::write(&changed, crate::support::edited(&text, line, &raised)).unwrap();
    let changed = changed.to_str().unwrap();

    let refused = run(changed, &["--replace-changed"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    let row = world.output()[0].clone();
    assert_eq!((row["status"].as_str(), row["error_code"].as_str()), ("conflict", "conflict_paid"));
    assert_eq!(
        row["error_message"],
        format!(
            "row changed after link {paid} was made (amount 59900 -> 64900); link {paid} has been paid (1 charge, \
             599.00 THB); it was not replaced: give the changed row a key of its own for a new link, or put the \
             row back as it was"
        )
    );
    assert_eq!(run(changed, &[]).code, 1, "every run says so");

    // Way out 1: the change was a mistake. Put back, the row is its link again, and nothing is sent.
    let sent = crate::support::requests(&world.stats());
    let back = run(original, &[]);
    assert_eq!(back.code, 0, "{}\n{}\n{:?}", back.stderr, back.stdout, statuses(&world.output()));
    assert_eq!(world.output()[0]["status"], "existing");
    assert_eq!(crate::support::requests(&world.stats()), sent);

    // Way out 2: the change is real. A new key gets a new link; the paid one stays, and prune keeps it.
    std::fs::write(
        world.path("renamed.csv"),
        crate::support::edited(&text, line, &raised.replace("SUB-1001,", "SUB-1001-v2,")),
    )
    .unwrap();
    let renamed = world.path("renamed.csv");
    let renamed = renamed.to_str().unwrap();
    assert_eq!(run(renamed, &["--retire"]).code, 0);
    let row = world.output()[0].clone();
    assert_eq!(
        (row["subscription_id"].as_str(), row["status"].as_str(), row["amount"].as_str()),
        ("SUB-1001-v2", "created", "64900")
    );
    assert_ne!(row["link_id"], paid);
    let stats = world.stats();
    assert_eq!((stats.deleted_links, stats.deletes.paid_single_use), (0, 0), "the paid link is never retired");
}
