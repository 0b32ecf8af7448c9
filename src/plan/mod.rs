//! The second stage of input: a [`JobSpec`] checked against its input's header and the run's overrides,
//! giving a [`Plan`] that cannot be invalid. Only a `Plan` can be run, validated or reported on.
//!
//! Every placeholder, path, rate, base URL and fixed value is checked here, before any request; what can
//! only be checked per row (an amount, a title's length) becomes a [`RowError`] naming the line and field.
//! A `Plan` is built once and never changed: its fields are private, and whatever the command line changes
//! (`--sandbox` paths, the base URL) enters through [`Overrides`] and is checked with the rest.

mod deliver;
mod lifecycle;
mod row;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use deliver::{Content, DeliverPlan, LINK_FIELDS, Reminder, Security, SmtpServer};
pub use lifecycle::Lifecycle;
pub use row::{KeyGuard, PlannedRow, RowError};

use crate::input::{InputError, InputReader};
use crate::job::Field;
use crate::money::{AmountUnit, Currency};
use crate::rate::{Rate, RateError};
use crate::template::{Template, TemplateError};
use crate::terms::{ApiKind, AuthScheme, InputFormat};

/// Longest classic title (the Links guide) and Links+ name.
pub const MAX_TITLE: usize = 200;
/// Longest classic description (the Links guide).
pub const MAX_DESCRIPTION: usize = 1000;
/// Most requests in flight at once.
pub const MAX_CONCURRENCY: usize = 64;
/// Most attempts per request.
pub const MAX_ATTEMPTS: u32 = 100;
/// Most consecutive permanent failures before the breaker stops dispatch.
pub const MAX_BREAKER: u32 = 1000;

/// Longest Links+ name (Omise's Payment Links+ documentation).
pub const MAX_PLUS_NAME: usize = 45;
/// Smallest Links+ amount, in the currency's smallest unit (Omise's Payment Links+ documentation).
pub const MIN_PLUS_AMOUNT: u64 = 100;

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
    /// `--base-url`, or the in-process sandbox's address.
    pub base_url: Option<String>,
    /// `--concurrency`.
    pub concurrency: Option<usize>,
    /// The job file itself, which no output or ledger may be written over.
    pub job: Option<PathBuf>,
    /// `--sandbox`: the job's output and ledger get a `.sandbox` name beside the real ones (paths given
    /// with `--output` or `--ledger` are kept), so trials never share a ledger with real runs.
    pub sandbox: bool,
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
    /// Consecutive permanent failures with one code that stop dispatch.
    pub breaker: u32,
    /// How long a run waits for a server it cannot reach (`[retry] outage`).
    pub outage: Duration,
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

/// One row's amount read as minor and as major units, as a customer would see each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmountReadings {
    /// The input line.
    pub line: u64,
    /// The amount as the row writes it.
    pub text: String,
    /// Read in minor units (`12.00 THB`).
    pub minor: String,
    /// Read in major units (`1,200.00 THB`).
    pub major: String,
}

impl AmountReadings {
    fn sentence(&self) -> String {
        format!(
            ", and line {}'s `{}` is {} as \"minor\" but {} as \"major\"",
            self.line, self.text, self.minor, self.major
        )
    }
}

