//! Every documented command, run as written: the README's blocks and the examples of `linkbatch --help`, each
//! in a fresh copy of `jobs/` and `samples/` with a fresh home, the built binary on `PATH`. Only the ports a
//! block names are changed, to free ones, and runs are unpaced. A command that needs a real account runs as its
//! sandbox twin: the same words, pointed at a sandbox with `--base-url` (and `--smtp` for mail).

use std::path::Path;
use std::process::Command;

use crate::support::{World, fresh_copy};

/// Waits for a sandbox started in the background to say where it listens, stops it, and prints what it said.
const UNTIL_LISTENING: &str =
    "until grep -q listening sandbox.out 2>/dev/null; do sleep 0.1; done; kill %1; wait; cat sandbox.out";

/// `bash -c SCRIPT` in `dir`, as a user's shell would run it: a fresh home, no terminal, the binary on `PATH`.
fn shell(dir: &Path, script: &str) -> std::process::Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_linkbatch")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    // Bounded: a block that waits on a server nobody started fails here instead of hanging the suite.
    Command::new("timeout")
        .args(["--kill-after=5", "120", "bash", "-c", script])
        .current_dir(dir)
        .env("HOME", dir.join("home"))
        .env("PATH", path)
        .env("CI", "true")
        .env_remove("OMISE_SECRET_KEY")
        .env_remove("LINKBATCH_LOG")
        .output()
        .unwrap()
}

