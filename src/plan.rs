//! The second stage of input: a [`JobSpec`] checked against its input's header and the run's overrides,
//! giving a [`Plan`] that cannot be invalid. Only a `Plan` can be run, validated or reported on.
//!
//! Every placeholder, path, rate, base URL and fixed value is checked here, before any request; what can
//! only be checked per row (an amount, a title's length) becomes a [`RowError`] naming the line and field.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::digest::{BuildDigestHasher, Digest};
use crate::input::{InputReader, Record, detect_format};
use crate::job::{ApiKind, AuthScheme, Field, InputFormat, JobSpec};
use crate::money::{AmountUnit, Currency, parse_amount};
use crate::rate::{Rate, parse_duration};
use crate::template::Template;

/// Longest classic title (seed 003) and Links+ name.
pub const MAX_TITLE: usize = 200;
/// Longest classic description (seed 003).
pub const MAX_DESCRIPTION: usize = 1000;

/// What the command line changes in a job.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--input`.
    pub input: Option<PathBuf>,
    /// `--output`.
    pub output: Option<PathBuf>,
    /// `--ledger`.
    pub ledger: Option<PathBuf>,
    /// `--var NAME=VALUE`, in order given.
    pub vars: Vec<(String, String)>,
    /// `--limit`: replaces the job's rates; an empty list lifts them.
    pub limits: Option<Vec<Rate>>,
    /// `--base-url`.
    pub base_url: Option<String>,
    /// `--concurrency`.
    pub concurrency: Option<usize>,
}

/// How failed requests are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts, the first included.
    pub attempts: u32,
    /// First delay.
    pub base_delay: Duration,
    /// Largest delay.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The delays between attempts: exponential, with jitter, capped, `attempts - 1` of them.
    pub fn delays(&self) -> backon::ExponentialBackoff {
        use backon::BackoffBuilder;
        backon::ExponentialBuilder::default()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.attempts.saturating_sub(1) as usize)
            .with_jitter()
            .build()
    }
}

/// A classic link, as `POST /links` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ClassicRequest {
    /// Minor units.
    pub amount: u64,
    /// Lowercase code.
    pub currency: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Multiple-use.
    pub multiple: bool,
}

/// A Links+ link, as `POST /external/links` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PlusRequest {
    /// Template.
    pub template_id: u64,
    /// Team.
    pub team_id: u64,
    /// Name.
    pub name: String,
    /// Minor units.
    pub amount: u64,
    /// Lowercase code; absent means the template's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Multiple-use.
    pub multiple_usage: bool,
    /// Per-link webhook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_webhook: Option<String>,
}

/// The parameters of one create request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum LinkRequest {
    /// Classic Links API.
    Classic(ClassicRequest),
    /// Payment Links+.
    Plus(PlusRequest),
}

impl LinkRequest {
    /// A hash of the canonical parameters: equal requests, equal fingerprints.
    pub fn fingerprint(&self) -> Digest {
        thread_local! {
            /// The canonical text of the last request, its room reused by the next.
            static CANONICAL: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        // Borrowed only here, and nothing below fingerprints: never borrowed twice.
        CANONICAL.with_borrow_mut(|canonical| {
            canonical.clear();
            self.canonical(canonical);
            Digest::of(canonical)
        })
    }

    /// The request's JSON, fields in declaration order: byte for byte what serde_json writes for it (a test
    /// holds the two together), without a serializer's per-field work, which is most of a resumed row's.
    fn canonical(&self, out: &mut Vec<u8>) {
        fn text(out: &mut Vec<u8>, name: &[u8], value: &str) {
            out.extend_from_slice(name);
            if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
                out.push(b'"');
                out.extend_from_slice(value.as_bytes());
                out.push(b'"');
            } else {
                // Escapes are serde_json's; writing to memory cannot fail.
                let _ = serde_json::to_writer(&mut *out, value);
            }
        }
        fn number(out: &mut Vec<u8>, name: &[u8], value: u64) {
            out.extend_from_slice(name);
            out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        }
        fn boolean(out: &mut Vec<u8>, name: &[u8], value: bool) {
            out.extend_from_slice(name);
            out.extend_from_slice(if value { b"true" } else { b"false" });
        }
        match self {
            LinkRequest::Classic(r) => {
                number(out, b"{\"amount\":", r.amount);
                text(out, b",\"currency\":", &r.currency);
                text(out, b",\"title\":", &r.title);
                text(out, b",\"description\":", &r.description);
                boolean(out, b",\"multiple\":", r.multiple);
            }
            LinkRequest::Plus(r) => {
                number(out, b"{\"template_id\":", r.template_id);
                number(out, b",\"team_id\":", r.team_id);
                text(out, b",\"name\":", &r.name);
                number(out, b",\"amount\":", r.amount);
                if let Some(currency) = &r.currency {
                    text(out, b",\"currency\":", currency);
                }
                boolean(out, b",\"multiple_usage\":", r.multiple_usage);
                if let Some(hook) = &r.custom_webhook {
                    text(out, b",\"custom_webhook\":", hook);
                }
            }
        }
        out.push(b'}');
    }

