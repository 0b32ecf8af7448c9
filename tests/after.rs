//! After the run: which links were paid (`refresh`), rebuilding the output (`export`), and replacing the
//! links of changed rows (`--replace-changed`), exactly once across crashes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use linkbatch::sandbox::{FaultKind, SandboxConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;

use crate::support::{World, count, faults};

const MONTH: &str = "billing_month=2026-11";

fn pay(world: &World, link_id: &str) {
    let http = world.http();
    assert_eq!(http.send(http.request(Method::POST, &format!("/__sandbox/links/{link_id}/pay"))).status, 200);
}

/// The monthly input with some amounts changed.
fn changed_input(world: &World, rows: &[&str]) -> String {
    let text: String = std::fs::read_to_string("samples/subscriptions.csv")
        .unwrap()
        .lines()
        .map(|line| {
            let id = line.split(',').next().unwrap_or("");
            if rows.contains(&id) || rows.contains(&"*") && id.starts_with("SUB-") {
                let (head, amount) = line.rsplit_once(',').unwrap();
                format!("{head},{}\n", amount.trim().parse::<u64>().unwrap() + 1000)
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    let path = world.path("changed.csv");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn month(world: &World, command: &str, extra: &[&str]) -> crate::support::Cmd {
    let mut args = vec!["--var", MONTH, "--limit", "200/s"];
    args.extend(extra);
    world.job(command, "jobs/monthly-subscriptions.toml", &args)
}

#[test]
fn refresh_reports_which_links_were_paid() {
    let world = World::new();
    month(&world, "run", &[]).code(0);
    let rows = world.output();
    for row in &rows[..3] {
        pay(&world, &row["link_id"]);
    }
    let multi = world.http().create(&[("amount", "1"), ("currency", "thb"), ("title", "x"), ("description", "y")]);
    assert_eq!(multi.status, 200);
    let before = world.stats().requests.values().sum::<u64>();
    let outcome = month(&world, "refresh", &[]).code(0);
    assert!(outcome.stderr.contains("3 paid, 21 unpaid; collected 3,079.00 THB"), "{}", outcome.stderr);
    assert_eq!(world.stats().requests.values().sum::<u64>() - before, 1, "one page of the list, nothing created");
    assert_eq!(world.stats().creates, 25);
    let rows = world.output();
    let first = &rows[0];
    assert_eq!(
        (first["used"].as_str(), first["charges"].as_str(), first["paid_amount"].as_str()),
        ("true", "1", "59900")
    );
    assert!(first["last_paid_at"].ends_with('Z'));
    assert_eq!(
        (rows[5]["used"].as_str(), rows[5]["charges"].as_str(), rows[5]["last_paid_at"].as_str()),
        ("false", "0", "")
    );
    assert_eq!(count(&rows, "created"), 24, "statuses stay those of the last run, which made these links");
    assert_eq!(world.ledger_events("refresh_finished").len(), 1);
}

#[test]
fn an_interrupted_refresh_resumes_where_it_stopped() {
    let world = World::new();
    month(&world, "run", &[]).code(0);
    let (base, output, ledger) = (world.base_url(), world.path("out.csv"), world.path("ledger.jsonl"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_linkbatch"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["refresh", "jobs/monthly-subscriptions.toml", "--by-id", "--var", MONTH, "--limit", "10/s"])
        .args(["--base-url", &base])
        .args(["--output", output.to_str().unwrap(), "--ledger", ledger.to_str().unwrap()])
        .env("OMISE_SECRET_KEY", &world.key)
        .env("CI", "true")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The run's 24 requests still fill the 10/s window for a second (the ledger seeds the throttle).
    std::thread::sleep(Duration::from_secs(2));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let first = world.ledger_events("refreshed").len();
    assert!((5..24).contains(&first), "{first} links read before the stop");
    // Resumed by pages: the links still unread come from one page of the list.
    month(&world, "refresh", &[]).code(0);
    let reads = world.ledger_events("refreshed");
    let keys: BTreeSet<_> = reads.iter().map(|e| e["key"].as_str().unwrap().to_owned()).collect();
    assert_eq!((reads.len(), keys.len()), (24, 24), "the second refresh read only what the first had not");
    assert_eq!(world.ledger_events("refresh_started").len(), 1, "resumed, not restarted");
}

#[test]
fn export_rebuilds_the_output_from_input_and_ledger() {
    let world = World::new();
    world.run_job("jobs/catalog-import.toml", &["--input", "samples/catalog-broken.jsonl", "--limit", "100/s"]).code(1);
    let written = std::fs::read_to_string(world.path("out.csv")).unwrap();
    std::fs::remove_file(world.path("out.csv")).unwrap();
    let served = world.stats().requests.values().sum::<u64>();
    let ledger = world.path("ledger.jsonl");
    let output = world.path("out.csv");
    let args = ["export", "jobs/catalog-import.toml", "--input", "samples/catalog-broken.jsonl"];
    let outcome = world.linkbatch(&args).env("Z", "").run();
    assert_eq!(outcome.code, 2, "without the run's ledger there is nothing to export");
    let mut args = args.to_vec();
    args.extend(["--ledger", ledger.to_str().unwrap(), "--output", output.to_str().unwrap()]);
    world.linkbatch(&args).code(0);
    assert_eq!(std::fs::read_to_string(world.path("out.csv")).unwrap(), written, "the same file, byte for byte");
    assert_eq!(world.stats().requests.values().sum::<u64>(), served, "export sends nothing");
}

#[test]
fn replace_changed_deletes_unpaid_links_and_keeps_paid_ones() {
    let world = World::new();
    month(&world, "run", &[]).code(0);
    let before: BTreeMap<String, String> =
        world.output().iter().map(|r| (r["subscription_id"].clone(), r["link_id"].clone())).collect();
    pay(&world, &before["SUB-1001"]);
    let input = changed_input(&world, &["SUB-1001", "SUB-1005"]);
    // Without the flag: conflicts, nothing sent.
    month(&world, "run", &["--input", &input]).code(1);
    assert_eq!(count(&world.output(), "conflict"), 2);
    assert_eq!(world.stats().creates, 24);

    month(&world, "run", &["--input", &input, "--replace-changed"]).code(1);
    let rows = world.output();
    let row = |id: &str| rows.iter().find(|r| r["subscription_id"] == id).unwrap().clone();
    assert_eq!(
        (row("SUB-1001")["status"].as_str(), row("SUB-1001")["error_code"].as_str()),
        ("conflict", "conflict_paid")
    );
    assert_eq!(row("SUB-1001")["link_id"], before["SUB-1001"], "a paid link is never replaced");
    assert_eq!(row("SUB-1005")["status"], "created");
    assert_eq!(row("SUB-1005")["amount"], "60900");
    assert_ne!(row("SUB-1005")["link_id"], before["SUB-1005"]);
    let stats = world.stats();
    assert_eq!((stats.links_held, stats.deleted_links, stats.creates), (24, 1, 25));
    let http = world.http();
    let old = http.send(http.classic(Method::GET, &format!("/links/{}", before["SUB-1005"])));
    assert_eq!(old.body["deleted"], true);
    // Again: nothing more to do, nothing sent.
    let served = world.stats().requests.values().sum::<u64>();
    month(&world, "run", &["--input", &input, "--replace-changed"]).code(1);
    assert_eq!(world.stats().creates, 25);
    assert_eq!(world.stats().requests.values().sum::<u64>(), served);
}

#[test]
fn replacing_survives_kill_nine() {
    let world = World::with(SandboxConfig {
        faults: faults(&[(FaultKind::DropAfterCommit, 0.08), (FaultKind::ServerErrorBefore, 0.05)]),
        seed: 5,
        ..Default::default()
    });
    month(&world, "run", &["--limit", "none"]).code(0);
    let old: BTreeSet<String> = world.output().iter().map(|r| r["link_id"].clone()).collect();
    let input = changed_input(&world, &["*"]);
    let mut rng = StdRng::seed_from_u64(9);
    let mut kills = 0;
    // Paced at 30/s, a full replacement (a read, a delete and a create per row) takes about 2.4 s, so
    // the kills land in the middle of it.
    let replace = || {
        let args = ["--var", MONTH, "--input", &input, "--replace-changed", "--limit", "30/s"];
        world.job("run", "jobs/monthly-subscriptions.toml", &args)
    };
    for _ in 0..60 {
        let mut child = replace().spawn();
        std::thread::sleep(Duration::from_millis(rng.random_range(20..300)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        if kills >= 12 || (kills >= 8 && world.stats().deleted_links == 24) {
            break;
        }
    }
    let done = (0..5).any(|_| replace().run().code == 0);
    assert!(done && kills >= 8, "finished: {done}, kills: {kills}");
    let stats = world.stats();
    eprintln!(
        "replace: {kills} kills; faults {:?}; held {}, deleted {}",
        stats.faults, stats.links_held, stats.deleted_links
    );
    assert_eq!((stats.links_held, stats.deleted_links), (24, 24), "every old link deleted, one new link per row");
    assert_eq!(stats.identical_extra, 0);
    let rows = world.output();
    assert_eq!(count(&rows, "created") + count(&rows, "existing"), 24);
    assert!(rows.iter().all(|r| !old.contains(&r["link_id"])));
}

/// Regression: a 60-row job at 5/s whose CSV was replaced 3 s in by another export created 60 links for the
/// old rows and wrote an output naming none of them (60 rows of the new file, all `pending`).
#[test]
fn an_input_replaced_under_a_run_stops_it_before_anything_of_the_new_file_is_sent() {
    let world = World::new();
    let rows = |from: usize| -> String {
        let mut csv = String::from("tier,event,price,currency,capacity\n");
        for i in from..from + 30 {
            let _ = writeln!(csv, "Tier {i},Night {i},{}.00,thb,10", 100 + i);
        }
        csv
    };
    let (input, export) = (world.path("tickets.csv"), world.path("export.csv"));
    std::fs::write(&input, rows(0)).unwrap();
    std::fs::write(&export, rows(1000)).unwrap();
    let run = world
        .run_job("jobs/event-tickets.toml", &["--input", input.to_str().unwrap(), "--limit", "10/s"])
        .spawn_capturing();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    // As an export job writes it: a new file moved into place.
    std::fs::rename(&export, &input).unwrap();
    let outcome = run.finish();
    assert_eq!(outcome.code, 3, "{}", outcome.stderr);
    let made = world.stats().links_per_title;
    assert!(!made.is_empty() && made.len() < 30, "stopped mid-run: {made:?}");
    let night = |title: &str| title.split_whitespace().nth(1).and_then(|n| n.parse::<usize>().ok()).unwrap();
    assert!(made.keys().all(|title| night(title) < 1000), "a row of the new file was sent: {made:?}");
    assert!(made.values().all(|&n| n == 1), "one link a row: {made:?}");
    let last = outcome.stderr.lines().last().unwrap();
    assert_eq!(
        last,
        format!(
            "error: aborted: the input {} changed while the run read it (another file was put in its place): nothing \
             more was sent, and the output was not written (it would name the new file's rows). Every link made is \
             in the ledger; the next run starts from the file as it is then",
            input.display()
        )
    );
    assert!(!world.path("out.csv").exists(), "no output naming the new file's rows");
    // The next run starts from the new file: its 30 rows, and the old file's links stay in the ledger.
    world.run_job("jobs/event-tickets.toml", &["--input", input.to_str().unwrap(), "--limit", "100/s"]).code(0);
    assert_eq!(count(&world.output(), "created"), 30);
}