/// Two ports nothing listens on now (held together while chosen, so they differ).
fn free_ports() -> (u16, u16) {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (a, b) = (bind(), bind());
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

/// The first shell block (a fenced `sh` block) after `heading` in the README.
fn readme_block(heading: &str) -> String {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let section = readme.split(heading).nth(1).unwrap_or_else(|| panic!("the README has no {heading:?}"));
    section.split("```sh\n").nth(1).unwrap().split("```").next().unwrap().to_owned()
}

/// The README's mail block, as written: a standalone sandbox, 24 links made and mailed through its catcher, the
/// messages looked at, then a reminder pass (none due yet), and the sandbox stopped.
#[test]
fn the_readme_mail_block_runs_as_written() {
    let block = readme_block("## Mailing each link to its customer");
    let (api, mail) = free_ports();
    let script = block.replace("127.0.0.1:8700", &format!("127.0.0.1:{api}")).replace("8725", &mail.to_string());
    assert_ne!(script, block, "the block names the sandbox's ports");
    let dir = fresh_copy();
    // A failed line must not leave the sandbox running (and the test waiting on its output). The trap's kill
    // finds the sandbox gone when the block's own `kill %1` was quick: under `set -e` that failure would be
    // the script's exit status (it was, now and then: the suite's one flaky test), so it is ignored.
    let out = shell(dir.path(), &format!("set -e\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.starts_with("[{\"from\":\"billing@example.co.th\",\"to\":["), "the catcher's messages: {stdout}");
    // Each summary as said, its elapsed time (`in 1.2s`) written `in Ts`.
    let timeless = |line: &str| match (line.find(" in "), line.find("s (")) {
        (Some(from), Some(to)) if from < to => format!("{} in Ts{}", &line[..from], &line[to + 1..]),
        _ => line.to_owned(),
    };
    let said: Vec<String> = stderr.lines().filter(|l| !l.contains(" INFO ")).map(timeless).collect();
    assert_eq!(
        said,
        [
            "24 rows: 24 created in Ts (24 requests); output out/trial.csv",
            "deliver: 24 delivered, 0 uncertain, 0 failed, 0 rejected, 0 deferred",
            // `--remind` refreshes first and says what it read once, with the delivery after it.
            "deliver: 0 delivered, 0 uncertain, 0 failed, 0 rejected, 0 deferred; links: 0 paid, 24 unpaid; collected nothing",
        ],
        "{stderr}"
    );
    let rows = crate::support::read_csv(&dir.path().join("out/trial.csv"));
    assert!(rows.iter().all(|r| r["delivery"] == "delivered"), "{rows:?}");
}

/// The examples at the end of `linkbatch --help`, each run as written (the sandbox's on a free port), or
/// as its sandbox twin where it needs an account or a mail server; each exit code and first line checked.
/// Every run is unpaced (`--limit none`), as tests are: the sandboxes count no window.
/// About 35 s: the `--sandbox` examples keep the jobs' own pace (60 a minute).
#[test]
fn the_help_examples_run() {
    let world = World::new();
    let help = world.linkbatch(&["--help"]).code(0).stdout;
    let examples: Vec<&str> = help
        .split("Examples:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.trim().split("   ").next().unwrap().trim())
        .collect();
    assert_eq!(examples.len(), 7, "{help}");
    let catcher = format!("smtp://127.0.0.1:{}", world.sandbox.smtp_port());
    // Twins need not pace themselves: the sandbox counts no window.
    let api = format!("--base-url {} --limit none", world.base_url());
    let twin = format!("{api} --smtp {catcher}");
    // In one copy, in order: `deliver` mails the links the `run` before it made.
    let dir = fresh_copy();
    for example in examples {
        let key = format!("OMISE_SECRET_KEY={}", world.key);
        let (script, code, first) = match example.split_whitespace().nth(1).unwrap() {
            // A server: on a free port, stopped once it said where it listens.
            "sandbox" => (
                format!("{example} --addr 127.0.0.1:0 > sandbox.out & {UNTIL_LISTENING}"),
                0,
                "linkbatch sandbox listening on http://127.0.0.1:",
            ),
            // Paced as a test is: the in-process sandbox counts no window.
            _ if example.contains("--sandbox") => (format!("{example} --limit none"), 0, ""),
            "validate" => (example.to_owned(), 0, "monthly-subscriptions: 24 rows in samples/subscriptions.csv"),
            "status" => (example.to_owned(), 0, "catalog-import: 60 rows, ledger out/catalog-import.ledger.jsonl"),
            // An account (and a mail server): the sandbox's twin.
            _ => {
                let words = example.trim_start_matches("OMISE_SECRET_KEY=skey_test_... ");
                let words = words.replace("$(date +%Y-%m)", "2026-12");
                let twin = if words.contains(" deliver ") { twin.clone() } else { api.clone() };
                (format!("{key} {words} {twin}"), 0, "")
            }
        };
        let out = shell(dir.path(), &script);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(code), "{script}\n{stdout}\n{stderr}");
        assert!(stdout.starts_with(first), "{script}: {stdout}");
    }
}

/// The README's other command blocks: the first command (the built binary for `cargo run --release --`),
/// everyday use, retiring and the sandbox, in one fresh copy, in order. A command that needs an account runs
/// as its sandbox twin; `linkbatch sandbox` listens on a free port and is stopped once it said where.
#[test]
fn the_readme_commands_run() {
    let world = World::new();
    let readme = std::fs::read_to_string("README.md").unwrap();
    let blocks: Vec<&str> = readme.split("```sh\n").skip(1).map(|b| b.split("```").next().unwrap()).collect();
    let first = blocks[0].lines().next().unwrap().replace("cargo run --release --", "linkbatch");
    let mut lines = vec![first];
    for heading in ["## Everyday use", "## Ending links: expiry, sold-out tiers and removed products", "## The sandbox"]
    {
        if heading.starts_with("## Ending") {
            // Retiring ends links a run made: the tickets' first (not a line of the README).
            lines.push("linkbatch run jobs/event-tickets.toml".to_owned());
        }
        lines.extend(readme_block(heading).lines().map(|l| l.split("  #").next().unwrap().trim().to_owned()));
    }
    let twin = format!("--base-url {} --limit none", world.base_url());
    let dir = fresh_copy();
    let mut ran = Vec::new();
    for line in lines.iter().filter(|l| l.starts_with("linkbatch ")) {
        let command = line.split_whitespace().nth(1).unwrap();
        let script = match command {
            "sandbox" => format!("{line} --addr 127.0.0.1:0 > sandbox.out & {UNTIL_LISTENING}"),
            _ if line.contains("--sandbox") => line.clone(),
            "run" | "refresh" | "retire" => format!("OMISE_SECRET_KEY={} {line} {twin}", world.key),
            _ => line.clone(),
        };
        let out = shell(dir.path(), &script);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{script}\n{stdout}\n{stderr}");
        // What each says first: a sender its summary last on stderr, a reader its job's name on stdout.
        let job = line.split_whitespace().nth(2).unwrap_or("").trim_start_matches("jobs/").trim_end_matches(".toml");
        let said = match command {
            "run" | "refresh" | "retire" => stderr.lines().last().unwrap_or("").split(": ").next().unwrap_or(""),
            "sandbox" => stdout.split(" on ").next().unwrap_or(""),
            _ => stdout.split(':').next().unwrap_or(""),
        };
        let expected = match command {
            "run" | "refresh" | "retire" => {
                stderr.lines().last().unwrap_or("").split(' ').next().unwrap_or("").to_owned() + " rows"
            }
            "sandbox" => "linkbatch sandbox listening".to_owned(),
            _ => job.to_owned(),
        };
        assert_eq!(said, expected, "{script}\n{stdout}\n{stderr}");
        ran.push(command.to_owned());
    }
    assert_eq!(ran, ["run", "validate", "run", "status", "refresh", "export", "sandbox", "run", "retire", "sandbox"]);
}
