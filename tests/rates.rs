//! Rate limits met from the outside: windows saturated exactly (the densest not the shortest), a server
//! stricter than the job says, and `refresh` by pages against reads by id. Rates are scaled down so the
//! tests stay fast; the timing figures are `bench/run`'s.

use linkbatch::sandbox::SandboxConfig;
use reqwest::Method;

use crate::support::{JobFile, World, read_csv};

/// A catalog input of `n` rows from `first`, in the columns `jobs/catalog-import.toml` reads.
fn catalog(world: &World, name: &str, first: usize, n: usize) -> String {
    let rows =
        (first..first + n).map(|i| format!("SKU-{i:05},Product {i},About product {i},{}.00,thb,{}\n", 100 + i, i % 7));
    let text: String = std::iter::once("sku,name,description,price,currency,stock\n".to_owned()).chain(rows).collect();
    let path = world.path(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn rates(list: &[&str]) -> Vec<linkbatch::rate::Rate> {
    list.iter().map(|r| r.parse().unwrap()).collect()
}

#[test]
fn windows_saturated_exactly_draw_no_429() {
    // 100/4s is denser than 20/s although longer: requests leave 40 ms apart and fill the second exactly.
    for limits in [["20/s", "100/4s"], ["100/4s", "30/s"]] {
        let world = World::with(SandboxConfig { limits: rates(&limits), ..Default::default() });
        let input = catalog(&world, "rows.csv", 0, 70);
        let args = ["--input", input.as_str(), "--limit", limits[0], "--limit", limits[1], "--concurrency", "8"];
        world.run_job("jobs/catalog-import.toml", &args).code(0);
        let stats = world.stats();
        assert_eq!((stats.links_held, stats.rate_limited), (70, 0), "{limits:?}: {stats:?}");
    }
}

#[test]
fn a_stricter_server_is_learned_kept_and_recorded_for_the_next_run() {
    // The job says 20/s; the server allows 10/s.
    let world = World::with(SandboxConfig { limits: rates(&["10/s"]), ..Default::default() });
    let job = JobFile::sample("catalog-import").set("limits.rates", vec!["20/s"]).write(&world, "catalog.toml");
    let first = catalog(&world, "first.csv", 0, 40);
    let outcome = world.run_job(&job, &["--input", &first, "--concurrency", "4"]).code(0);
    let after_first = world.stats().rate_limited;
    assert!((1..=5).contains(&after_first), "429s: {after_first}");
    assert!(outcome.stderr.contains("the server holds 20/s as 10/s"), "{}", outcome.stderr);
    let learned = world.ledger_events("learned");
    assert_eq!(learned.last().map(|e| e["rates"].clone()), Some(serde_json::json!(["10/s"])));

    // The next run on the same ledger starts at 10/s: nothing learned again. At exactly the server's rate a
    // loaded host can still deliver two requests closer than they left (one 429, answered with a margin),
    // never the run of 429s that 20/s meets.
    let second = catalog(&world, "second.csv", 40, 30);
    let outcome = world.run_job(&job, &["--input", &second, "--concurrency", "4"]).code(0);
    let in_second = world.stats().rate_limited - after_first;
    assert!(
        in_second == 0 || (in_second == 1 && outcome.stderr.contains("a 429 no window explains")),
        "{in_second} 429s: {}",
        outcome.stderr
    );
    assert_eq!(world.ledger_events("learned").len(), learned.len(), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("kept to 10/s, learned on an earlier run"), "{}", outcome.stderr);

    // `validate` counts its ETA at the learned rate, and says so.
    let third = catalog(&world, "third.csv", 70, 30);
    let ledger = world.path("ledger.jsonl");
    let validate =
        world.linkbatch(&["validate", &job, "--input", &third, "--ledger", ledger.to_str().unwrap()]).code(0);
    assert!(validate.stdout.contains("under 10/s (learned from the server on an earlier run)"), "{}", validate.stdout);

    // `--limit` starts afresh from the rates it gives.
    let outcome = world.run_job(&job, &["--input", &third, "--limit", "20/s", "--concurrency", "4"]).code(0);
    assert!(!outcome.stderr.contains("earlier run"), "{}", outcome.stderr);
    assert!(world.stats().rate_limited > after_first, "20/s again meets the server's 10/s");
}

fn pay(world: &World, id: &str) {
    let http = world.http();
    assert_eq!(http.send(http.request(Method::POST, &format!("/__sandbox/links/{id}/pay"))).status, 200);
}

/// `refresh` on the world's ledger, then `refresh --by-id` on a copy of it taken before: the requests each
/// sent, and both outputs.
fn refresh_both_ways(world: &World, job: &str, extra: &[&str]) -> ((u64, Vec<u8>), (u64, Vec<u8>)) {
    std::fs::copy(world.path("ledger.jsonl"), world.path("by-id.jsonl")).unwrap();
    let requests = || world.stats().requests.values().sum::<u64>();
    let before = requests();
    world.job("refresh", job, extra).code(0);
    let pages = (requests() - before, std::fs::read(world.path("out.csv")).unwrap());
    let (out, ledger, base) = (world.path("by-id.csv"), world.path("by-id.jsonl"), world.base_url());
    let before = requests();
    let files = ["--base-url", &base, "--output", out.to_str().unwrap(), "--ledger", ledger.to_str().unwrap()];
    world.linkbatch(&["refresh", job, "--by-id"]).args(extra).args(&files).code(0);
    (pages, (requests() - before, std::fs::read(&out).unwrap()))
}

#[test]
fn refresh_by_pages_writes_what_reads_by_id_write() {
    let world = World::new();
    let input = catalog(&world, "rows.csv", 0, 250);
    world.run_job("jobs/catalog-import.toml", &["--input", &input, "--limit", "none", "--concurrency", "8"]).code(0);
    let rows = read_csv(&world.path("out.csv"));
    // Some paid, one of them 24 times: more charges than a link embeds (20), so its charge pages are read.
    for row in rows.iter().step_by(9) {
        pay(&world, &row["link_id"]);
    }
    for _ in 0..24 {
        pay(&world, &rows[3]["link_id"]);
    }
    let ((by_pages, paged), (by_id, read)) =
        refresh_both_ways(&world, "jobs/catalog-import.toml", &["--input", &input, "--limit", "none"]);
    // Three pages of 100, and the busy link's second page of charges.
    assert_eq!((by_pages, by_id), (4, 251), "one read per link by id, and one more page of the busy link's charges");
    assert!(
        paged == read,
        "the outputs differ:\n{}\n---\n{}",
        String::from_utf8_lossy(&paged),
        String::from_utf8_lossy(&read)
    );
    assert_eq!(read_csv(&world.path("by-id.csv"))[3]["charges"], "24");
    assert_eq!(read_csv(&world.path("out.csv")).iter().filter(|r| r["charges"] != "0").count(), 29);
}

#[test]
fn links_plus_refresh_reads_the_team_list() {
    let world = World::new();
    world.run_job("jobs/event-tickets-plus.toml", &["--limit", "100/s"]).code(0);
    let rows = read_csv(&world.path("out.csv"));
    pay(&world, &rows[1]["link_id"]);
    let ((by_pages, paged), (by_id, read)) =
        refresh_both_ways(&world, "jobs/event-tickets-plus.toml", &["--limit", "100/s"]);
    assert_eq!((by_pages, by_id), (1, rows.len() as u64), "one page of the team's list");
    assert!(
        paged == read,
        "the outputs differ:\n{}\n---\n{}",
        String::from_utf8_lossy(&paged),
        String::from_utf8_lossy(&read)
    );
    let refreshed = read_csv(&world.path("out.csv"));
    assert_eq!((refreshed[1]["charges"].as_str(), refreshed[0]["charges"].as_str()), ("1", "0"));
}

#[test]
fn a_links_charge_pages_are_read_under_the_limits() {
    // 2/s: the link, its second page of charges, then the next link. A charge page sent outside the throttle
    // would be a third request in the second, and the server's 429.
    let world = World::with(SandboxConfig { limits: rates(&["2/s"]), ..Default::default() });
    let input = catalog(&world, "rows.csv", 0, 2);
    world.run_job("jobs/catalog-import.toml", &["--input", &input, "--limit", "2/s"]).code(0);
    let busy = read_csv(&world.path("out.csv"))[0]["link_id"].clone();
    for _ in 0..25 {
        pay(&world, &busy);
    }
    for by in [&["--by-id"][..], &[]] {
        // Only creates are in the ledger to count against the next run's windows: a second apart.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let args = [&["--input", input.as_str(), "--limit", "2/s"][..], by].concat();
        world.job("refresh", "jobs/catalog-import.toml", &args).code(0);
        assert_eq!(world.stats().rate_limited, 0, "refresh {by:?}");
        assert_eq!(read_csv(&world.path("out.csv"))[0]["charges"], "25", "refresh {by:?}");
    }
}

/// The sandbox's clock moved on by `offset_ms`.
fn move_clock(world: &World, offset_ms: i64) {
    let http = world.http();
    let moved = http.send(http.request(reqwest::Method::POST, &format!("/__sandbox/clock?offset={offset_ms}ms")));
    assert_eq!(moved.status, 200, "{:?}", moved.body);
}

/// The done-when: `refresh --events` after a whole refresh, then 10 payments among 3,000 links, costs at most
/// 3 requests and one per paid link, and writes what a whole refresh writes. With nothing new it costs one
/// request; with its cursor past the 30 days events are kept, it reads every link again and says so.
#[test]
fn refresh_by_events_reads_only_what_happened() {
    let world = World::new();
    let input = catalog(&world, "rows.csv", 0, 3000);
    let job = "jobs/catalog-import.toml";
    world.run_job(job, &["--input", &input, "--limit", "none", "--concurrency", "8"]).code(0);
    // A nightly job's links are older than a second: the link.create events fall before the cursor.
    move_clock(&world, 3_600_000);
    let requests = || world.stats().requests.values().sum::<u64>();
    let events = ["--input", &input, "--limit", "none", "--events"];
    let first = world.job("refresh", job, &events).code(0);
    assert_eq!(
        first.warnings(),
        ["refresh --events reads every link this time (no refresh --events has run on this ledger yet); the next one \
          reads only what happened"]
    );
    let rows = read_csv(&world.path("out.csv"));
    for row in rows.iter().step_by(300) {
        pay(&world, &row["link_id"]);
    }
    let before = requests();
    world.job("refresh", job, &events).code(0);
    let cost = requests() - before;
    assert_eq!(cost, 11, "one page of events and one read per paid link");
    let by_events = std::fs::read(world.path("out.csv")).unwrap();
    let ((_, whole), _) = refresh_both_ways(&world, job, &["--input", &input, "--limit", "none"]);
    assert!(by_events == whole, "the outputs differ");
    assert_eq!(read_csv(&world.path("out.csv")).iter().filter(|r| r["charges"] == "1").count(), 10);

    let before = requests();
    world.job("refresh", job, &events).code(0);
    assert_eq!(requests() - before, 1, "nothing new: one page of events");

    move_clock(&world, 3_600_000 + 32 * 86_400_000);
    let before = requests();
    let late = world.job("refresh", job, &events).code(0);
    assert!(late.warnings()[0].starts_with("refresh --events reads every link this time (the last one read up to "));
    assert_eq!(requests() - before, 30, "every link again, from 30 pages of the list");
    assert!(std::fs::read(world.path("out.csv")).unwrap() == whole, "the same output");
}
