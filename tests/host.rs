//! Running like the tools beside it: the monitors people have (a Healthchecks-style ping server and a
//! textfile), `--version` with its commit, completions a shell loads, manual pages, and the scheduler units
//! of `contrib/`, whose command lines must parse with linkbatch's own flags.

use std::sync::{Arc, Mutex};

use crate::support::{JobFile, World};

/// A ping server on loopback that answers 200 and keeps the path of every request.
struct PingServer {
    _rt: tokio::runtime::Runtime,
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl PingServer {
    fn start() -> PingServer {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        let app = axum::Router::new().fallback(move |method: axum::http::Method, uri: axum::http::Uri| {
            kept.lock().unwrap().push(format!("{method} {}", uri.path()));
            async { "OK" }
        });
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}/ping/5d1c0f3e", listener.local_addr().unwrap());
        rt.spawn(async move { axum::serve(listener, app).await });
        PingServer { _rt: rt, url, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn a_monitor_hears_the_start_and_the_end() {
    let world = World::new();
    let ping = PingServer::start();
    let textfile = world.path("metrics/linkbatch.prom");
    let job = JobFile::sample("event-tickets")
        .add("monitor.ping", ping.url.as_str())
        .add("monitor.textfile", textfile.to_str().unwrap())
        .write(&world, "monitored.toml");
    world.run_job(&job, &[]).code(0);
    assert_eq!(ping.seen(), ["POST /ping/5d1c0f3e/start", "POST /ping/5d1c0f3e"]);
    let metrics = std::fs::read_to_string(&textfile).unwrap();
    let rows = crate::support::read_csv(&world.path("out.csv")).len();
    assert!(
        metrics.contains(&format!("linkbatch_rows{{job=\"event-tickets\",status=\"created\"}} {rows}\n")),
        "{metrics}"
    );
    assert!(metrics.contains("linkbatch_exit_code{job=\"event-tickets\"} 0\n"), "{metrics}");
    assert!(
        metrics.contains(&format!("linkbatch_requests{{job=\"event-tickets\",status=\"200\"}} {rows}\n")),
        "{metrics}"
    );
    for private in ["Bangkok", "1200", "skey_"] {
        assert!(!metrics.contains(private), "row data in the metrics: {private}");
    }

    // An aborted run (a key the server refuses): `/3`, and the last success is kept.
    let success = metrics.lines().find(|l| l.starts_with("linkbatch_last_success")).unwrap().to_owned();
    let (output, ledger) = (world.path("other.csv"), world.path("other.jsonl"));
    let (output, ledger, base) = (output.to_str().unwrap(), ledger.to_str().unwrap(), world.base_url());
    world
        .linkbatch(&["run", &job, "--base-url", &base, "--output", output, "--ledger", ledger, "--live"])
        .env("OMISE_SECRET_KEY", "refused-key-1")
        .code(3);
    assert_eq!(ping.seen()[2..], ["POST /ping/5d1c0f3e/start", "POST /ping/5d1c0f3e/3"]);
    let metrics = std::fs::read_to_string(&textfile).unwrap();
    assert!(metrics.contains("linkbatch_exit_code{job=\"event-tickets\"} 3\n"), "{metrics}");
    assert!(metrics.contains("linkbatch_requests{job=\"event-tickets\",status=\"401\"} 1\n"), "{metrics}");
    assert!(metrics.contains(&format!("{success}\n")), "{metrics}");
}

#[test]
fn a_monitor_that_cannot_be_reached_changes_nothing() {
    let world = World::new();
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let job = JobFile::sample("event-tickets")
        .add("monitor.ping", format!("http://{dead}/ping/x"))
        .write(&world, "unmonitored.toml");
    world.run_job(&job, &[]).code(0);
    assert!(world.stats().creates > 0);
}

#[test]
fn version_names_the_commit() {
    let outcome = World::new().linkbatch(&["--version"]).code(0);
    let expected = std::process::Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output();
    let words: Vec<&str> = outcome.stdout.split_whitespace().collect();
    assert_eq!(words[..3], ["linkbatch", env!("CARGO_PKG_VERSION"), "(commit"], "{}", outcome.stdout);
    // In a git checkout (CI's is one) the commit is HEAD's, `-dirty` when the tree has changes.
    if let Some(head) = expected.ok().filter(|o| o.status.success()) {
        let head = String::from_utf8(head.stdout).unwrap();
        assert!(words[3].starts_with(head.trim()), "{} against HEAD {head}", outcome.stdout);
    }
}

#[test]
fn completions_load_in_bash() {
    let world = World::new();
    let script = world.path("linkbatch.bash");
    let outcome = world.linkbatch(&["completions", "bash"]).code(0);
    std::fs::write(&script, &outcome.stdout).unwrap();
    let loaded = std::process::Command::new("bash")
        .args(["--noprofile", "--norc", "-c", &format!("source {} && complete -p linkbatch", script.display())])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&loaded.stdout),
        "complete -o bashdefault -o default -o nosort -F _linkbatch linkbatch\n"
    );
    for shell in ["zsh", "fish"] {
        assert!(world.linkbatch(&["completions", shell]).code(0).stdout.contains("linkbatch"));
    }
}

#[test]
fn man_writes_a_page_per_command_and_the_job_files() {
    let world = World::new();
    let dir = world.path("man");
    world.linkbatch(&["man", dir.to_str().unwrap()]).code(0);
    let mut pages: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    pages.sort();
    let commands = [
        "export",
        "man",
        "completions",
        "deliver",
        "listen",
        "recover",
        "refresh",
        "retire",
        "run",
        "sandbox",
        "settle",
        "status",
        "templates",
        "validate",
    ];
    let mut expected: Vec<String> = commands.iter().map(|c| format!("linkbatch-{c}.1")).collect();
    expected.extend(["linkbatch.1".to_owned(), "linkbatch-job.5".to_owned()]);
    expected.sort();
    assert_eq!(pages, expected);
    let job = std::fs::read_to_string(dir.join("linkbatch-job.5")).unwrap();
    assert!(job.contains("\n.TH linkbatch-job 5\n"), "{job}");
    // Every job field is there, [retry] outage too (it was missing).
    assert!(job.contains("\\fBoutage\\fR = \\fI\"15m\"\\fR"), "{job}");
    // The examples and exit codes sit where manual readers look, not under clap's EXTRA.
    let top = std::fs::read_to_string(dir.join("linkbatch.1")).unwrap();
    let sections: Vec<&str> = top.lines().filter(|l| l.starts_with(".SH ")).collect();
    assert_eq!(
        sections,
        [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH OPTIONS",
            ".SH SUBCOMMANDS",
            ".SH EXAMPLES",
            ".SH \"EXIT STATUS\"",
            ".SH VERSION"
        ]
    );
    // A file there that is not a linkbatch page is never written over.
    std::fs::write(dir.join("linkbatch-run.1"), "my notes\n").unwrap();
    world.linkbatch(&["man", dir.to_str().unwrap()]).code(2);
    assert_eq!(std::fs::read_to_string(dir.join("linkbatch-run.1")).unwrap(), "my notes\n");
}

/// The command a contrib file runs, as the shell would hand it to linkbatch: from the word `linkbatch` on,
/// to a redirection or the end of the quoted script, with the month `date` would print.
fn command_in(text: &str) -> Vec<String> {
    let line = text.lines().find(|l| !l.trim_start().starts_with('#') && l.contains("linkbatch run")).unwrap();
    let from = line.find("linkbatch run").unwrap();
    let command = line[from..].split(">>").next().unwrap().trim_end().trim_end_matches('\'');
    let mut command = command.to_owned();
    for month in ["$(date +%%Y-%%m)", "$(date +\\%Y-\\%m)", "$(date +%Y-%m)"] {
        command = command.replace(month, "2026-12");
    }
    command.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn the_contrib_units_run_commands_linkbatch_takes() {
    for (file, must) in [
        (
            "contrib/linkbatch-monthly.service",
            &["LoadCredential=OMISE_SECRET_KEY:", "StateDirectory=linkbatch", "Type=oneshot"][..],
        ),
        ("contrib/crontab", &["OMISE_SECRET_KEY_FILE="][..]),
        (
            "contrib/kubernetes-cronjob.yaml",
            &["concurrencyPolicy: Forbid", "OMISE_SECRET_KEY_FILE", "persistentVolumeClaim", "ping = "][..],
        ),
    ] {
        let text = std::fs::read_to_string(file).unwrap();
        let command = command_in(&text);
        assert!(
            command.iter().any(|w| w == "--var") && command.contains(&"billing_month=2026-12".to_owned()),
            "{file}: {command:?}"
        );
        linkbatch::cli::parses(&command).unwrap_or_else(|e| panic!("{file}: {command:?}\n{e}"));
        for word in must {
            assert!(text.contains(word), "{file} lacks {word}");
        }
    }
    // The listener's unit: both secrets as credentials, and a command linkbatch takes.
    let listen = std::fs::read_to_string("contrib/linkbatch-listen.service").unwrap();
    let exec = listen.lines().find_map(|l| l.strip_prefix("ExecStart=/bin/sh -c 'exec ")).unwrap();
    let command: Vec<String> = exec.trim_end_matches('\'').split_whitespace().map(str::to_owned).collect();
    assert_eq!(command[..3], ["/usr/local/bin/linkbatch", "listen", "/etc/linkbatch/event-tickets.toml"]);
    linkbatch::cli::parses(&command).unwrap_or_else(|e| panic!("linkbatch-listen.service: {command:?}\n{e}"));
    for word in ["LoadCredential=OMISE_SECRET_KEY:", "LoadCredential=OMISE_WEBHOOK_SECRET:", "--addr 127.0.0.1:"] {
        assert!(listen.contains(word), "linkbatch-listen.service lacks {word}");
    }
    // The timer starts the service it is named after.
    assert!(std::fs::read_to_string("contrib/linkbatch-monthly.timer").unwrap().contains("OnCalendar="));
    // The CronJob's job file is a job linkbatch reads.
    let yaml = std::fs::read_to_string("contrib/kubernetes-cronjob.yaml").unwrap();
    let start = yaml.find("monthly-subscriptions.toml: |\n").unwrap() + "monthly-subscriptions.toml: |\n".len();
    let lines: Vec<&str> =
        yaml[start..].lines().take_while(|l| l.starts_with("    ") || l.is_empty()).map(str::trim_start).collect();
    let job = lines.join("\n");
    linkbatch::job::JobSpec::parse(&job).unwrap_or_else(|e| panic!("the CronJob's job file: {e}\n{job}"));
    // And it plans: every field it needs (amount_unit, [lifecycle] for --retire) is there.
    let world = World::new();
    std::fs::write(world.path("cronjob.toml"), &job).unwrap();
    let (output, ledger) = (world.path("o.csv"), world.path("l.jsonl"));
    world
        .linkbatch(&["validate", world.path("cronjob.toml").to_str().unwrap(), "--input", "samples/subscriptions.csv"])
        .args(&["--output", output.to_str().unwrap(), "--ledger", ledger.to_str().unwrap()])
        .args(&["--var", "billing_month=2026-12"])
        .code(0);
}

/// The systemd unit's command, with its job in a folder of its own (`/etc/linkbatch`), run from its state
/// directory (`/var/lib/linkbatch`) as `WorkingDirectory=` says, the key as a credential: the job's input is
/// read beside the job, the output and ledger go where the flags say, and the month's links are made.
#[test]
fn the_systemd_unit_runs_a_job_kept_in_another_folder() {
    let world = World::new();
    let (etc, state, creds) = (world.path("etc/linkbatch"), world.path("var/lib/linkbatch"), world.path("creds"));
    for dir in [&etc, &state, &creds] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::copy("samples/subscriptions.csv", etc.join("subscriptions.csv")).unwrap();
    let job = JobFile::sample("monthly-subscriptions")
        .set("input.path", "subscriptions.csv")
        .add("api.base_url", world.base_url())
        .write(&world, "etc/linkbatch/monthly-subscriptions.toml");
    // A live key made for this test: the unit runs with --live.
    let key = linkbatch::sandbox::Sandbox::test_key(rand::random()).replace("skey_test_", "skey_live_");
    std::fs::write(creds.join("OMISE_SECRET_KEY"), key).unwrap();
    let unit = std::fs::read_to_string("contrib/linkbatch-monthly.service").unwrap();
    assert!(unit.contains("WorkingDirectory=/var/lib/linkbatch"), "{unit}");
    let command: Vec<String> = command_in(&unit)
        .iter()
        .skip(1)
        .map(|w| {
            w.replace("/etc/linkbatch", etc.to_str().unwrap()).replace("/var/lib/linkbatch", state.to_str().unwrap())
        })
        .collect();
    assert_eq!(command[1], job);
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    world
        .linkbatch(&command)
        .current_dir(&state)
        .env_remove("OMISE_SECRET_KEY")
        .env("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())
        .code(0);
    let output = crate::support::read_csv(&state.join("monthly-subscriptions-2026-12.csv"));
    assert_eq!(crate::support::count(&output, "created"), 24);
    assert!(state.join("monthly-subscriptions.ledger.jsonl").is_file());
    assert_eq!(std::fs::read_dir(&etc).unwrap().count(), 2, "nothing written beside the job");
}
