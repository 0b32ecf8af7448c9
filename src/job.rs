//! The job file as written: TOML deserialised into a [`JobSpec`], field names exactly as docs/reference.md, "The job file", has them.
//!
//! This is the first of two stages: a `JobSpec` may still be wrong against its input (a placeholder naming no
//! column); [`crate::plan`] checks it and only a `Plan` can be run. Unknown fields are errors, with their line.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::money::AmountUnit;
use crate::terms::{ApiKind, AuthScheme, InputFormat};

/// A value that is either fixed in the job or a template over the row (`multiple = true` or `"{multi}"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Field<T> {
    /// The same for every row.
    Fixed(T),
    /// Rendered per row.
    Template(String),
}

/// `[api]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSpec {
    /// `links` or `links_plus`.
    pub kind: ApiKind,
    /// Environment variable holding the secret key.
    #[serde(default = "default_key_env")]
    pub key_env: String,
    /// Overrides the production base URL (https, or http on loopback).
    pub base_url: Option<String>,
    /// Per-request timeout; a timeout after sending is an uncertain outcome.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Links+ only: how the key is sent.
    #[serde(default)]
    pub auth: AuthScheme,
    /// The key's mode, for a key that does not say (a Payment Links+ API key); a secret key's prefix says.
    pub mode: Option<crate::terms::Mode>,
}

/// `[input]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The rows (`--input` replaces it).
    pub path: Option<PathBuf>,
    /// Taken from the extension when absent.
    pub format: Option<InputFormat>,
    /// The row key template, unique per row (`{subscription_id}:{billing_month}`).
    pub key: String,
    /// CSV: the character between fields (`","` when absent; `";"` as Excel writes in many countries,
    /// `"\t"` for TSV).
    pub delimiter: Option<String>,
    /// A spreadsheet (`.xlsx`, `.ods`): the sheet to read (the first when absent).
    pub sheet: Option<String>,
}

/// `[link]`: templates for each field of the link.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Amount template.
    pub amount: String,
    /// Whether the amount is in minor or major units; required when the amount comes from a column.
    #[serde(default)]
    pub amount_unit: Option<AmountUnit>,
    /// Currency (required for classic links; Links+ defaults to the template's).
    pub currency: Option<String>,
    /// Classic: title.
    pub title: Option<String>,
    /// Classic: description.
    pub description: Option<String>,
    /// Classic: multiple-use.
    pub multiple: Option<Field<bool>>,
    /// Links+: team.
    pub team_id: Option<Field<u64>>,
    /// Links+: template.
    pub template_id: Option<Field<u64>>,
    /// Links+: link name.
    pub name: Option<String>,
    /// Links+: multiple-use.
    pub multiple_usage: Option<Field<bool>>,
    /// Links+: per-link webhook (https only).
    pub custom_webhook: Option<String>,
    /// Classic: `[link.metadata]`, a template per metadata key (`invoice_id = "{invoice}"`).
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Classic: send the row's key as metadata `linkbatch_key` (reconciliation and `recover` match by it).
    #[serde(default)]
    pub key_in_metadata: bool,
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Sliding windows, e.g. `["60/min", "1000/h"]`.
    #[serde(default = "default_rates")]
    pub rates: Vec<String>,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// The account's cap on active links (standard accounts: 100); `validate` and `run` refuse a job that
    /// would pass it.
    #[serde(default)]
    pub active_links: Option<u64>,
}

/// `[retry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts per request, the first included.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// First backoff delay.
    #[serde(default = "default_base_delay")]
    pub base_delay: String,
    /// Largest backoff delay.
    #[serde(default = "default_max_delay")]
    pub max_delay: String,
    /// Consecutive permanent failures with one code that stop dispatch (a refusal every row would get).
    #[serde(default = "default_breaker")]
    pub breaker: u32,
    /// How long the run waits for a server it cannot reach before it stops (exit 3, unsent rows pending).
    #[serde(default = "default_outage")]
    pub outage: String,
}

/// `[output]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// The output CSV (`--output` replaces it).
    pub path: Option<PathBuf>,
    /// The ledger (`--ledger` replaces it); defaults to the output path with `.ledger.jsonl`.
    pub ledger: Option<PathBuf>,
    /// Input columns copied into the output.
    #[serde(default)]
    pub columns: Vec<String>,
}

/// `[monitor]` as written in the job.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSpec {
    /// Healthchecks-style ping URL (https, or http on loopback).
    pub ping: Option<String>,
    /// Where the Prometheus textfile goes (`….prom`).
    pub textfile: Option<PathBuf>,
}

