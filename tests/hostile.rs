//! Hostile input and damaged files, one test per reproducer of the audit (issue "Bad input and damaged
//! files"): numbers that overflowed or hung, money that was rounded, files of the user's that were
//! overwritten, and damaged ledgers that made duplicates. Every one must end in a clear error, nothing sent
//! twice, and no file of the user's changed.

use std::io::Write as _;

use linkbatch::sandbox::SandboxConfig;

use crate::support::{JobFile, Replay, World, read_csv};

fn ledger_arg(world: &World) -> String {
    world.path("ledger.jsonl").to_str().unwrap().to_owned()
}

#[test]
fn numbers_past_any_meaning_are_refused_not_panicked_on() {
    let world = World::new();
    let ledger = ledger_arg(&world);
    let refusals = [
        (
            "1/18446744073709551615s",
            "error: invalid value '1/18…' for '--limit <RATE>': rate `1/18446744073709551615s`: the count must be 1 to \
             1000000 and the period 1ms to 7 days",
        ),
        (
            "18446744073709551615/s",
            "error: invalid value '1844…' for '--limit <RATE>': rate `18446744073709551615/s` is not COUNT/PERIOD, e.g. \
             60/min, 1000/h, 5/10s",
        ),
        (
            "1/0s",
            "error: invalid value '1/0s' for '--limit <RATE>': rate `1/0s` must have a count and a period above zero",
        ),
    ];
    for (limit, refusal) in refusals {
        let outcome =
            world.linkbatch(&["validate", "jobs/catalog-import.toml", "--ledger", &ledger, "--limit", limit]).code(2);
        assert_eq!(outcome.stderr.lines().next(), Some(refusal), "{limit}");
    }
    for concurrency in ["18446744073709551615", "1000000000", "0"] {
        let outcome = world.run_job("jobs/catalog-import.toml", &["--concurrency", concurrency]).code(2);
        let refusal =
            format!("error: concurrency {concurrency} is outside 1 to 64 (Omise advises at most 10 parallel workers)");
        assert_eq!(outcome.error(), refusal);
    }
    let job = JobFile::sample("catalog-import").add("api.timeout", "0s").write(&world, "zero.toml");
    let outcome = world.run_job(&job, &[]).code(2);
    assert_eq!(outcome.error(), "error: [api] timeout = 0ns is outside 1ms to 3600s");
    assert_eq!(world.stats().creates, 0);
}

#[test]
fn jsonl_amounts_are_never_rounded() {
    let world = World::new();
    let input = world.path("prices.jsonl");
    let rows = [
        r#"{"sku":"BIG","name":"Big","description":"d","price":123456789012345.67,"currency":"thb","stock":1}"#,
        r#"{"sku":"TINY","name":"Tiny","description":"d","price":1e-400,"currency":"thb","stock":1}"#,
        r#"{"sku":"HUGE","name":"Huge","description":"d","price":1e309,"currency":"thb","stock":1}"#,
        r#"{"sku":"EXP","name":"Exp","description":"d","price":1.5e2,"currency":"thb","stock":1}"#,
    ];
    std::fs::write(&input, rows.join("\n")).unwrap();
    world.run_job("jobs/catalog-import.toml", &["--input", input.to_str().unwrap(), "--limit", "100/s"]).code(1);
    let out = world.output();
    let (big, tiny, huge, exp) = (&out[0], &out[1], &out[2], &out[3]);
    assert_eq!((big["status"].as_str(), big["amount"].as_str()), ("created", "12345678901234567"));
    assert_eq!((exp["status"].as_str(), exp["amount"].as_str()), ("created", "15000"));
    for (row, message) in [(tiny, "1e-400"), (huge, "1e309")] {
        assert_eq!((row["status"].as_str(), row["error_code"].as_str()), ("rejected", "invalid_input"), "{row:?}");
        assert_eq!(
            row["error_message"],
            format!("field `price`: number `{message}` has an exponent past 40: not an exact amount")
        );
    }
    assert_eq!(world.stats().creates, 2);
}

