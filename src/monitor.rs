//! Telling the monitors operators already run that a job ran, as the tools beside it do: a ping in
//! Healthchecks' protocol (`<ping>/start`, then `<ping>` on exit 0 or `<ping>/<code>`), and a Prometheus
//! textfile for the `node_exporter` textfile collector, written atomically.
//!
//! Owns what a monitor hears. Never changes a run's outcome (a monitor that cannot be reached is a log
//! line), never follows a redirect, and never carries row data, an amount, an address or a key: only
//! counts, the exit code and times, under the job's name.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::job::MonitorSpec;

/// A `[monitor]` that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MonitorError {
    /// The ping URL is not https (or http on loopback).
    #[error("[monitor] ping {0}")]
    Ping(String),
    /// The textfile's name is not a `.prom` file.
    #[error("[monitor] textfile {0} must end in .prom (node_exporter's textfile collector reads only those)")]
    Textfile(PathBuf),
}

/// What a finished command tells the monitors.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The exit code.
    pub code: u8,
    /// Rows by output status.
    pub rows: BTreeMap<String, u64>,
    /// Answers by HTTP status (0: no answer).
    pub answers: BTreeMap<u16, u64>,
    /// How long the command took.
    pub elapsed: Duration,
}

/// The monitors of one job.
#[derive(Debug, Clone)]
pub struct Monitor {
    job: String,
    ping: Option<url::Url>,
    textfile: Option<PathBuf>,
    http: reqwest::Client,
}

/// A monitor gets this long to answer; a run does not wait on it longer.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