/// `[deliver]`: one message to each row's customer once its link exists (docs/reference.md, "Delivery").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverSpec {
    /// The recipient's address, a template (`"{customer_email}"`).
    pub to: String,
    /// The recipient's name, a template.
    pub to_name: Option<String>,
    /// The sender (`"Billing <billing@example.com>"`).
    pub from: String,
    /// Where replies go.
    pub reply_to: Option<String>,
    /// The subject, a template.
    pub subject: String,
    /// The plain-text body, a template (or `text_file`).
    pub text: Option<String>,
    /// A file holding the plain-text body (a path read as `[input] path` is).
    pub text_file: Option<PathBuf>,
    /// An HTML body, a template (or `html_file`).
    pub html: Option<String>,
    /// A file holding the HTML body.
    pub html_file: Option<PathBuf>,
    /// The mail server: `smtps://host:465`, `smtp://host:587` (STARTTLS required), plain only on loopback.
    pub smtp: String,
    /// The variable holding the SMTP user name (also read from `<NAME>_FILE` or a credential).
    pub user_env: Option<String>,
    /// The variable holding the SMTP password (also read from `<NAME>_FILE` or a credential).
    pub password_env: Option<String>,
    /// Sliding windows for messages (mail providers limit sending too).
    #[serde(default = "default_mail_rates")]
    pub rates: Vec<String>,
    /// `[deliver.reminder]`.
    pub reminder: Option<ReminderSpec>,
}

/// `[deliver.reminder]`: a reminder to each row whose link is still unpaid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReminderSpec {
    /// How long after the row's last message a reminder goes (`"3d"`).
    pub after: String,
    /// The reminder's subject, a template.
    pub subject: String,
    /// Its plain-text body (or `text_file`).
    pub text: Option<String>,
    /// A file holding it.
    pub text_file: Option<PathBuf>,
    /// Its HTML body (or `html_file`).
    pub html: Option<String>,
    /// A file holding it.
    pub html_file: Option<PathBuf>,
    /// Reminders per row at most.
    #[serde(default = "default_at_most")]
    pub at_most: u32,
}

/// `[lifecycle]`: when the job's classic links end (docs/reference.md, "A link's life").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleSpec {
    /// A link with no successful payment this long after it was made is retired (`"30d"`).
    pub expire_after: Option<String>,
    /// A template giving a whole number: a multiple-use link with that many successful payments, net of
    /// refunds, is retired.
    pub capacity: Option<String>,
    /// A link whose row is no longer in the input is retired.
    #[serde(default)]
    pub prune: bool,
}

/// `[listen]`, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSpec {
    /// The variable that holds the webhook secret (also `<name>_FILE`, or a systemd credential): a webhook
    /// whose signature does not verify with it is refused (401). Without it `listen` serves loopback only.
    pub secret_env: Option<String>,
}

/// A job file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Job name, used in logs and default paths.
    pub name: String,
    /// `[api]`.
    pub api: ApiSpec,
    /// `[input]`.
    pub input: InputSpec,
    /// `[link]`.
    pub link: LinkSpec,
    /// `[limits]`.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// `[retry]`.
    #[serde(default)]
    pub retry: RetrySpec,
    /// `[output]`.
    #[serde(default)]
    pub output: OutputSpec,
    /// `[monitor]`: a ping and a metrics textfile.
    #[serde(default)]
    pub monitor: MonitorSpec,
    /// `[deliver]`: email each row's link to its customer.
    pub deliver: Option<DeliverSpec>,
    /// `[lifecycle]`: when the job's links end.
    pub lifecycle: Option<LifecycleSpec>,
    /// `[listen]`: how `linkbatch listen` verifies the webhooks it takes.
    #[serde(default)]
    pub listen: ListenSpec,
    /// The job file's folder, which its relative paths are read from (empty for a job parsed from text:
    /// its paths stay as written).
    #[serde(skip)]
    pub dir: PathBuf,
}

fn default_key_env() -> String {
    "OMISE_SECRET_KEY".into()
}
fn default_timeout() -> String {
    "30s".into()
}
fn default_rates() -> Vec<String> {
    vec!["60/min".into(), "1000/h".into()]
}
fn default_concurrency() -> usize {
    4
}
fn default_attempts() -> u32 {
    6
}
fn default_base_delay() -> String {
    "1s".into()
}
fn default_max_delay() -> String {
    "60s".into()
}
fn default_breaker() -> u32 {
    10
}
fn default_mail_rates() -> Vec<String> {
    vec!["14/s".into()]
}
fn default_at_most() -> u32 {
    2
}
fn default_outage() -> String {
    "15m".into()
}

impl Default for LimitsSpec {
    fn default() -> Self {
        LimitsSpec { rates: default_rates(), concurrency: default_concurrency(), active_links: None }
    }
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            attempts: default_attempts(),
            base_delay: default_base_delay(),
            max_delay: default_max_delay(),
            breaker: default_breaker(),
            outage: default_outage(),
        }
    }
}

