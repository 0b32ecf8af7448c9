//! What a newcomer and an audit tripped over, each pinned by the bug it was: a key echoed back, a cause said
//! twice, a semicolon CSV, `templates` reading the input, a rejected JSONL row without its key, Links+ keys
//! taken for test keys, and a key that could only come from a variable.

use linkbatch::sandbox::SandboxConfig;

use crate::support::{JobFile, World, read_csv};

/// Regression: `--var "=$OMISE_SECRET_KEY"` printed the whole key in the refusal cron mails out.
#[test]
fn a_key_typed_into_a_flag_is_never_echoed() {
    let world = World::new();
    let typed = "=skey_test_5ucXyZtyped0key";
    world.linkbatch(&["validate", "jobs/event-tickets.toml", "--var", typed]).says(
        2,
        "error: invalid value '=ske…' for '--var <NAME=VALUE>': the name before `=` is empty: write NAME=VALUE\n\n\
         For more information, try '--help'.\n",
    );
    // A key of any shape (a Links+ key has no prefix), typed where a flag's value goes: cut to a prefix.
    world.linkbatch(&["validate", "jobs/event-tickets.toml", "--var", "lp_k3y_0f_th3_us3r"]).says(
        2,
        "error: invalid value 'lp_k…' for '--var <NAME=VALUE>': there is no `=`: write NAME=VALUE\n\nFor more \
         information, try '--help'.\n",
    );
}

/// Regression: `cannot read job file jobs/x.toml: No such file or directory (os error 2): No such file or
/// directory (os error 2)`.
#[test]
fn a_cause_is_said_once() {
    World::new()
        .linkbatch(&["run", "jobs/none.toml"])
        .says(2, "error: cannot read job file jobs/none.toml: No such file or directory (os error 2)\n");
}

/// Regression: a semicolon CSV (Excel in much of Europe and South America) was one column, with no hint.
#[test]
fn a_semicolon_csv_is_named_and_read_with_its_delimiter() {
    let world = World::new();
    let csv = std::fs::read_to_string("samples/tickets.csv").unwrap().replace(',', ";");
    std::fs::write(world.path("tickets.csv"), csv).unwrap();
    let input = world.path("tickets.csv");
    let input = input.to_str().unwrap();
    world.run_job("jobs/event-tickets.toml", &["--input", input]).says(
        2,
        &format!(
            "error: no input column or --var for {{event}} in [input] key, {{tier}} in [input] key, {{price}} in \
             [link] amount, {{currency}} in [link] currency, {{event}} in [link] title, {{tier}} in [link] title, \
             {{tier}} in [link] description, {{event}} in [link] description, {{capacity}} in [lifecycle] capacity \
             (columns in {input}: \
             tier;event;price;currency;capacity; the header is one column holding `;`: the file looks separated by \
             `;`, not commas: set [input] delimiter = \";\")\n"
        ),
    );
    assert_eq!(world.stats().creates, 0);
    let job = JobFile::sample("event-tickets").add("input.delimiter", ";").write(&world, "semicolon.toml");
    world.run_job(&job, &["--input", input]).code(0);
    let rows = world.output();
    let plain: Vec<_> = read_csv(std::path::Path::new("samples/tickets.csv"));
    assert_eq!(rows.len(), plain.len());
    assert!(rows.iter().zip(&plain).all(|(out, row)| out["tier"] == row["tier"] && out["status"] == "created"));
}

/// Regression: `templates` from another folder failed with "cannot read input samples/tickets-plus.csv",
/// though listing templates reads no row.
#[test]
fn templates_reads_no_input() {
    let world = World::new();
    let job = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/event-tickets-plus.toml");
    let outcome = world
        .linkbatch(&["templates", job.to_str().unwrap(), "--base-url", &world.base_url()])
        .current_dir(world.dir.path())
        .code(0);
    assert_eq!(
        outcome.stdout,
        "team 456: 2 template(s)\n  123      THB  Standard checkout\n  124      USD  International\n"
    );
}

