//! The user's own hands: a flag pointed at the wrong file, a field left out. Each refusal is exit 2 with
//! nothing sent and no file changed; the ledger is the job's wherever `--output` writes the CSV.

use crate::support::{JobFile, World, count, fresh_copy, requests, statuses};

/// The event-tickets job with its output (and so its own ledger) in the scratch directory.
fn tickets(world: &World) -> String {
    let output = world.path("tickets.csv");
    JobFile::sample("event-tickets").set("output.path", output.to_str().unwrap()).write(world, "tickets.toml")
}

fn run(world: &World, job: &str, extra: &[&str]) -> crate::support::Cmd {
    let base = world.base_url();
    let mut args = vec!["run", job, "--base-url", &base];
    args.extend(extra);
    world.linkbatch(&args)
}

#[test]
fn output_elsewhere_keeps_the_jobs_ledger() {
    let world = World::new();
    let job = tickets(&world);
    run(&world, &job, &[]).code(0);
    assert!(world.path("tickets.ledger.jsonl").exists(), "the job's ledger is beside its own output");
    let served = requests(&world.stats());
    let elsewhere = world.path("report-2026.csv");
    run(&world, &job, &["--output", elsewhere.to_str().unwrap()]).code(0);
    assert_eq!(requests(&world.stats()), served, "nothing was sent again");
    assert_eq!(world.stats().links_held, 5);
    let rows = crate::support::read_csv(&elsewhere);
    assert_eq!(count(&rows, "existing"), 5, "{:?}", statuses(&rows));
    assert!(!world.path("report-2026.ledger.jsonl").exists(), "--output started no ledger of its own");
}

#[test]
fn output_never_writes_over_a_file_that_is_not_this_jobs() {
    let world = World::new();
    let job = tickets(&world);
    run(&world, &job, &[]).code(0);
    let served = requests(&world.stats());
    let report = world.path("report.csv");
    std::fs::write(&report, "month,revenue\n2026-11,120000\n").unwrap();
    let input = format!("{}/samples/tickets.csv", env!("CARGO_MANIFEST_DIR"));
    let ledger = world.path("tickets.ledger.jsonl");
    let cases = [
        (
            report.to_str().unwrap().to_owned(),
            format!(
                "error: the output {} exists and is not an output of this job (its header is not the one this job \
             writes): nothing was sent and the file was not changed. Name a new file with --output, or move this \
             one away",
                report.display()
            ),
        ),
        (
            job.clone(),
            format!(
                "error: the output {job} is the job file: it would be overwritten; nothing was sent and no file was changed"
            ),
        ),
        (
            input.clone(),
            format!(
                "error: the output {input} is the input: it would be overwritten; nothing was sent and no file was changed"
            ),
        ),
        (
            ledger.to_str().unwrap().to_owned(),
            format!(
                "error: the output and the ledger are the same file ({}): give each its own; nothing was sent and no \
             file was changed",
                ledger.display()
            ),
        ),
    ];
    for (target, error) in cases {
        let before = std::fs::read(&target).unwrap();
        let outcome = run(&world, &job, &["--output", &target]).code(2);
        assert_eq!(outcome.error(), error, "--output {target}");
        assert_eq!(std::fs::read(&target).unwrap(), before, "{target} is byte for byte the same");
    }
    // Another job's ledger named as the output: not a CSV of this job's either.
    let other = world.path("other.ledger.jsonl");
    std::fs::copy(&ledger, &other).unwrap();
    let before = std::fs::read(&other).unwrap();
    let outcome = run(&world, &job, &["--output", other.to_str().unwrap()]).code(2);
    assert!(outcome.error().starts_with(&format!("error: the output {} exists and is not", other.display())));
    assert_eq!(std::fs::read(&other).unwrap(), before);
    assert_eq!(requests(&world.stats()), served, "no refusal sent a request");
}

#[test]
fn an_amount_column_without_its_unit_is_refused_with_both_readings() {
    let world = World::new();
    let input = world.path("tickets.csv");
    let sample = std::fs::read_to_string(format!("{}/samples/tickets.csv", env!("CARGO_MANIFEST_DIR"))).unwrap();
    std::fs::write(&input, sample.replace("1200.00", "1200")).unwrap();
    let job = JobFile::sample("event-tickets")
        .remove("link.amount_unit")
        .set("input.path", input.to_str().unwrap())
        .set("output.path", world.path("out.csv").to_str().unwrap())
        .write(&world, "tickets.toml");
    let expected = "error: [link] amount_unit is required when the amount comes from a column ({price}), and line \
                    2's `1200` is 12.00 THB as \"minor\" but 1,200.00 THB as \"major\": add amount_unit = \"minor\" \
                    or \"major\" to [link]; nothing was sent";
    let base = world.base_url();
    for args in [vec!["run", &job, "--base-url", &base], vec!["validate", &job]] {
        let command = args[0];
        let outcome = world.linkbatch(&args).code(2);
        assert_eq!(outcome.error(), expected, "{command}");
    }
    assert_eq!(requests(&world.stats()), 0);
    assert!(!world.path("out.csv").exists());
}

#[test]
fn validate_shows_the_first_amounts_as_a_customer_sees_them() {
    let world = World::new();
    let outcome = world.linkbatch(&["validate", "jobs/event-tickets.toml"]).code(0);
    let line = outcome.stdout.lines().find(|l| l.trim_start().starts_with("amounts:")).unwrap_or_default();
    assert_eq!(
        line,
        "  amounts:          line 2: 1,200.00 THB, line 3: 1,800.00 THB, line 4: 4,500.00 THB (as a customer sees them)"
    );
}

