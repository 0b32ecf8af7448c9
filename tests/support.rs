//! The test builder: a sandbox on an ephemeral port, a scratch directory, and the binary run against them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use linkbatch::sandbox::{Sandbox, SandboxConfig, Stats};

/// A sandbox, a scratch directory and a key: one test's world.
pub(crate) struct World {
    pub rt: tokio::runtime::Runtime,
    pub sandbox: Sandbox,
    pub dir: tempfile::TempDir,
    pub key: String,
}

impl World {
    pub(crate) fn new() -> World {
        World::with(SandboxConfig::default())
    }

    pub(crate) fn with(config: SandboxConfig) -> World {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let sandbox = rt.block_on(Sandbox::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))).unwrap();
        World { rt, sandbox, dir: tempfile::tempdir().unwrap(), key: Sandbox::test_key(rand::random()) }
    }

    pub(crate) fn base_url(&self) -> String {
        self.sandbox.base_url().to_owned()
    }

    pub(crate) fn stats(&self) -> Stats {
        self.sandbox.stats()
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `linkbatch ARGS` from the repository root (so the jobs' `samples/` paths resolve), with the key set.
    pub(crate) fn linkbatch(&self, args: &[&str]) -> Cmd {
        let mut command = Command::new(env!("CARGO_BIN_EXE_linkbatch"));
        command.current_dir(env!("CARGO_MANIFEST_DIR")).args(args).env("OMISE_SECRET_KEY", &self.key).env("CI", "true");
        command.env_remove("LINKBATCH_LOG");
        Cmd { command }
    }

    /// `linkbatch run JOB` against this sandbox, with output and ledger in the scratch directory.
    pub(crate) fn run_job(&self, job: &str, extra: &[&str]) -> Cmd {
        self.job("run", job, extra)
    }

    /// `linkbatch COMMAND JOB` (`run`, `refresh`) against this sandbox, output and ledger in the scratch directory.
    pub(crate) fn job(&self, command: &str, job: &str, extra: &[&str]) -> Cmd {
        let (output, ledger, base) = (self.path("out.csv"), self.path("ledger.jsonl"), self.base_url());
        let mut args = vec![command, job, "--base-url", &base];
        args.extend(["--output", output.to_str().unwrap(), "--ledger", ledger.to_str().unwrap()]);
        args.extend(extra);
        self.linkbatch(&args)
    }

    /// The events of one type in the scratch ledger, in order.
    pub(crate) fn ledger_events(&self, kind: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("ledger.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["type"] == kind)
            .collect()
    }

    pub(crate) fn output(&self) -> Vec<BTreeMap<String, String>> {
        read_csv(&self.path("out.csv"))
    }

    /// A blocking HTTP call to the sandbox, for the API tests.
    pub(crate) fn http(&self) -> Http<'_> {
        Http { world: self, client: reqwest::Client::new() }
    }
}

pub(crate) struct Http<'a> {
    world: &'a World,
    client: reqwest::Client,
}

/// Status and JSON body of one answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: serde_json::Value,
}

impl Http<'_> {
    pub(crate) fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        self.world.rt.block_on(async {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            let body = response.json().await.unwrap_or(serde_json::Value::Null);
            Answer { status, retry_after, body }
        })
    }

    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.world.base_url()))
    }

    /// A classic request with Basic auth as the official libraries send it.
    pub(crate) fn classic(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request(method, path).basic_auth(&self.world.key, Some(""))
    }

    pub(crate) fn create(&self, form: &[(&str, &str)]) -> Answer {
        self.send(self.classic(reqwest::Method::POST, "/links").form(form))
    }
}

pub(crate) struct Cmd {
    command: Command,
}

impl Cmd {
    pub(crate) fn args(mut self, args: &[&str]) -> Cmd {
        self.command.args(args);
        self
    }

    pub(crate) fn env(mut self, name: &str, value: &str) -> Cmd {
        self.command.env(name, value);
        self
    }

    pub(crate) fn current_dir(mut self, dir: &Path) -> Cmd {
        self.command.current_dir(dir);
        self
    }

    /// Runs and checks the exit code and the whole of stderr.
    pub(crate) fn says(self, code: i32, stderr: &str) -> Outcome {
        let outcome = self.code(code);
        assert_eq!(outcome.stderr, stderr, "stderr");
        outcome
    }