/// Regression: a JSONL row rejected for one field (`price` of `1e-400`) lost its key and copied columns.
#[test]
fn a_rejected_jsonl_row_keeps_what_could_be_read() {
    let world = World::new();
    let input = world.path("catalog.jsonl");
    let rows = [
        r#"{"sku": "A-1", "name": "Mug", "description": "d", "price": "10.00", "currency": "thb", "stock": 3}"#,
        r#"{"sku": "A-2", "name": "Cup", "description": "d", "price": 1e-400, "currency": "thb", "stock": 7}"#,
    ];
    std::fs::write(&input, rows.join("\n")).unwrap();
    world.run_job("jobs/catalog-import.toml", &["--input", input.to_str().unwrap()]).code(1);
    let out = world.output();
    let rejected = &out[1];
    assert_eq!(
        (rejected["line"].as_str(), rejected["key"].as_str(), rejected["status"].as_str(), rejected["stock"].as_str()),
        ("2", "A-2", "rejected", "7")
    );
    assert_eq!(out[0]["status"], "created");
}

/// Regression: a Payment Links+ API key (no `skey_` prefix) was recorded and run as a test key.
#[test]
fn a_key_that_does_not_tell_its_mode_needs_live_or_the_jobs_word() {
    let world = World::new();
    world.run_job("jobs/event-tickets-plus.toml", &[]).env("OMISE_SECRET_KEY", "lp_live_or_test_who_knows").says(
        2,
        "error: the Payment Links+ API key in $OMISE_SECRET_KEY does not tell test from live (only skey_test_… and \
         skey_live_… keys do), so it is treated as live: pass --live to confirm real links, or state the mode in the \
         job: [api] mode = \"test\" or \"live\"\n",
    );
    assert_eq!(world.stats().requests.values().sum::<u64>(), 0, "refused before any request");
    // The job's word settles it; a job that says "test" beside a live key is refused.
    let tested = JobFile::sample("event-tickets-plus").add("api.mode", "test").write(&world, "plus-test.toml");
    world
        .run_job(&tested, &[])
        .env("OMISE_SECRET_KEY", "skey_live_abcdef1")
        .says(2, "error: the key in $OMISE_SECRET_KEY is a live-mode key, and the job says [api] mode = \"test\"\n");
    world.run_job(&tested, &[]).code(0);
    let header: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(world.path("ledger.jsonl")).unwrap().lines().next().unwrap())
            .unwrap();
    assert_eq!(header["mode"], "test");
}

/// Hosts hand secrets to jobs as files: `<key_env>_FILE` and systemd's `$CREDENTIALS_DIRECTORY/<key_env>`.
#[test]
fn the_key_comes_from_a_file_or_a_credential() {
    let world = World::with(SandboxConfig::default());
    let file = world.path("key");
    std::fs::write(&file, format!("{}\n", world.key)).unwrap();
    world
        .run_job("jobs/event-tickets.toml", &[])
        .env_remove("OMISE_SECRET_KEY")
        .env("OMISE_SECRET_KEY_FILE", file.to_str().unwrap())
        .code(0);
    let made = world.stats().creates;
    assert!(made > 0);
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(credentials.path().join("OMISE_SECRET_KEY"), &world.key).unwrap();
    world
        .run_job("jobs/event-tickets.toml", &[])
        .env_remove("OMISE_SECRET_KEY")
        .env("CREDENTIALS_DIRECTORY", credentials.path().to_str().unwrap())
        .code(0);
    let both = world.run_job("jobs/event-tickets.toml", &[]).env("OMISE_SECRET_KEY_FILE", file.to_str().unwrap()).says(
        2,
        &format!(
            "error: $OMISE_SECRET_KEY and the file {} are both set for OMISE_SECRET_KEY: keep one (a host's secret \
                 file, or the variable)\n",
            file.display()
        ),
    );
    assert!(!both.stderr.contains(&world.key[10..]));
    assert_eq!(world.stats().creates, made, "the first run made the links; the others found them under one key");
}