/// A job file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The file could not be opened.
    #[error("cannot read job file {path}: {source}")]
    Read {
        /// The job file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Bytes that are not UTF-8, at this line and column.
    #[error("job file {path}: line {line}, column {column}: not valid UTF-8 (a job file is UTF-8 text)")]
    Encoding {
        /// The job file.
        path: PathBuf,
        /// 1-based line of the first bad byte.
        line: usize,
        /// 1-based column (in bytes) of it.
        column: usize,
    },
    /// TOML or schema error; the message carries line and column.
    #[error("job file {path}: {message}")]
    Parse {
        /// The job file.
        path: PathBuf,
        /// The parser's message, with the line.
        message: String,
    },
}

impl JobSpec {
    /// Reads and parses a job file.
    pub fn load(path: &Path) -> Result<JobSpec, JobError> {
        let bytes = std::fs::read(path).map_err(|source| JobError::Read { path: path.to_owned(), source })?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let before = &bytes[..e.valid_up_to()];
            let line = memchr::memchr_iter(b'\n', before).count() + 1;
            let column = before.len() - before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
            JobError::Encoding { path: path.to_owned(), line, column }
        })?;
        let mut spec = Self::parse(text).map_err(|message| JobError::Parse { path: path.to_owned(), message })?;
        spec.dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Ok(spec)
    }

    /// A path the job names, as it is opened: a relative one is read beside the job file, wherever linkbatch
    /// runs from (as Cargo and systemd read the paths in their files); an absolute one as it is.
    /// `jobs/` and `../samples/x.csv` is `samples/x.csv`: a `..` takes back the folder before it unless that
    /// folder is a symbolic link (whose `..` is elsewhere).
    pub fn beside(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            return path.to_owned();
        }
        let mut found = PathBuf::new();
        for part in self.dir.join(path).components() {
            match part {
                Component::CurDir => {}
                // The root's parent is the root.
                Component::ParentDir if matches!(found.components().next_back(), Some(Component::RootDir)) => {}
                Component::ParentDir
                    if matches!(found.components().next_back(), Some(Component::Normal(_))) && !found.is_symlink() =>
                {
                    found.pop();
                }
                other => found.push(other),
            }
        }
        found
    }

    /// Parses job TOML; the error names line and column.
    pub fn parse(text: &str) -> Result<JobSpec, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }
}

/// The smallest classic job (columns `id`, `amount`, `title`), for tests.
#[cfg(test)]
pub(crate) const MINIMAL: &str = r#"
name = "t"
[api]
kind = "links"
[input]
path = "x.csv"
key = "{id}"
[link]
amount = "{amount}"
amount_unit = "minor"
currency = "thb"
title = "{title}"
description = "d"
multiple = true
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_paths_are_read_beside_it() {
        let mut job = JobSpec::parse(MINIMAL).unwrap();
        assert_eq!(job.beside(Path::new("x.csv")), Path::new("x.csv"), "a job from text keeps its paths");
        job.dir = PathBuf::from("jobs");
        assert_eq!(job.beside(Path::new("../samples/x.csv")), Path::new("samples/x.csv"));
        assert_eq!(job.beside(Path::new("./out/x.csv")), Path::new("jobs/out/x.csv"));
        assert_eq!(job.beside(Path::new("/srv/x.csv")), Path::new("/srv/x.csv"));
        job.dir = PathBuf::from("/etc/linkbatch");
        assert_eq!(job.beside(Path::new("../../x.csv")), Path::new("/x.csv"));
        assert_eq!(job.beside(Path::new("../../../x.csv")), Path::new("/x.csv"), "no further up than the root");
        // The `..` of a folder that is a link is the link's target's parent, so it is kept.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("linked")).unwrap();
        job.dir = dir.path().join("linked");
        assert_eq!(job.beside(Path::new("../x.csv")), dir.path().join("linked/../x.csv"));
    }

    #[test]
    fn defaults_follow_the_spec() {
        let job = JobSpec::parse(MINIMAL).unwrap();
        assert_eq!(job.api.key_env, "OMISE_SECRET_KEY");
        assert_eq!(job.limits.rates, ["60/min", "1000/h"]);
        assert_eq!(job.retry.attempts, 6);
        assert_eq!(job.link.multiple, Some(Field::Fixed(true)));
    }

    #[test]
    fn invalid_utf8_is_named_once_with_its_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.toml");
        std::fs::write(&path, b"name = \"t\"\n[api]\nkind = \"li\xffnks\"\n").unwrap();
        let error = JobSpec::load(&path).unwrap_err().to_string();
        assert!(error.contains("line 3, column 11: not valid UTF-8"), "{error}");
        assert_eq!(error.matches("UTF-8").count(), 2, "said once (and once in the hint): {error}");
    }

    #[test]
    fn unknown_fields_are_errors_with_a_line() {
        let err = JobSpec::parse(&MINIMAL.replace("multiple = true", "multipel = true")).unwrap_err();
        assert!(err.contains("multipel") && err.contains("line"), "{err}");
    }
}
