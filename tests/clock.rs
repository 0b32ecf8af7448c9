//! The host's clock apart from the server's: an uncertain request is looked for in the server's time, so a
//! host clock that runs ahead, behind, or is stepped mid-run never makes a second link for a row. The
//! sandbox runs its own clock (`clock_offset_ms`, `POST /__sandbox/clock`); no fake time on either side.

use std::time::Duration;

use linkbatch::sandbox::{FaultKind, SandboxConfig};

use crate::support::{JobFile, World, count, faults, statuses};

const HOUR: i64 = 3_600_000;

/// A world whose server clock is `offset_ms` from the host's, losing answers as issue 28 measured.
fn skewed(offset_ms: i64, seed: u64) -> World {
    World::with(SandboxConfig {
        faults: faults(&[(FaultKind::DropAfterCommit, 0.15), (FaultKind::ServerErrorAfter, 0.1)]),
        seed,
        clock_offset_ms: offset_ms,
        ..Default::default()
    })
}

fn job(world: &World) -> String {
    JobFile::sample("catalog-import")
        .add("retry.attempts", 12)
        .add("retry.base_delay", "20ms")
        .add("retry.max_delay", "100ms")
        .add("api.timeout", "1s")
        .write(world, "catalog.toml")
}

/// Every row one link, none identical to another, and the output says so.
fn one_link_per_row(world: &World, label: &str) {
    let stats = world.stats();
    let rows = world.output();
    assert_eq!(count(&rows, "created"), 60, "{label}: {:?}", statuses(&rows));
    assert_eq!(stats.identical_extra, 0, "{label}: identical extras {stats:?}");
    assert_eq!(stats.links_held, 60, "{label}: one link per row");
    assert!(stats.faults.get("drop-after-commit").copied().unwrap_or(0) > 0, "{label}: answers were lost");
}

fn five_runs(offset_ms: i64, label: &str) {
    for seed in 1..=5 {
        let world = skewed(offset_ms, seed);
        world.run_job(&job(&world), &["--limit", "200/s"]).code(0);
        one_link_per_row(&world, &format!("{label}, seed {seed}"));
    }
}

#[test]
fn a_host_clock_an_hour_ahead_makes_no_duplicate() {
    five_runs(-HOUR, "host +1h");
}

#[test]
fn a_host_clock_150s_ahead_makes_no_duplicate() {
    five_runs(-150_000, "host +150s");
}

#[test]
fn a_host_clock_an_hour_behind_makes_no_duplicate() {
    five_runs(HOUR, "host -1h");
}

/// The host's clock stepped an hour mid-run (as the server sees it: its clock moves the other way), back
/// and forward, while answers are being lost.
#[test]
fn a_host_clock_stepped_mid_run_makes_no_duplicate() {
    for (seed, step) in [(1, "+1h"), (2, "+1h"), (3, "+1h"), (4, "-1h"), (5, "-1h")] {
        let world = skewed(0, seed);
        let job = job(&world);
        // Paced so that the step lands among the creates.
        let running = world.run_job(&job, &["--limit", "60/s"]).spawn_capturing();
        while world.stats().creates < 20 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let http = world.http();
        let moved = http.send(http.request(reqwest::Method::POST, &format!("/__sandbox/clock?offset={step}")));
        assert_eq!(moved.status, 200, "{:?}", moved.body);
        let outcome = running.finish();
        assert_eq!(outcome.code, 0, "{}", outcome.stderr);
        assert!(world.stats().creates < 80, "the step came before the end");
        one_link_per_row(&world, &format!("stepped {step}, seed {seed}"));
    }
}

/// The sandbox's own clock shows in its `Date` and in the links it makes.
#[test]
fn the_sandbox_clock_runs_apart_from_the_host() {
    let world = skewed(-HOUR, 1);
    let http = world.http();
    let made = http.create(&[("amount", "10000"), ("currency", "thb"), ("title", "t"), ("description", "d")]);
    let created = humantime::parse_rfc3339_weak(made.body["created_at"].as_str().unwrap()).unwrap();
    let behind = std::time::SystemTime::now().duration_since(created).unwrap();
    assert!((3590..3610).contains(&behind.as_secs()), "created_at {behind:?} behind the host");
    let date = world.rt.block_on(async {
        let response = reqwest::get(format!("{}/", world.base_url())).await.unwrap();
        response.headers()["date"].to_str().unwrap().to_owned()
    });
    let date = httpdate::parse_http_date(&date).unwrap();
    let behind = std::time::SystemTime::now().duration_since(date).unwrap();
    assert!((3590..3610).contains(&behind.as_secs()), "Date {behind:?} behind the host");
}