    pub(crate) fn env_remove(mut self, name: &str) -> Cmd {
        self.command.env_remove(name);
        self
    }

    /// Starts it in the background, its output kept for [`Running::finish`].
    pub(crate) fn spawn_capturing(mut self) -> Running {
        let child =
            self.command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        Running { child }
    }

    /// The command itself, output discarded, to start (and kill) as often as a test likes.
    pub(crate) fn command_for_spawn(mut self) -> Command {
        self.command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        self.command
    }

    /// Starts it in the background, output discarded.
    pub(crate) fn spawn(mut self) -> std::process::Child {
        self.command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap()
    }

    pub(crate) fn run(mut self) -> Outcome {
        let output = self.command.output().unwrap();
        Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs and checks the exit code, showing stderr when it differs.
    pub(crate) fn code(self, expected: i32) -> Outcome {
        let outcome = self.run();
        assert_eq!(outcome.code, expected, "exit code\n--- stdout\n{}\n--- stderr\n{}", outcome.stdout, outcome.stderr);
        outcome
    }
}

/// A command running in the background.
pub(crate) struct Running {
    child: std::process::Child,
}

impl Running {
    /// Sends it a signal (`INT`, `TERM`) as a shell would.
    pub(crate) fn signal(&self, name: &str) {
        let sent = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(sent.success(), "kill -{name}");
    }

    /// Whether it has ended (its output is still there for [`Running::finish`]).
    pub(crate) fn ended(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits for it to end.
    pub(crate) fn finish(self) -> Outcome {
        let output = self.child.wait_with_output().unwrap();
        Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// The line that says why a command stopped, exactly as printed (`error: …`); what a cron mail shows.
    pub(crate) fn error(&self) -> &str {
        self.stderr.lines().rev().find(|l| l.starts_with("error: ")).unwrap_or("(no error line)")
    }

    /// The warnings logged, each as its message alone (the time and level cut).
    pub(crate) fn warnings(&self) -> Vec<&str> {
        self.stderr.lines().filter_map(|l| l.split_once("  WARN ").map(|(_, message)| message)).collect()
    }
}

pub(crate) fn read_csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| headers.iter().zip(r.unwrap().iter()).map(|(h, v)| (h.to_owned(), v.to_owned())).collect())
        .collect()
}

/// How many rows of the output have each status.
pub(crate) fn statuses(rows: &[BTreeMap<String, String>]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for row in rows {
        *counts.entry(row["status"].clone()).or_insert(0) += 1;
    }
    counts
}

pub(crate) fn count(rows: &[BTreeMap<String, String>], status: &str) -> usize {
    rows.iter().filter(|r| r["status"] == status).count()
}

pub(crate) fn requests(stats: &Stats) -> u64 {
    stats.requests.values().sum()
}

/// Faults for a sandbox, as (kind, probability) pairs.
pub(crate) fn faults(pairs: &[(linkbatch::sandbox::FaultKind, f64)]) -> Vec<linkbatch::sandbox::FaultSpec> {
    pairs.iter().map(|&(kind, probability)| linkbatch::sandbox::FaultSpec { kind, probability }).collect()
}

/// A sample job file with some of its fields changed, for one test. Every change names its field by path
/// (`"link.template_id"`); changing a field the sample does not have, or adding one it already has, panics,
/// so a test cannot quietly stop testing anything when a sample job changes.
pub(crate) struct JobFile {
    table: toml::Table,
}

impl JobFile {
    /// `jobs/NAME.toml`, as committed, to be written elsewhere: the files it reads stay the repository's
    /// (their paths made absolute), the files it writes go beside the copy (`../out/x.csv` is `out/x.csv`).
    pub(crate) fn sample(name: &str) -> JobFile {
        let path = format!("jobs/{name}.toml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut job = JobFile { table: text.parse().unwrap_or_else(|e| panic!("{path}: {e}")) };
        let jobs = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/");
        for read in ["input.path", "deliver.text_file", "deliver.html_file"] {
            job.rebase(read, |p| format!("{jobs}{p}"));
        }
        for written in ["output.path", "output.ledger"] {
            job.rebase(written, |p| p.strip_prefix("../").unwrap_or(p).to_owned());
        }
        job
    }

    /// Changes a path the sample may have (`section.field`), leaving the job as it is where it has none.
    fn rebase(&mut self, path: &str, to: impl Fn(&str) -> String) {
        let (section, field) = path.split_once('.').unwrap();
        let value = self.table.get_mut(section).and_then(toml::Value::as_table_mut).and_then(|t| t.get_mut(field));
        if let Some(toml::Value::String(value)) = value {
            *value = to(value);
        }
    }

    fn parent<'t>(table: &'t mut toml::Table, path: &str, create: bool) -> (&'t mut toml::Table, String) {
        let mut parts: Vec<&str> = path.split('.').collect();
        let field = parts.pop().unwrap().to_owned();
        let mut table = table;
        for part in parts {
            if create && !table.contains_key(part) {
                table.insert(part.to_owned(), toml::Value::Table(toml::Table::new()));
            }
            table = table.get_mut(part).and_then(toml::Value::as_table_mut).unwrap_or_else(|| panic!("no [{part}]"));
        }
        (table, field)
    }