/// Ctrl-C while every worker waits for a rate window: the wait ends at once, the output is written and the
/// summary said, with nothing in flight.
#[test]
fn ctrl_c_during_a_window_wait_stops_within_two_seconds() {
    let world = World::new();
    let job = tickets(&world);
    let running = run(&world, &job, &["--limit", "6/min"]).spawn_capturing();
    while world.stats().creates < 1 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The next request may leave only 10 s after the first.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let asked = std::time::Instant::now();
    running.signal("INT");
    let outcome = running.finish();
    let took = asked.elapsed();
    assert_eq!(outcome.code, 130, "{}", outcome.stderr);
    assert!(took < std::time::Duration::from_secs(2), "stopped in {took:?}");
    let rows = crate::support::read_csv(&world.path("tickets.csv"));
    assert_eq!((count(&rows, "created"), count(&rows, "pending")), (1, 4), "{:?}", statuses(&rows));
    let summary = outcome.stderr.lines().last().unwrap_or_default();
    assert!(summary.starts_with("5 rows: 1 created, 4 pending in "), "the summary is said: {summary}");
    assert!(
        outcome.stderr.contains("interrupted: requests in flight were finished and recorded"),
        "{}",
        outcome.stderr
    );
}

/// Regression: `cd / && linkbatch validate /path/to/jobs/event-tickets.toml` failed with `cannot read input
/// samples/tickets.csv`: a job's paths followed the working directory. They are read beside the job now.
#[test]
fn a_job_is_read_the_same_from_any_working_directory() {
    let copy = fresh_copy();
    let job = copy.path().join("jobs/event-tickets.toml");
    let world = World::new();
    let from_root =
        world.linkbatch(&["validate", job.to_str().unwrap()]).current_dir(std::path::Path::new("/")).code(0);
    assert!(from_root.stdout.starts_with("event-tickets: 5 rows"), "{}", from_root.stdout);
    let from_jobs = world.linkbatch(&["validate", "event-tickets.toml"]).current_dir(&copy.path().join("jobs")).code(0);
    // The same rows, counts and amounts; only the input's name is spelled from where each ran.
    assert_eq!(
        from_jobs.stdout.lines().skip(1).collect::<Vec<_>>(),
        from_root.stdout.lines().skip(1).collect::<Vec<_>>()
    );
    assert!(from_jobs.stdout.starts_with("event-tickets: 5 rows in ../samples/tickets.csv\n"), "{}", from_jobs.stdout);
}

/// A ledger an older linkbatch kept relative to the working directory is never taken for a missing one (a
/// new ledger beside the job would make every link again): the run is refused and says where each file is.
#[test]
fn a_ledger_left_where_the_working_directory_put_it_is_refused_not_started_anew() {
    let copy = fresh_copy();
    let world = World::new();
    let base = world.base_url();
    // An older linkbatch, run from the copy's root, kept its ledger at out/ there.
    let job = "jobs/event-tickets.toml";
    let ledger = copy.path().join("out/event-tickets.ledger.jsonl");
    let args = ["run", job, "--base-url", &base, "--input", "samples/tickets.csv"];
    let older =
        [&args[..], &["--ledger", "out/event-tickets.ledger.jsonl", "--output", "out/event-tickets.csv"]].concat();
    world.linkbatch(&older).current_dir(copy.path()).code(0);
    assert!(ledger.is_file());
    // The job now says `out/…` beside itself: jobs/out/…, which does not exist.
    let text = std::fs::read_to_string(copy.path().join(job)).unwrap();
    std::fs::write(copy.path().join(job), crate::support::edited(&text, "\"../out/", "\"out/")).unwrap();
    let served = requests(&world.stats());
    let refused = world.linkbatch(&args).current_dir(copy.path()).code(2);
    assert_eq!(
        refused.stderr.trim_end().lines().last().unwrap(),
        "error: the ledger: a job's paths are read beside the job file, and jobs/out/event-tickets.ledger.jsonl does \
         not exist, while out/event-tickets.ledger.jsonl (the same path from the working directory, where linkbatch \
         read it before) does: move the file beside the job, write the path relative to the job's folder, or name it \
         with a flag; nothing was sent and no file was changed"
    );
    assert_eq!(requests(&world.stats()), served);
    assert!(!copy.path().join("jobs/out").exists());
}

/// One output per month: `[output] path` with `{billing_month}` gives each month its own file, and a
/// `refresh` of one month leaves the other's byte for byte (before, the month's placeholder was written
/// into the file's name, and a refresh of October wrote over December's output).
#[test]
fn each_month_has_its_own_output() {
    let world = World::new();
    let job = JobFile::sample("monthly-subscriptions")
        .set("output.path", world.path("out/monthly-{billing_month}.csv").to_str().unwrap())
        .set("output.ledger", world.path("monthly.ledger.jsonl").to_str().unwrap())
        .write(&world, "monthly.toml");
    let base = world.base_url();
    let month = |command: &str, month: &str| {
        let var = format!("billing_month={month}");
        world.linkbatch(&[command, &job, "--base-url", &base, "--var", &var, "--limit", "200/s"]).code(0);
    };
    month("run", "2026-11");
    month("run", "2026-12");
    let (november, december) = (world.path("out/monthly-2026-11.csv"), world.path("out/monthly-2026-12.csv"));
    let kept = std::fs::read(&december).unwrap();
    assert_eq!(crate::support::read_csv(&november)[0]["key"], "SUB-1001:2026-11");
    month("refresh", "2026-11");
    assert_eq!(std::fs::read(&december).unwrap(), kept, "December's output, byte for byte");
    assert!(crate::support::read_csv(&november)[0].contains_key("paid_amount"), "November's refreshed");
    assert_eq!(world.stats().links_held, 48);
}