/// A job that does not fit its input or its flags: one variant per refusal.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Neither the job nor `--input` names the input.
    #[error("no input: set [input] path in the job or pass --input")]
    NoInput,
    /// The input cannot be opened or its header read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A `--var` has the name of an input column.
    #[error("`{0}` is both an input column and a --var; rename one so it is clear which is used")]
    VarShadowsColumn(String),
    /// A template does not parse.
    #[error("{field} = \"{source_text}\": {error}")]
    Template {
        /// `[input] key`, `[link] title`…
        field: String,
        /// The template as written.
        source_text: String,
        /// What is wrong with it.
        error: TemplateError,
    },
    /// `[link]` fields of the other API.
    #[error("[link] {} belong to {belong_to}", .fields.join(", "))]
    ForeignFields {
        /// The fields set.
        fields: Vec<&'static str>,
        /// Which API they belong to, and what to use instead.
        belong_to: &'static str,
    },
    /// A `[link]` field the API needs is missing.
    #[error("[link] {field} is required for {api} links")]
    Required {
        /// The field.
        field: &'static str,
        /// `classic` or `Links+`.
        api: &'static str,
    },
    /// A fixed webhook URL that is not https with a host.
    #[error("[link] custom_webhook {0}")]
    Webhook(String),
    /// `[input] delimiter` is not one character that can separate fields.
    #[error("[input] delimiter = {0:?}: one ASCII character other than a quote or a line break, e.g. \";\" or \"\\t\"")]
    Delimiter(String),
    /// Placeholders naming no column and no `--var`.
    #[error("no input column or --var for {} (columns in {}: {})", .unknown.join(", "), .input.display(), listed(.columns))]
    UnknownPlaceholders {
        /// `{name} in [link] field`, each.
        unknown: Vec<String>,
        /// The input.
        input: PathBuf,
        /// Its columns.
        columns: Vec<String>,
    },
    /// `[output] columns` names a column the input does not have.
    #[error("[output] columns names `{column}`, which is not an input column (columns: {})", listed(.columns))]
    UnknownOutputColumn {
        /// The column.
        column: String,
        /// The input's columns.
        columns: Vec<String>,
    },
    /// The amount comes from a column and the job does not say in which unit it is written. Money is
    /// stated, never assumed: `1200` is 12.00 THB in minor units and 1,200.00 THB in major.
    #[error(
        "[link] amount_unit is required when the amount comes from a column ({amount}){reading}: add amount_unit = \
         \"minor\" or \"major\" to [link]; nothing was sent",
        reading = readings.as_ref().map(AmountReadings::sentence).unwrap_or_default()
    )]
    AmountUnit {
        /// The amount's template, as written.
        amount: String,
        /// The first row's amount read both ways, when the first row could be read.
        readings: Option<AmountReadings>,
    },
    /// A fixed currency that is not supported.
    #[error("[link] currency `{0}` is not supported ({list})", list = Currency::list())]
    Currency(String),
    /// A rate that does not parse.
    #[error("[limits] rates: {0}")]
    Rate(RateError),
    /// Requests in flight at once, outside 1 to [`MAX_CONCURRENCY`].
    #[error("concurrency {0} is outside 1 to {MAX_CONCURRENCY} (Omise advises at most 10 parallel workers)")]
    Concurrency(usize),
    /// Attempts per request, outside 1 to [`MAX_ATTEMPTS`].
    #[error("[retry] attempts = {0} is outside 1 to {MAX_ATTEMPTS}")]
    Attempts(u32),
    /// A breaker outside 1 to [`MAX_BREAKER`].
    #[error("[retry] breaker = {0} is outside 1 to {MAX_BREAKER}")]
    Breaker(u32),
    /// A duration that does not parse.
    #[error("{field}: {error}")]
    Duration {
        /// `[api] timeout`…
        field: &'static str,
        /// Why.
        error: RateError,
    },
    /// A duration outside its range.
    #[error("{field} = {value:?} is outside {min:?} to {max:?}")]
    DurationRange {
        /// `[api] timeout`…
        field: &'static str,
        /// As given.
        value: Duration,
        /// Shortest allowed.
        min: Duration,
        /// Longest allowed.
        max: Duration,
    },
    /// Files that would overwrite one another, or a directory where a file is written.
    #[error("{0}")]
    Paths(String),
    /// A base URL that is not https (or http on loopback), or carries credentials.
    #[error("{0}")]
    BaseUrl(String),
    /// `[deliver]` asks for something that cannot be done.
    #[error("{0}")]
    Deliver(String),
    /// `[lifecycle]` asks for something that cannot be done.
    #[error("{0}")]
    Lifecycle(String),
}