    /// Changes a field the sample has.
    pub(crate) fn set(mut self, path: &str, value: impl Into<toml::Value>) -> JobFile {
        let (table, field) = Self::parent(&mut self.table, path, false);
        let old = table.insert(field, value.into());
        assert!(old.is_some(), "the sample job has no `{path}` to change");
        self
    }

    /// Removes a field the sample has.
    pub(crate) fn remove(mut self, path: &str) -> JobFile {
        let (table, field) = Self::parent(&mut self.table, path, false);
        assert!(table.remove(&field).is_some(), "the sample job has no `{path}` to remove");
        self
    }

    /// Adds a field (and its table) the sample does not have.
    pub(crate) fn add(mut self, path: &str, value: impl Into<toml::Value>) -> JobFile {
        let (table, field) = Self::parent(&mut self.table, path, true);
        let old = table.insert(field, value.into());
        assert!(old.is_none(), "the sample job already has `{path}`: use set");
        self
    }

    /// Writes the job as `NAME` in the world's scratch directory; returns its path.
    pub(crate) fn write(&self, world: &World, name: &str) -> String {
        let path = world.path(name);
        std::fs::write(&path, toml::to_string(&self.table).unwrap()).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

/// A fresh copy of `jobs/` and `samples/` (and an empty `home/`), as a user's checkout or `/etc/linkbatch`
/// holds them.
pub(crate) fn fresh_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["jobs", "samples"] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
        for file in std::fs::read_dir(folder).unwrap() {
            let file = file.unwrap().path();
            std::fs::copy(&file, dir.path().join(folder).join(file.file_name().unwrap())).unwrap();
        }
    }
    std::fs::create_dir(dir.path().join("home")).unwrap();
    dir
}

/// `text` with `from` replaced by `to`; panics when `from` is not there (the sample changed).
pub(crate) fn edited(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "`{from}` is not in the sample any more");
    text.replace(from, to)
}

/// A server on loopback that answers each `(method, path)` with a recorded answer of the real API (status
/// and body as Omise's libraries recorded them), and `not_found` to anything else. For contract tests of
/// the client: it answers what the real API answered, it does not echo.
pub(crate) struct Replay {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) base_url: String,
    hits: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Replay {
    pub(crate) fn start(answers: Vec<(&'static str, String, u16, String)>) -> Replay {
        use axum::http::{Method as M, StatusCode};
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let answers = std::sync::Arc::new(answers);
        let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = hits.clone();
        let app = axum::Router::new().fallback(move |method: M, uri: axum::http::Uri| {
            let answers = answers.clone();
            seen.lock().unwrap().push(method.to_string());
            async move {
                let found = answers.iter().find(|(m, p, _, _)| *m == method.as_str() && *p == uri.path());
                let (status, body) = found.map_or_else(
                    || (404, r#"{"object":"error","code":"not_found","message":"no recording"}"#.to_owned()),
                    |(_, _, status, body)| (*status, body.clone()),
                );
                (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body)
            }
        });
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        rt.spawn(async move { axum::serve(listener, app).await });
        Replay { rt, base_url, hits }
    }

    /// How many requests of this method came.
    pub(crate) fn hits(&self, method: &str) -> usize {
        self.hits.lock().unwrap().iter().filter(|m| *m == method).count()
    }
}