impl Monitor {
    /// The job's monitors, checked; `None` when it has none.
    pub fn new(job: &str, spec: &MonitorSpec) -> Result<Option<Monitor>, MonitorError> {
        if spec.ping.is_none() && spec.textfile.is_none() {
            return Ok(None);
        }
        let ping = match &spec.ping {
            Some(text) => {
                crate::plan::check_base_url(text).map_err(MonitorError::Ping)?;
                Some(url::Url::parse(text.trim_end_matches('/')).map_err(|e| MonitorError::Ping(e.to_string()))?)
            }
            None => None,
        };
        if let Some(path) = &spec.textfile
            && path.extension().is_none_or(|e| e != "prom")
        {
            return Err(MonitorError::Textfile(path.clone()));
        }
        let http = reqwest::Client::builder()
            .user_agent(crate::api::USER_AGENT)
            .timeout(PING_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Ok(Some(Monitor { job: job.to_owned(), ping, textfile: spec.textfile.clone(), http }))
    }

    /// A command that sends is starting: `<ping>/start`.
    pub async fn start(&self) {
        self.send_ping("start").await;
    }

    /// The command ended: `<ping>` (exit 0) or `<ping>/<code>`, then the textfile.
    pub async fn finish(&self, report: &Report) {
        let suffix = if report.code == 0 { String::new() } else { report.code.to_string() };
        self.send_ping(&suffix).await;
        if let Some(path) = &self.textfile
            && let Err(e) = write_textfile(path, &self.job, report, SystemTime::now())
        {
            tracing::warn!(textfile = %path.display(), "could not write the metrics textfile: {e}");
        }
    }

    async fn send_ping(&self, suffix: &str) {
        let Some(base) = &self.ping else { return };
        let url = if suffix.is_empty() { base.to_string() } else { format!("{base}/{suffix}") };
        // The URL holds the check's token: logs name its host alone.
        let host = base.host_str().unwrap_or_default().to_owned();
        match self.http.post(url).body("").send().await {
            Ok(answer) if answer.status().is_success() => {
                tracing::debug!(
                    host,
                    signal = if suffix.is_empty() { "success" } else { suffix },
                    "pinged the monitor"
                );
            }
            Ok(answer) => tracing::warn!(host, status = answer.status().as_u16(), "the monitor refused the ping"),
            Err(e) => tracing::warn!(host, "the monitor could not be reached: {}", crate::api::describe(&e)),
        }
    }
}

/// Writes the metrics beside `path` and renames them into place. The time of the last success is carried
/// from the file it replaces when this command did not succeed. A file there that holds no linkbatch
/// metrics is someone else's: left alone.
fn write_textfile(path: &Path, job: &str, report: &Report, now: SystemTime) -> std::io::Result<()> {
    let previous = match std::fs::read_to_string(path) {
        Ok(text) if !text.contains("# TYPE linkbatch_") => {
            return Err(std::io::Error::other("it exists and holds no linkbatch metrics: left as it is"));
        }
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let seconds = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let last_success = if report.code == 0 {
        Some(seconds(now))
    } else {
        previous.as_deref().and_then(|text| value_of(text, "linkbatch_last_success_timestamp_seconds"))
    };
    let text = metrics(job, report, seconds(now), last_success);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // node_exporter reads only `*.prom`: the temporary name is not one, so a half-written file is never read.
    let temporary =
        dir.join(format!(".{}.{}.tmp", path.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
    let written = std::fs::write(&temporary, text.as_bytes())
        .and_then(|()| std::fs::File::open(&temporary)?.sync_all())
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// The value of a metric in a textfile this module wrote.
fn value_of(text: &str, metric: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(metric) && l[metric.len()..].starts_with('{'))?.rsplit(' ').next()?.parse().ok()
}

/// The Prometheus text format: gauges of the last command (they describe one run, so none is a counter).
fn metrics(job: &str, report: &Report, now: f64, last_success: Option<f64>) -> String {
    let job = escape(job);
    let mut text = String::new();
    let mut family = |name: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(text, "# HELP linkbatch_{name} {help}\n# TYPE linkbatch_{name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(text, "linkbatch_{name}{{job=\"{job}\"{labels}}} {value}");
        }
    };
    let rows: Vec<_> = report.rows.iter().map(|(s, n)| (format!(",status=\"{}\"", escape(s)), n.to_string())).collect();
    family("rows", "Rows of the last run by output status.", &rows);
    let answers: Vec<_> = report
        .answers
        .iter()
        .map(|(s, n)| {
            (format!(",status=\"{}\"", if *s == 0 { "none".to_owned() } else { s.to_string() }), n.to_string())
        })
        .collect();
    family("requests", "Requests of the last run by HTTP status of the answer (none: no answer).", &answers);
    let limited = report.answers.get(&429).copied().unwrap_or(0);
    family("rate_limited", "Answers 429 (rate limited) in the last run.", &[(String::new(), limited.to_string())]);
    let elapsed = format!("{:.3}", report.elapsed.as_secs_f64());
    family("duration_seconds", "How long the last run took.", &[(String::new(), elapsed)]);
    family(
        "exit_code",
        "The last run's exit code (0: every row has a link).",
        &[(String::new(), report.code.to_string())],
    );
    family("last_run_timestamp_seconds", "When the last run ended.", &[(String::new(), format!("{now:.3}"))]);
    if let Some(at) = last_success {
        family(
            "last_success_timestamp_seconds",
            "When a run last ended with exit 0.",
            &[(String::new(), format!("{at:.3}"))],
        );
    }
    text
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(code: u8) -> Report {
        Report {
            code,
            rows: [("created".to_owned(), 3), ("failed".to_owned(), 1)].into(),
            answers: [(200, 3), (400, 1), (429, 2)].into(),
            elapsed: Duration::from_millis(1500),
        }
    }

    #[test]
    fn the_textfile_names_the_job_and_carries_the_last_success() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("linkbatch.prom");
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        write_textfile(&path, "nightly \"subs\"", &report(0), at(1000)).unwrap();
        write_textfile(&path, "nightly \"subs\"", &report(3), at(2000)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("linkbatch_rows{job=\"nightly \\\"subs\\\"\",status=\"created\"} 3\n"), "{text}");
        assert!(text.contains("linkbatch_requests{job=\"nightly \\\"subs\\\"\",status=\"429\"} 2\n"), "{text}");
        assert!(text.contains("linkbatch_rate_limited{job=\"nightly \\\"subs\\\"\"} 2\n"), "{text}");
        assert!(text.contains("linkbatch_exit_code{job=\"nightly \\\"subs\\\"\"} 3\n"), "{text}");
        assert!(text.contains("linkbatch_last_run_timestamp_seconds{job=\"nightly \\\"subs\\\"\"} 2000.000\n"));
        assert!(text.contains("linkbatch_last_success_timestamp_seconds{job=\"nightly \\\"subs\\\"\"} 1000.000\n"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn a_file_that_is_not_ours_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.prom");
        std::fs::write(&path, "# TYPE node_thing gauge\nnode_thing 1\n").unwrap();
        assert!(write_textfile(&path, "j", &report(0), SystemTime::now()).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# TYPE node_thing gauge\nnode_thing 1\n");
    }

    #[test]
    fn a_ping_must_be_https_and_a_textfile_prom() {
        let spec =
            |ping: &str, textfile: &str| MonitorSpec { ping: Some(ping.into()), textfile: Some(textfile.into()) };
        assert!(Monitor::new("j", &spec("http://hc.example.com/ping/abc", "m.prom")).is_err());
        assert!(Monitor::new("j", &spec("https://hc.example.com/ping/abc", "m.txt")).is_err());
        assert!(Monitor::new("j", &spec("http://127.0.0.1:9/ping", "m.prom")).unwrap().is_some());
        assert!(Monitor::new("j", &MonitorSpec::default()).unwrap().is_none());
    }
}