/// A list of column names for a message: the first 20, each cut at 40 characters, and how many more there are
/// (a header line can be megabytes long).
fn listed(columns: &[String]) -> String {
    let mut names: Vec<String> =
        columns
            .iter()
            .take(20)
            .map(|c| {
                if c.chars().count() > 40 {
                    format!("{}…", c.chars().take(40).collect::<String>())
                } else {
                    c.clone()
                }
            })
            .collect();
    if columns.len() > 20 {
        names.push(format!("… and {} more", columns.len() - 20));
    }
    let mut text = names.join(", ");
    // One column whose name holds another separator: the file is not comma-separated.
    if let [only] = columns
        && let Some((shown, written)) = [(';', ";"), ('\t', "\\t"), ('|', "|")]
            .into_iter()
            .find(|(c, _)| only.contains(*c))
            .map(|(c, w)| (c.escape_default().to_string(), w))
    {
        let _ = write!(
            text,
            "; the header is one column holding `{shown}`: the file looks separated by `{shown}`, not commas: set \
             [input] delimiter = \"{written}\""
        );
    }
    text
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
        /// `[link.metadata]`: a template per key.
        metadata: Vec<(String, Template)>,
        /// Send the row's key as `linkbatch_key`.
        key_in_metadata: bool,
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

impl LinkTemplates {
    /// Every template of the link, with the field it fills.
    fn templates(&self) -> Vec<(&'static str, &Template)> {
        fn source<'t, T>(field: &'static str, s: &'t FieldSource<T>) -> Option<(&'static str, &'t Template)> {
            match s {
                FieldSource::Template(t) => Some((field, t)),
                FieldSource::Fixed(_) => None,
            }
        }
        match self {
            LinkTemplates::Classic { currency, title, description, multiple, metadata, .. } => {
                let mut all =
                    vec![("[link] currency", currency), ("[link] title", title), ("[link] description", description)];
                all.extend(source("[link] multiple", multiple));
                all.extend(metadata.iter().map(|(_, t)| ("[link.metadata]", t)));
                all
            }
            LinkTemplates::Plus { team_id, template_id, name, currency, multiple_usage, custom_webhook } => {
                let mut all = vec![("[link] name", name)];
                all.extend(source("[link] team_id", team_id));
                all.extend(source("[link] template_id", template_id));
                all.extend(source("[link] multiple_usage", multiple_usage));
                all.extend(currency.iter().map(|t| ("[link] currency", t)));
                all.extend(custom_webhook.iter().map(|t| ("[link] custom_webhook", t)));
                all
            }
        }
    }
}

/// Where a job's requests go and how: all that a command needs that reads the server and no row
/// (`templates`), checked from the job file alone.
#[derive(Debug, Clone)]
pub struct Endpoint {
    api: ApiKind,
    key_env: String,
    base_url: String,
    timeout: Duration,
    auth: AuthScheme,
    retry: RetryPolicy,
    team_id: Option<u64>,
    mode: Option<crate::terms::Mode>,
}

impl Endpoint {
    /// The API the job creates links on.
    pub fn api(&self) -> ApiKind {
        self.api
    }

    /// The environment variable (or its file) holding the key.
    pub fn key_env(&self) -> &str {
        &self.key_env
    }

    /// The checked base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Links+: how the key is sent (`Auto`: found before the first create).
    pub fn auth(&self) -> AuthScheme {
        self.auth
    }

    /// Retries and backoff.
    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }

    /// Links+: the job's team, when it is fixed in the job (not a column).
    pub fn team_id(&self) -> Option<u64> {
        self.team_id
    }

    /// The key's mode as the job states it (`[api] mode`), for a key that does not say.
    pub fn mode(&self) -> Option<crate::terms::Mode> {
        self.mode
    }
}

/// A checked job, ready to run against its input.
#[derive(Debug, Clone)]
pub struct Plan {
    name: String,
    endpoint: Endpoint,
    input_path: PathBuf,
    format: InputFormat,
    /// CSV: the byte between fields.
    delimiter: u8,
    /// `[input] sheet`.
    sheet: Option<String>,
    /// How a spreadsheet input names its cells, for a row refused over one.
    places: Option<crate::input::Places>,
    output_path: PathBuf,
    ledger_path: PathBuf,
    rates: Vec<Rate>,
    rates_from_flags: bool,
    concurrency: usize,
    active_links: Option<u64>,
    extra_columns: Vec<String>,
    columns: Vec<String>,
    /// Where each extra output column sits in `columns`, resolved once for every row.
    extra_positions: Vec<usize>,
    /// `[deliver]`, when the job has it.
    deliver: Option<Box<DeliverPlan>>,
    /// The columns the messages' templates name, and where each sits in `columns`.
    mail_columns: Vec<(String, usize)>,
    lifecycle: Option<Lifecycle>,
    vars: HashMap<String, String>,
    key: Template,
    amount: Template,
    amount_unit: AmountUnit,
    link: LinkTemplates,
}