/// Regression: the README's install block failed on a fresh home, where neither the completions folder nor
/// `man5` exists. Its lines after `cargo install` run here as written, with the built binary on `PATH`.
#[test]
fn the_install_block_runs_on_a_fresh_home() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let block = readme.split("## Install\n\n```sh\n").nth(1).unwrap().split("```").next().unwrap();
    let lines: Vec<&str> = block.lines().filter(|line| !line.starts_with("cargo install")).collect();
    assert!(lines.iter().any(|line| line.starts_with("linkbatch man ")), "{block}");
    let home = tempfile::tempdir().unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_linkbatch")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let script = format!("set -e\n{}\n", lines.join("\n"));
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .env("HOME", home.path())
        .env("PATH", path)
        .env("CI", "true")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let share = home.path().join(".local/share");
    assert!(share.join("bash-completion/completions/linkbatch").metadata().unwrap().len() > 0);
    assert!(share.join("man/man5/linkbatch-job.5").is_file());
    assert!(share.join("man/man1/linkbatch.1").is_file());
}

/// Regression: the `--help` example `linkbatch validate jobs/monthly-subscriptions.toml --var
/// billing_month=2026-12` stopped at `[deliver] names $SMTP_USER and $SMTP_PASSWORD`, and with them set it
/// logged into the sample's mail server. A dry run checks every message and contacts no server unless asked
/// (`--login`). Run as written, in a fresh copy of `jobs/` and `samples/`, with no mail credentials.
#[test]
fn validate_needs_no_mail_credentials() {
    let dir = crate::support::fresh_copy();
    let validated = World::new()
        .linkbatch(&["validate", "jobs/monthly-subscriptions.toml", "--var", "billing_month=2026-12"])
        .current_dir(dir.path())
        .env_remove("SMTP_USER")
        .env_remove("SMTP_PASSWORD")
        .code(0);
    assert_eq!(
        validated.stdout.lines().rev().take(2).collect::<Vec<_>>(),
        [
            "  mail server:      not contacted (validate --login logs in, sending nothing)",
            "  messages that cannot be written: 0"
        ]
    );
    assert!(!dir.path().join("out").exists(), "validate writes nothing");
}

/// Regression: `deliver --remind --sandbox` met a sandbox started empty in its own process, warned for each of
/// the 24 links it could not find (one a second), and exited 0. Commands that read the links earlier runs
/// made refuse `--sandbox` and say what to do instead.
#[test]
fn reading_earlier_links_from_an_empty_sandbox_is_refused() {
    let world = World::new();
    for command in [&["refresh"][..], &["retire"], &["deliver", "--remind"]] {
        let mut args = command.to_vec();
        args.extend(["jobs/monthly-subscriptions.toml", "--sandbox", "--var", "billing_month=2026-12"]);
        let refused = world.linkbatch(&args).code(2);
        assert_eq!(
            refused.error(),
            format!(
                "error: {} reads the links earlier runs made, and --sandbox starts an empty sandbox in this process: \
                 start `linkbatch sandbox` and pass its address with --base-url (and its mail catcher with --smtp) \
                 to every command instead; nothing was sent",
                command.join(" ")
            )
        );
    }
}