    /// Amount in minor units.
    pub fn amount(&self) -> u64 {
        match self {
            LinkRequest::Classic(r) => r.amount,
            LinkRequest::Plus(r) => r.amount,
        }
    }

    /// Currency code, where the request fixes one.
    pub fn currency(&self) -> Option<&str> {
        match self {
            LinkRequest::Classic(r) => Some(&r.currency),
            LinkRequest::Plus(r) => r.currency.as_deref(),
        }
    }

    /// Title (Links+: name).
    pub fn title(&self) -> &str {
        match self {
            LinkRequest::Classic(r) => &r.title,
            LinkRequest::Plus(r) => &r.name,
        }
    }

    /// What differs between two requests, field by field, for a conflict message.
    pub fn changes_from(&self, before: &LinkRequest) -> String {
        let (Ok(serde_json::Value::Object(now)), Ok(serde_json::Value::Object(then))) =
            (serde_json::to_value(self), serde_json::to_value(before))
        else {
            return "the link's parameters".into();
        };
        let mut changes = Vec::new();
        for (field, value) in &now {
            let old = then.get(field).cloned().unwrap_or(serde_json::Value::Null);
            if &old != value {
                changes.push(format!("{field} {old} -> {value}"));
            }
        }
        for field in then.keys().filter(|f| !now.contains_key(*f)) {
            changes.push(format!("{field} removed"));
        }
        if changes.is_empty() { "the link's parameters".into() } else { changes.join(", ") }
    }
}

/// A row ready to send.
#[derive(Debug, Clone)]
pub struct PlannedRow {
    /// Input line.
    pub line: u64,
    /// The row key.
    pub key: String,
    /// The key's identity in the ledger index.
    pub key_id: Digest,
    /// What to create.
    pub request: LinkRequest,
    /// `request.fingerprint()`, computed the first time it is asked for: on the thread that compares it with
    /// the ledger, not on the one planning rows (a resume is paced by whichever thread is busier).
    fingerprint: std::sync::OnceLock<Digest>,
    /// Values of the output's extra columns.
    pub extra: Vec<String>,
}

impl PlannedRow {
    /// The request's fingerprint ([`LinkRequest::fingerprint`]), computed once.
    pub fn fingerprint(&self) -> Digest {
        *self.fingerprint.get_or_init(|| self.request.fingerprint())
    }
}

/// A row that cannot be sent, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Input line.
    pub line: u64,
    /// The key, when it could be rendered.
    pub key: Option<String>,
    /// The field at fault (`amount`, `title`, `input`…).
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
    /// Values of the output's extra columns, when the row could be read.
    pub extra: Vec<String>,
}

/// A job that does not fit its input or its flags.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The job or flags are wrong.
    #[error("{0}")]
    Job(String),
    /// The input cannot be opened.
    #[error(transparent)]
    Input(#[from] crate::input::InputError),
}

/// How a field of the link is produced per row.
#[derive(Debug, Clone)]
enum FieldSource<T> {
    Fixed(T),
    Template(Template),
}