fn template(field: &str, source: &str) -> Result<Template, PlanError> {
    Template::parse(source).map_err(|error| PlanError::Template {
        field: field.to_owned(),
        source_text: source.to_owned(),
        error,
    })
}

/// Refuses `[link]` fields that belong to the other API: `belong_to` says which, and what to use instead.
fn refuse_foreign(fields: &[(&'static str, bool)], belong_to: &'static str) -> Result<(), PlanError> {
    let fields: Vec<&str> = fields.iter().filter_map(|&(name, present)| present.then_some(name)).collect();
    if fields.is_empty() { Ok(()) } else { Err(PlanError::ForeignFields { fields, belong_to }) }
}

fn required<'a, T>(field: &'static str, api: &'static str, value: Option<&'a T>) -> Result<&'a T, PlanError> {
    value.ok_or(PlanError::Required { field, api })
}

fn field_source<T: Clone>(name: &str, field: Option<&Field<T>>, default: T) -> Result<FieldSource<T>, PlanError> {
    Ok(match field {
        None => FieldSource::Fixed(default),
        Some(Field::Fixed(v)) => FieldSource::Fixed(v.clone()),
        Some(Field::Template(t)) => FieldSource::Template(template(&format!("[link] {name}"), t)?),
    })
}

mod build;
mod files;
mod urls;

use urls::is_loopback;
pub use urls::{check_base_url, check_webhook};

impl Plan {
    /// Job name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where its requests go and how.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Which API.
    pub fn api(&self) -> ApiKind {
        self.endpoint.api
    }

    /// The environment variable holding the key.
    pub fn key_env(&self) -> &str {
        &self.endpoint.key_env
    }

    /// Base URL: https, or http on loopback.
    pub fn base_url(&self) -> &str {
        &self.endpoint.base_url
    }

    /// Per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.endpoint.timeout
    }

    /// Links+ auth scheme.
    pub fn auth(&self) -> AuthScheme {
        self.endpoint.auth
    }

    /// The input.
    pub fn input_path(&self) -> &Path {
        &self.input_path
    }

    /// The output CSV.
    pub fn output_path(&self) -> &Path {
        &self.output_path
    }

    /// The ledger.
    pub fn ledger_path(&self) -> &Path {
        &self.ledger_path
    }

    /// Rate-limit windows (empty: none).
    pub fn rates(&self) -> &[Rate] {
        &self.rates
    }

    /// The rates come from `--limit`, not the job file (rates learned on an earlier run are then not used).
    pub fn rates_from_flags(&self) -> bool {
        self.rates_from_flags
    }

    /// Requests in flight at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The Links+ team the job names, when it is fixed (not a column).
    pub fn team_id(&self) -> Option<u64> {
        self.endpoint.team_id
    }

    /// The account's cap on active links, when the job states it.
    pub fn active_links(&self) -> Option<u64> {
        self.active_links
    }

    /// Retry policy.
    pub fn retry(&self) -> RetryPolicy {
        self.endpoint.retry
    }

    /// Input columns copied to the output.
    pub fn extra_columns(&self) -> &[String] {
        &self.extra_columns
    }

    /// `[deliver]`, when the job has it.
    pub fn deliver(&self) -> Option<&DeliverPlan> {
        self.deliver.as_deref()
    }

    /// `[lifecycle]`, when the job has it.
    pub fn lifecycle(&self) -> Option<&Lifecycle> {
        self.lifecycle.as_ref()
    }

    /// A value a message's template sees for `row` (its link's fields aside): a column the templates name,
    /// else a `--var`. Blank cells count as missing.
    pub fn mail_value<'r>(&'r self, row: &'r PlannedRow, name: &str) -> Option<&'r str> {
        match self.mail_columns.iter().position(|(c, _)| c == name) {
            Some(i) => row.mail.get(i).map(String::as_str).filter(|v| !v.trim().is_empty()),
            None => self.vars.get(name).map(String::as_str),
        }
    }

    /// Opens the input afresh, reading the columns this plan uses.
    pub fn reader(&self) -> Result<InputReader, PlanError> {
        let mut reader = InputReader::open_sheet(&self.input_path, self.format, self.delimiter, self.sheet.as_deref())?;
        reader.select(self.columns.clone());
        Ok(reader)
    }
}