/// Regression: the sandbox's key changed at every start, even with `--seed`, so the key of the "try:" line
/// stopped working after a restart (`ledger … was made with a different secret key`).
#[test]
fn the_sandboxs_key_follows_its_seed() {
    let key = |seed: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_linkbatch"))
            .args(["sandbox", "--seed", seed, "--addr", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        let key = lines.find_map(|l| l.unwrap().trim().strip_prefix("test key:").map(|k| k.trim().to_owned()));
        child.kill().unwrap();
        child.wait().unwrap();
        key.unwrap()
    };
    assert_eq!(key("7"), "skey_test_sandbox0000000000000007");
    assert_eq!(key("7"), key("7"));
    assert_ne!(key("8"), key("7"));
}

/// Regression: under `--log-format json` the summary and the `error:` line were plain text among the JSON
/// log lines, so a log shipper dropped the lines a cron job most needs. Every line on stderr is JSON now:
/// a run, a refusal clap makes, a refusal of the job, and an aborted run.
#[test]
fn json_logs_are_json_to_the_last_line() {
    let world = World::new();
    let json = ["--log-format", "json"];
    let job = JobFile::sample("event-tickets").write(&world, "tickets.toml");
    let runs = [
        world.run_job(&job, &json).code(0),
        world.linkbatch(&["run", &job, "--log-format", "json", "--no-such-flag"]).code(2),
        world.linkbatch(&["validate", &job, "--log-format=json", "--var", "=x"]).code(2),
        world.run_job(&job, &json).env("OMISE_SECRET_KEY", "skey_test_refused").code(3),
    ];
    for outcome in runs {
        assert!(!outcome.stderr.is_empty());
        for line in outcome.stderr.lines() {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{}", outcome.stderr));
            assert!(value["fields"]["message"].is_string(), "{line}");
        }
    }
    let last = |outcome: &crate::support::Outcome| -> serde_json::Value {
        serde_json::from_str(outcome.stderr.lines().last().unwrap()).unwrap()
    };
    let ran = world.run_job(&job, &json).code(0);
    assert_eq!(last(&ran)["fields"]["kind"], "summary");
    assert!(last(&ran)["fields"]["message"].as_str().unwrap().starts_with("5 rows: 5 existing in "));
}

/// Regression: bash completion offered file names for `sandbox --profile` and `--auth`, which take names.
#[test]
fn completion_offers_the_names_a_flag_takes() {
    let script = World::new().linkbatch(&["completions", "bash"]).code(0).stdout;
    for (flag, names) in [("--profile", "current legacy 2025 plus-variant"), ("--auth", "raw bearer basic")] {
        let case = script.split(&format!("                {flag})\n")).nth(1).unwrap();
        let reply = case.lines().next().unwrap().trim();
        assert_eq!(reply, format!("COMPREPLY=($(compgen -W \"{names}\" -- \"${{cur}}\"))"), "{flag}");
    }
}

/// Regression: `--var billing_month 2026-12` (a space for the `=`) said only "unexpected argument".
#[test]
fn a_var_written_with_a_space_is_shown_how_it_is_written() {
    let refused = World::new()
        .linkbatch(&["validate", "jobs/monthly-subscriptions.toml", "--var", "billing_month", "2026-12"])
        .code(2);
    assert_eq!(refused.stderr.lines().last(), Some("tip: --var takes NAME=VALUE in one word: --var billing_month=…"));
}

/// Regression: `status` printed its counts at the label's end, so a count of five digits pushed its note
/// out of line with the others'.
#[test]
fn status_counts_line_up() {
    let world = World::new();
    let rows: String = std::iter::once("id,amount,title\n".to_owned())
        .chain((0..12_000).map(|i| format!("k{i},100,Item {i}\n")))
        .collect();
    std::fs::write(world.path("many.csv"), rows).unwrap();
    let job = format!(
        "name = \"many\"\n[api]\nkind = \"links\"\n[input]\npath = \"{}\"\nkey = \"{{id}}\"\n[link]\namount = \
         \"{{amount}}\"\namount_unit = \"minor\"\ncurrency = \"thb\"\ntitle = \"{{title}}\"\ndescription = \"{{title}}\"\n",
        world.path("many.csv").display()
    );
    std::fs::write(world.path("many.toml"), job).unwrap();
    let ledger = world.path("l.jsonl");
    let status =
        world.linkbatch(&["status", world.path("many.toml").to_str().unwrap(), "--ledger", ledger.to_str().unwrap()]);
    let lines: Vec<String> = status.code(0).stdout.lines().skip(1).map(str::to_owned).collect();
    assert_eq!(
        lines,
        [
            "  created:       0   (by the latest run)",
            "  existing:      0   (by earlier runs)",
            "  uncertain:     0",
            "  failed:        0",
            "  pending:   12000",
            "  conflict:      0",
            "  rejected:      0",
        ]
    );
}

/// Regression: on Payment Links+ a conflict's message suggested `--replace-changed`, which Links+ cannot do,
/// and `--update-changed` did nothing and said nothing. Links+ has no API to end or change a link: the
/// message gives the row's ways out, and both flags say they do not apply.
#[test]
fn links_plus_conflicts_say_what_links_plus_allows() {
    let world = World::new();
    let job = JobFile::sample("event-tickets-plus").write(&world, "plus.toml");
    world.run_job(&job, &["--limit", "none"]).code(0);
    let text = std::fs::read_to_string("samples/tickets-plus.csv").unwrap();
    let changed = world.path("changed.csv");
    std::fs::write(
        &changed,
        crate::support::edited(
            &text,
            "VIP,Chiang Mai Lantern Walk 2026,4500.00",
            "VIP,Chiang Mai Lantern Walk 2026,4900.00",
        ),
    )
    .unwrap();
    let input = ["--input", changed.to_str().unwrap(), "--limit", "none"];
    let ran = world.run_job(&job, &[&input[..], &["--update-changed", "--replace-changed"]].concat()).code(1);
    let warned = ran.warnings();
    for flag in [
        "--update-changed needs the classic API (Links+ has no update): conflicts are reported, not changed",
        "--replace-changed needs the classic API (Links+ has no delete): conflicts are reported, not replaced",
    ] {
        assert!(warned.contains(&flag), "{}", ran.stderr);
    }
    let vip = world.output().into_iter().find(|r| r["status"] == "conflict").unwrap();
    assert!(
        vip["error_message"].ends_with(
            "not re-created (Payment Links+ cannot end or change a link: give the changed row a key of its own for a \
             new link, or put the row back as it was)"
        ),
        "{}",
        vip["error_message"]
    );
}

/// Regression: a `refresh` of 60 links took 57 s for one request, and a `run` 48.7 s for one row, because
/// earlier runs' requests filled the job's window; `validate` had predicted "0s" and the progress said
/// nothing. A window that holds a request for 2 s or more is said now, and `validate` counts it.
#[test]
fn a_wait_for_a_window_is_said_and_counted() {
    let world = World::new();
    let rows = |n: usize| -> String {
        std::iter::once("id,amount,title\n".to_owned()).chain((0..n).map(|i| format!("k{i},100,Item {i}\n"))).collect()
    };
    std::fs::write(world.path("rows.csv"), rows(3)).unwrap();
    let job = format!(
        "name = \"held\"\n[api]\nkind = \"links\"\n[input]\npath = \"{}\"\nkey = \"{{id}}\"\n[link]\namount = \
         \"{{amount}}\"\namount_unit = \"minor\"\ncurrency = \"thb\"\ntitle = \"{{title}}\"\ndescription = \"{{title}}\"\n\
         [limits]\nrates = [\"20/s\", \"3/3s\"]\n",
        world.path("rows.csv").display()
    );
    std::fs::write(world.path("held.toml"), job).unwrap();
    let job = world.path("held.toml");
    let job = job.to_str().unwrap();
    world.run_job(job, &[]).code(0);
    std::fs::write(world.path("rows.csv"), rows(4)).unwrap();
    let ledger = world.path("ledger.jsonl");
    let validated = world.linkbatch(&["validate", job, "--ledger", ledger.to_str().unwrap()]).code(0);
    let eta = validated.stdout.lines().find(|l| l.contains("ETA under")).unwrap().to_owned();
    // The window frees 3 s after the first run's first request, however long this took to get here.
    assert!(["1s", "2s", "3s"].iter().any(|s| eta == format!("  ETA under 20/s, 3/3s: {s} for 1 request")), "{eta}");
    let ran = world.run_job(job, &[]).code(0);
    let said: Vec<&str> = ran.stderr.lines().filter_map(|l| l.split_once(" INFO ").map(|(_, m)| m)).collect();
    let waited = said.iter().find(|m| m.starts_with("waiting ")).unwrap_or_else(|| panic!("{}", ran.stderr));
    assert!(
        waited.ends_with(
            " for the 3/3s window: what was sent in its last 3s (by this run or an earlier one, as the ledger says) \
             fills it"
        ),
        "{waited}"
    );
}