#[derive(Debug, Clone)]
enum LinkTemplates {
    Classic {
        currency: Template,
        title: Template,
        description: Template,
        multiple: FieldSource<bool>,
    },
    Plus {
        team_id: FieldSource<u64>,
        template_id: FieldSource<u64>,
        name: Template,
        currency: Option<Template>,
        multiple_usage: FieldSource<bool>,
        custom_webhook: Option<Template>,
    },
}

/// A checked job, ready to run against its input.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Job name.
    pub name: String,
    /// Which API.
    pub api: ApiKind,
    /// Variable holding the key.
    pub key_env: String,
    /// Base URL: https, or http on loopback.
    pub base_url: String,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Links+ auth scheme.
    pub auth: AuthScheme,
    /// The input.
    pub input_path: PathBuf,
    /// Its format.
    pub format: InputFormat,
    /// The output CSV.
    pub output_path: PathBuf,
    /// The ledger.
    pub ledger_path: PathBuf,
    /// Rate-limit windows (empty: none).
    pub rates: Vec<Rate>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Input columns copied to the output.
    pub extra_columns: Vec<String>,
    columns: Vec<String>,
    /// Where each extra output column sits in `columns`, resolved once for every row.
    extra_positions: Vec<usize>,
    vars: HashMap<String, String>,
    key: Template,
    amount: Template,
    amount_unit: AmountUnit,
    link: LinkTemplates,
}

fn job_error(message: impl Into<String>) -> PlanError {
    PlanError::Job(message.into())
}

fn template(field: &str, source: &str) -> Result<Template, PlanError> {
    Template::parse(source).map_err(|e| job_error(format!("[link] {field} = \"{source}\": {e}")))
}

/// Refuses `[link]` fields that belong to the other API: `belong_to` says which, and what to use instead.
fn refuse_foreign(fields: &[(&str, bool)], belong_to: &str) -> Result<(), PlanError> {
    let set: Vec<&str> = fields.iter().filter_map(|&(name, present)| present.then_some(name)).collect();
    if set.is_empty() {
        return Ok(());
    }
    Err(job_error(format!("[link] {} belong to {belong_to}", set.join(", "))))
}

fn required<'a>(name: &str, value: &'a Option<String>) -> Result<&'a str, PlanError> {
    value.as_deref().ok_or_else(|| job_error(format!("[link] {name} is required for classic links")))
}

fn field_source<T: Clone>(name: &str, field: &Option<Field<T>>, default: T) -> Result<FieldSource<T>, PlanError> {
    Ok(match field {
        None => FieldSource::Fixed(default),
        Some(Field::Fixed(v)) => FieldSource::Fixed(v.clone()),
        Some(Field::Template(t)) => FieldSource::Template(template(name, t)?),
    })
}