#[test]
fn files_of_the_user_are_never_overwritten() {
    let world = World::new();
    let input = world.path("tickets.csv");
    std::fs::copy("samples/tickets.csv", &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let not_a_ledger = world.path("notes.txt");
    std::fs::write(&not_a_ledger, "my notes, one line").unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let base = world.base_url();
    let cases: [(Vec<String>, &str); 4] = [
        (vec!["--ledger".into(), path(&not_a_ledger)], "is not a linkbatch ledger"),
        (vec!["--output".into(), path(&input), "--ledger".into(), path(&world.path("l.jsonl"))], "is the input"),
        (
            vec!["--output".into(), path(&world.path("same")), "--ledger".into(), path(&world.path("same"))],
            "the same file",
        ),
        (
            vec!["--output".into(), path(world.dir.path()), "--ledger".into(), path(&world.path("l2.jsonl"))],
            "is a directory",
        ),
    ];
    for (flags, says) in cases {
        let mut args = vec!["run", "jobs/event-tickets.toml", "--input", input.to_str().unwrap(), "--base-url", &base];
        args.extend(flags.iter().map(String::as_str));
        let outcome = world.linkbatch(&args).code(2);
        assert!(outcome.stderr.contains(says), "{flags:?}: {}", outcome.stderr);
    }
    assert_eq!(std::fs::read(&input).unwrap(), before);
    assert_eq!(std::fs::read_to_string(&not_a_ledger).unwrap(), "my notes, one line");
    assert_eq!(world.stats().creates, 0, "nothing is sent before the paths are checked");
}

#[test]
fn a_webhook_needs_https_and_a_host() {
    let world = World::new();
    for hook in ["https://", "https:// ", "http://example.com/h"] {
        let job = JobFile::sample("event-tickets-plus").set("link.custom_webhook", hook).write(&world, "hook.toml");
        let outcome = world.run_job(&job, &[]).code(2);
        assert!(outcome.stderr.contains("https:// URL with a host"), "{hook}: {}", outcome.stderr);
    }
    assert_eq!(world.stats().creates, 0);
}

#[test]
fn a_redirect_is_an_error_not_a_second_post() {
    let moved = r#"{"object":"error","code":"moved","message":"see elsewhere"}"#.to_owned();
    let server = Replay::start(vec![("POST", "/links".to_owned(), 307, moved)]);
    let world = World::new();
    let input = world.path("one.csv");
    std::fs::write(&input, "tier,event,price,currency,capacity\nVIP,Night,10.00,thb,1\n").unwrap();
    let (out, ledger) = (world.path("out.csv"), world.path("ledger.jsonl"));
    let args = ["run", "jobs/event-tickets.toml", "--base-url", &server.base_url, "--input", input.to_str().unwrap()];
    world
        .linkbatch(&[&args[..], &["--output", out.to_str().unwrap(), "--ledger", ledger.to_str().unwrap()]].concat())
        .code(1);
    let rows = read_csv(&out);
    assert_eq!((rows[0]["status"].as_str(), rows[0]["error_code"].as_str()), ("failed", "redirected"));
    assert_eq!(server.hits("POST"), 1);
}

#[test]
fn a_huge_cell_is_a_row_error_and_the_rest_go_on() {
    let world = World::new();
    let input = world.path("big.csv");
    let mut file = std::fs::File::create(&input).unwrap();
    writeln!(file, "tier,event,price,currency,capacity").unwrap();
    writeln!(file, "Huge,{},10.00,thb,1", "x".repeat(20 * 1024 * 1024)).unwrap();
    writeln!(file, "VIP,Night,10.00,thb,1").unwrap();
    drop(file);
    world.run_job("jobs/event-tickets.toml", &["--input", input.to_str().unwrap(), "--limit", "100/s"]).code(1);
    let rows = world.output();
    assert_eq!(rows[0]["status"], "rejected");
    assert!(rows[0]["error_message"].contains("more than any link field"), "{}", rows[0]["error_message"]);
    assert_eq!(rows[1]["status"], "created");
}

#[test]
fn messages_name_the_place_and_stay_short() {
    let world = World::new();
    // 1e309 on the first line: the row is rejected for its amount, not the file for its header.
    let input = world.path("first.jsonl");
    std::fs::write(&input, r#"{"sku":"A","name":"A","description":"d","price":1e309,"currency":"thb","stock":1}"#)
        .unwrap();
    let outcome = world
        .linkbatch(&[
            "validate",
            "jobs/catalog-import.toml",
            "--input",
            input.to_str().unwrap(),
            "--ledger",
            &ledger_arg(&world),
        ])
        .code(1);
    assert!(outcome.stdout.contains("line 1: input: field `price`: number `1e309`"), "{}", outcome.stdout);
    // A job file that is not UTF-8: once, with line and column.
    let job = world.path("bad.toml");
    std::fs::write(&job, b"name = \"t\"\n[api]\nkind = \"li\xffnks\"\n").unwrap();
    let outcome = world.linkbatch(&["validate", job.to_str().unwrap()]).code(2);
    assert!(outcome.stderr.contains("line 3, column 11: not valid UTF-8"), "{}", outcome.stderr);
    // A missing column with a header of 5,000 columns: named, and the list cut short.
    let wide = world.path("wide.csv");
    let header: Vec<String> = (0..5000).map(|i| format!("column_with_a_long_name_{i}")).collect();
    std::fs::write(&wide, header.join(",") + "\n").unwrap();
    let outcome = world
        .linkbatch(&[
            "validate",
            "jobs/event-tickets.toml",
            "--input",
            wide.to_str().unwrap(),
            "--ledger",
            &ledger_arg(&world),
        ])
        .code(2);
    assert!(outcome.stderr.contains("and 4980 more") && outcome.stderr.len() < 4000, "{}", outcome.stderr.len());
}

/// A ledger emptied, deleted, cut short, or with a byte flipped, beside the output of the run that wrote it:
/// no run on it makes a second link. Each damage is put on a copy of the good ledger, and the output is the
/// good run's.
#[test]
fn damaged_ledgers_never_make_a_second_link() {
    let world = World::with(SandboxConfig::default());
    let run = || world.run_job("jobs/catalog-import.toml", &["--limit", "1000/s", "--concurrency", "8"]);
    run().code(0);
    let (ledger, output) = (world.path("ledger.jsonl"), world.path("out.csv"));
    let good = std::fs::read(&ledger).unwrap();
    let out = std::fs::read(&output).unwrap();
    let newlines: Vec<usize> = good.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i).collect();
    // The last `created` line, to cut in its middle.
    let text = String::from_utf8(good.clone()).unwrap();
    let last_created = text.rfind(r#""type":"created""#).unwrap();
    // (what, the ledger, refused): each damage that loses a link is refused; losing only the last line, the
    // run's own `output` record, loses nothing, and the run goes on sending nothing.
    let mut damages: Vec<(String, Option<Vec<u8>>, bool)> = vec![
        ("emptied".into(), Some(Vec::new()), true),
        ("deleted".into(), None, true),
        ("header only".into(), Some(good[..=newlines[0]].to_vec()), true),
        ("torn header".into(), Some(good[..newlines[0] / 2].to_vec()), true),
        ("cut at a line end".into(), Some(good[..=newlines[newlines.len() / 2]].to_vec()), true),
        ("cut mid-line".into(), Some(good[..last_created].to_vec()), true),
        ("last newline gone".into(), Some(good[..good.len() - 1].to_vec()), false),
    ];
    for i in 0..46 {
        let at = (i * 7919 + 13) % good.len();
        let mut flipped = good.clone();
        flipped[at] ^= 1 << (i % 7);
        // A flip of the last newline only tears the last line (the `output` record): nothing is lost.
        let refused = at != good.len() - 1;
        damages.push((format!("bit {} of byte {at} flipped", i % 7), Some(flipped), refused));
    }
    let input = std::fs::read("samples/catalog.jsonl").unwrap();
    for (what, damaged, refused) in damages {
        match &damaged {
            Some(bytes) => std::fs::write(&ledger, bytes).unwrap(),
            None => std::fs::remove_file(&ledger).unwrap(),
        }
        std::fs::write(&output, &out).unwrap();
        let outcome = run().run();
        assert_eq!(world.stats().creates, 60, "{what}: a link was made again\n{}", outcome.stderr);
        if refused {
            // With the reason: a damaged line, or links the ledger lacks (a flip in a checksum, or in the
            // `{"sum":` that introduces it, is damage too).
            assert_eq!(outcome.code, 3, "{what}: exit {}\n{}", outcome.code, outcome.stderr);
            let error = outcome.error();
            let corrupt = error.starts_with(&format!("error: ledger {}: line ", ledger.display()))
                && error.ends_with("; the file was left untouched — restore it or move it aside");
            let lacks = error.starts_with(&format!("error: the ledger {} lacks ", ledger.display()))
                && error.ends_with("(or, if the output belongs to another ledger, move the output aside).");
            assert!(corrupt || lacks, "{what}: {error}");
            // A refusal changes no file: not the ledger (its torn tail is not cut, no header is written, a
            // missing one is not made), not the output, not the input.
            assert_eq!(std::fs::read(&output).unwrap(), out, "{what}: the output is left as it was");
            assert_eq!(std::fs::read(&ledger).ok(), damaged, "{what}: the ledger is left as it was");
            assert_eq!(std::fs::read("samples/catalog.jsonl").unwrap(), input, "{what}: the input is left as it was");
        } else {
            assert_eq!(outcome.code, 0, "{what}: {}", outcome.stderr);
            assert_eq!(read_csv(&output).iter().filter(|r| r["status"] == "existing").count(), 60, "{what}");
        }
    }
}