/// Checks a base URL: https anywhere, plain http only on a loopback address (the sandbox).
pub fn check_base_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("base URL `{url}` is not a URL: {e}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!("base URL `{url}` must use https:// (plain http is allowed on loopback only)"));
        }
        other => {
            return Err(format!("base URL `{url}` has scheme `{other}`; use https://"));
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("base URL must not carry credentials; the key comes from the environment".into());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

impl Plan {
    /// Checks `spec` against `overrides` and the input's header, and opens the input for reading.
    pub fn new(spec: JobSpec, overrides: &Overrides) -> Result<(Plan, InputReader), PlanError> {
        let input_path = overrides
            .input
            .clone()
            .or(spec.input.path.clone())
            .ok_or_else(|| job_error("no input: set [input] path in the job or pass --input"))?;
        let format = detect_format(&input_path, spec.input.format)?;
        let mut reader = InputReader::open(&input_path, format)?;

        let mut vars = HashMap::new();
        for (name, value) in &overrides.vars {
            if reader.columns().contains(name) {
                return Err(job_error(format!(
                    "`{name}` is both an input column and a --var; rename one so it is clear which is used"
                )));
            }
            vars.insert(name.clone(), value.clone());
        }

        let key = Template::parse(&spec.input.key).map_err(|e| job_error(format!("[input] key: {e}")))?;
        let amount = template("amount", &spec.link.amount)?;
        let l = &spec.link;
        let link = match spec.api.kind {
            ApiKind::Links => {
                refuse_foreign(
                    &[
                        ("team_id", l.team_id.is_some()),
                        ("template_id", l.template_id.is_some()),
                        ("name", l.name.is_some()),
                        ("multiple_usage", l.multiple_usage.is_some()),
                        ("custom_webhook", l.custom_webhook.is_some()),
                    ],
                    "Links+ jobs (kind = \"links_plus\"); classic links use currency, title, description, multiple",
                )?;
                LinkTemplates::Classic {
                    currency: template("currency", required("currency", &l.currency)?)?,
                    title: template("title", required("title", &l.title)?)?,
                    description: template("description", required("description", &l.description)?)?,
                    multiple: field_source("multiple", &l.multiple, false)?,
                }
            }
            ApiKind::LinksPlus => {
                refuse_foreign(
                    &[
                        ("title", l.title.is_some()),
                        ("description", l.description.is_some()),
                        ("multiple", l.multiple.is_some()),
                    ],
                    "classic jobs; Links+ links use team_id, template_id, name, multiple_usage",
                )?;
                let id = |name: &str, v: &Option<Field<u64>>| {
                    v.clone().ok_or_else(|| job_error(format!("[link] {name} is required for Links+ links")))
                };
                if let Some(hook) = &l.custom_webhook
                    && Template::parse(hook).is_ok_and(|t| t.is_literal())
                    && !hook.starts_with("https://")
                {
                    return Err(job_error(format!("[link] custom_webhook `{hook}` must be an https:// URL")));
                }
                LinkTemplates::Plus {
                    team_id: field_source("team_id", &Some(id("team_id", &l.team_id)?), 0)?,
                    template_id: field_source("template_id", &Some(id("template_id", &l.template_id)?), 0)?,
                    name: template(
                        "name",
                        l.name.as_deref().ok_or_else(|| job_error("[link] name is required for Links+ links"))?,
                    )?,
                    currency: l.currency.as_deref().map(|c| template("currency", c)).transpose()?,
                    multiple_usage: field_source("multiple_usage", &l.multiple_usage, false)?,
                    custom_webhook: l.custom_webhook.as_deref().map(|c| template("custom_webhook", c)).transpose()?,
                }
            }
        };

        // Every placeholder must name a column or a --var: checked once, here, not on the first row.
        let mut templates: Vec<(&str, &Template)> = vec![("[input] key", &key), ("[link] amount", &amount)];
        match &link {
            LinkTemplates::Classic { currency, title, description, multiple } => {
                templates.extend([
                    ("[link] currency", currency),
                    ("[link] title", title),
                    ("[link] description", description),
                ]);
                if let FieldSource::Template(t) = multiple {
                    templates.push(("[link] multiple", t));
                }
            }
            LinkTemplates::Plus { team_id, template_id, name, currency, multiple_usage, custom_webhook } => {
                templates.push(("[link] name", name));
                for (f, t) in [("[link] team_id", team_id), ("[link] template_id", template_id)] {
                    if let FieldSource::Template(t) = t {
                        templates.push((f, t));
                    }
                }
                if let FieldSource::Template(t) = multiple_usage {
                    templates.push(("[link] multiple_usage", t));
                }
                templates.extend(currency.iter().map(|t| ("[link] currency", t)));
                templates.extend(custom_webhook.iter().map(|t| ("[link] custom_webhook", t)));
            }
        }
        let mut wanted: Vec<String> = Vec::new();
        let mut unknown = Vec::new();
        for (field, t) in &templates {
            for name in t.placeholders() {
                if reader.columns().iter().any(|c| c == name) {
                    if !wanted.iter().any(|w| w == name) {
                        wanted.push(name.to_owned());
                    }
                } else if !vars.contains_key(name) {
                    unknown.push(format!("{{{name}}} in {field}"));
                }
            }
        }
        if !unknown.is_empty() {
            return Err(job_error(format!(
                "no input column or --var for {} (columns in {}: {})",
                unknown.join(", "),
                input_path.display(),
                reader.columns().join(", ")
            )));
        }
        if let Some(missing) = spec.output.columns.iter().find(|c| !reader.columns().contains(c)) {
            return Err(job_error(format!(
                "[output] columns names `{missing}`, which is not an input column (columns: {})",
                reader.columns().join(", ")
            )));
        }
        for c in &spec.output.columns {
            if !wanted.contains(c) {
                wanted.push(c.clone());
            }
        }
        reader.select(wanted.clone());
        // Each output column was pushed into `wanted` just above, so every lookup finds it.
        let extra_positions = spec.output.columns.iter().filter_map(|c| wanted.iter().position(|w| w == c)).collect();

        if let LinkTemplates::Classic { currency, .. } = &link
            && currency.is_literal()
            && Currency::find(&currency.to_string()).is_none()
        {
            return Err(job_error(format!("[link] currency `{currency}` is not supported ({})", Currency::list())));
        }

        let rates = match &overrides.limits {
            Some(rates) => rates.clone(),
            None => spec
                .limits
                .rates
                .iter()
                .map(|r| r.parse::<Rate>().map_err(|e| job_error(format!("[limits] rates: {e}"))))
                .collect::<Result<_, _>>()?,
        };
        let concurrency = overrides.concurrency.unwrap_or(spec.limits.concurrency);
        if concurrency == 0 {
            return Err(job_error("concurrency must be at least 1"));
        }
        let duration =
            |section: &str, text: &str| parse_duration(text).map_err(|e| job_error(format!("{section}: {e}")));
        let retry = RetryPolicy {
            attempts: spec.retry.attempts.max(1),
            base_delay: duration("[retry] base_delay", &spec.retry.base_delay)?,
            max_delay: duration("[retry] max_delay", &spec.retry.max_delay)?,
        };
        let timeout = duration("[api] timeout", &spec.api.timeout)?;
        let base_url = overrides
            .base_url
            .clone()
            .or(spec.api.base_url.clone())
            .unwrap_or_else(|| spec.api.kind.default_base_url().to_owned());
        let base_url = check_base_url(&base_url).map_err(job_error)?;

        let output_path = overrides
            .output
            .clone()
            .or(spec.output.path.clone())
            .unwrap_or_else(|| PathBuf::from("out").join(format!("{}.csv", spec.name)));
        let ledger_path = overrides.ledger.clone().or(spec.output.ledger.clone()).unwrap_or_else(|| {
            let stem = output_path.file_stem().and_then(|s| s.to_str()).unwrap_or("linkbatch");
            output_path.with_file_name(format!("{stem}.ledger.jsonl"))
        });

        let plan = Plan {
            name: spec.name,
            api: spec.api.kind,
            key_env: spec.api.key_env,
            base_url,
            timeout,
            auth: spec.api.auth,
            input_path,
            format,
            output_path,
            ledger_path,
            rates,
            concurrency,
            retry,
            extra_columns: spec.output.columns,
            extra_positions,
            columns: wanted,
            vars,
            key,
            amount,
            amount_unit: spec.link.amount_unit,
            link,
        };
        Ok((plan, reader))
    }

    /// Opens the input afresh, reading the columns this plan uses.
    pub fn reader(&self) -> Result<InputReader, PlanError> {
        let mut reader = InputReader::open(&self.input_path, self.format)?;
        reader.select(self.columns.clone());
        Ok(reader)
    }

    /// Turns one record into a request, or says which field is wrong.
    pub fn row(&self, record: &Record) -> Result<PlannedRow, RowError> {
        self.row_reusing(record, None)
    }

    /// [`Plan::row`], filling the strings of a row done with (`spare`) rather than allocating new ones.
    pub fn row_reusing(&self, record: &Record, spare: Option<PlannedRow>) -> Result<PlannedRow, RowError> {
        let (mut key_text, mut extra, spare_request) = match spare {
            Some(PlannedRow { key, extra, request, .. }) => (key, extra, Some(request)),
            None => (String::new(), Vec::new(), None),
        };
        extra.resize_with(self.extra_positions.len(), String::new);
        for (cell, &i) in extra.iter_mut().zip(&self.extra_positions) {
            cell.clear();
            cell.push_str(record.cells[i].as_deref().unwrap_or_default());
        }
        let (title_text, description_text, mut currency_text) = match spare_request {
            Some(LinkRequest::Classic(r)) => (r.title, r.description, r.currency),
            Some(LinkRequest::Plus(r)) => (r.name, String::new(), r.currency.unwrap_or_default()),
            None => Default::default(),
        };
        let lookup = |name: &str| -> Option<&str> {
            match self.columns.iter().position(|c| c == name) {
                Some(i) => record.cells[i].as_deref().filter(|v| !v.trim().is_empty()),
                None => self.vars.get(name).map(String::as_str),
            }
        };
        let fail = |field: &'static str, reason: String, key: Option<&str>| RowError {
            line: record.line,
            key: key.map(str::to_owned),
            field,
            reason,
            extra: extra.clone(),
        };
        let missing = |field: &'static str, name: String, key: Option<&str>| {
            fail(field, format!("no value for `{name}` (empty or missing)"), key)
        };
        self.key.render_into(lookup, &mut key_text).map_err(|name| missing("key", name, None))?;
        let key = key_text;
        let key_ref = Some(key.as_str());
        // Text is rendered into strings already there: the spare row's for what the row keeps (a title), one
        // scratch buffer for what is only read (a currency code, an amount).
        let mut scratch = String::new();
        let scratch_render = |field: &'static str, t: &Template, out: &mut String| {
            t.render_into(lookup, out).map_err(|name| missing(field, name, key_ref))
        };
        let render = |field: &'static str, t: &Template| {
            let mut text = String::new();
            scratch_render(field, t, &mut text).map(|()| text)
        };
        let currency_of = |t: &Template, code: &mut String| -> Result<Currency, RowError> {
            scratch_render("currency", t, code)?;
            Currency::find(code).ok_or_else(|| {
                fail("currency", format!("currency `{code}` is not supported ({})", Currency::list()), key_ref)
            })
        };
        let amount_in = |currency: Currency, text: &mut String| -> Result<u64, RowError> {
            scratch_render("amount", &self.amount, text)?;
            parse_amount(text, self.amount_unit, currency).map_err(|e| fail("amount", e.to_string(), key_ref))
        };
        let boolean = |field: &'static str, source: &FieldSource<bool>| -> Result<bool, RowError> {
            match source {
                FieldSource::Fixed(b) => Ok(*b),
                FieldSource::Template(t) => {
                    let text = render(field, t)?;
                    match text.trim().to_ascii_lowercase().as_str() {
                        "true" | "yes" | "1" => Ok(true),
                        "false" | "no" | "0" => Ok(false),
                        _ => Err(fail(field, format!("`{text}` is not true or false"), key_ref)),
                    }
                }
            }
        };
        let integer = |field: &'static str, source: &FieldSource<u64>| -> Result<u64, RowError> {
            match source {
                FieldSource::Fixed(n) => Ok(*n),
                FieldSource::Template(t) => {
                    let text = render(field, t)?;
                    text.trim().parse().map_err(|_| fail(field, format!("`{text}` is not a whole number"), key_ref))
                }
            }
        };
        let bounded = |field: &'static str, t: &Template, max: usize, mut text: String| -> Result<String, RowError> {
            scratch_render(field, t, &mut text)?;
            // No more bytes than the limit: no more characters either, and nothing to count.
            let length = if text.len() <= max { 0 } else { text.chars().count() };
            if length > max {
                return Err(fail(field, format!("{field} is {length} characters, at most {max} are allowed"), key_ref));
            }
            Ok(text)
        };

        let request = match &self.link {
            LinkTemplates::Classic { currency, title, description, multiple } => {
                let currency = currency_of(currency, &mut scratch)?;
                currency_text.clear();
                currency_text.push_str(currency.code);
                LinkRequest::Classic(ClassicRequest {
                    amount: amount_in(currency, &mut scratch)?,
                    currency: currency_text,
                    title: bounded("title", title, MAX_TITLE, title_text)?,
                    description: bounded("description", description, MAX_DESCRIPTION, description_text)?,
                    multiple: boolean("multiple", multiple)?,
                })
            }
            LinkTemplates::Plus { team_id, template_id, name, currency, multiple_usage, custom_webhook } => {
                let currency = currency.as_ref().map(|t| currency_of(t, &mut scratch)).transpose()?;
                // Without a currency the template's applies; amounts are then read with two decimals
                // unless they are minor units, which need no exponent.
                let amount = match currency {
                    Some(c) => amount_in(c, &mut scratch)?,
                    None if self.amount_unit == AmountUnit::Major => {
                        return Err(fail(
                            "currency",
                            "amount_unit = \"major\" needs a currency in the job to know the decimals".into(),
                            key_ref,
                        ));
                    }
                    None => amount_in(Currency { code: "", exponent: 0 }, &mut scratch)?,
                };
                let custom_webhook = match custom_webhook {
                    Some(t) => {
                        let hook = render("custom_webhook", t)?;
                        if !hook.starts_with("https://") {
                            return Err(fail("custom_webhook", format!("`{hook}` must be an https:// URL"), key_ref));
                        }
                        Some(hook)
                    }
                    None => None,
                };
                LinkRequest::Plus(PlusRequest {
                    template_id: integer("template_id", template_id)?,
                    team_id: integer("team_id", team_id)?,
                    name: bounded("name", name, MAX_TITLE, title_text)?,
                    amount,
                    currency: currency.map(|c| c.code.to_owned()),
                    multiple_usage: boolean("multiple_usage", multiple_usage)?,
                    custom_webhook,
                })
            }
        };
        let key_id = Digest::of(key.as_bytes());
        Ok(PlannedRow { line: record.line, key_id, key, request, fingerprint: std::sync::OnceLock::new(), extra })
    }
}

/// Finds rows sharing a key: the first keeps it, each later one is rejected. A key the ledger index knows
/// is marked in a bit per index slot, so a resumed million-row job needs no second set of its keys.
#[derive(Debug, Default)]
pub struct KeyGuard {
    slots: Vec<u64>,
    seen: HashSet<Digest, BuildDigestHasher>,
}

impl KeyGuard {
    /// A guard for rows looked up in an index of `slots` keys.
    pub fn new(slots: usize) -> KeyGuard {
        KeyGuard { slots: vec![0; slots.div_ceil(64)], seen: HashSet::default() }
    }

    /// Records a key (its [`PlannedRow::key_id`], and its index slot when the index has it); false when an
    /// earlier row already had it.
    pub fn first(&mut self, key: Digest, slot: Option<usize>) -> bool {
        match slot.and_then(|i| Some((self.slots.get_mut(i / 64)?, 1u64 << (i % 64)))) {
            Some((word, bit)) => {
                let first = *word & bit == 0;
                *word |= bit;
                first
            }
            None => self.seen.insert(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_is_serde_jsons() {
        let awkward = ["", "plain", "quote\" and \\ backslash", "tab\tnew\nline\u{1}\u{7f}", "ünïcødé €", "</script>"];
        for a in awkward {
            for b in awkward {
                let classic = LinkRequest::Classic(ClassicRequest {
                    amount: 1_000_000_007,
                    currency: a.into(),
                    title: b.into(),
                    description: format!("{a}{b}"),
                    multiple: a.len() % 2 == 0,
                });
                for (currency, custom_webhook) in [(None, None), (Some(a.to_owned()), Some(b.to_owned()))] {
                    let plus = LinkRequest::Plus(PlusRequest {
                        template_id: 7,
                        team_id: u64::MAX,
                        name: b.into(),
                        amount: 0,
                        currency,
                        multiple_usage: b.is_empty(),
                        custom_webhook,
                    });
                    for request in [&classic, &plus] {
                        let mut ours = Vec::new();
                        request.canonical(&mut ours);
                        assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(request).unwrap());
                    }
                }
            }
        }
    }
}
