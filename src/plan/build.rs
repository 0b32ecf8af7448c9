//! `Plan::new`: the job checked stage by stage (input, templates, placeholders, limits, paths), each refusal
//! a [`PlanError`] variant with a unit test below. Opens the input to read its header; sends nothing.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::{
    DeliverPlan, Endpoint, LINK_FIELDS, Lifecycle, LinkTemplates, MAX_ATTEMPTS, MAX_BREAKER, MAX_CONCURRENCY,
    Overrides, Plan, PlanError, RetryPolicy, check_base_url, check_webhook, field_source, files, refuse_foreign,
    required, template,
};
use crate::input::{InputReader, detect_format};
use crate::job::{JobSpec, LinkSpec};
use crate::money::{AmountUnit, Currency};
use crate::rate::{Rate, parse_duration};
use crate::template::Template;
use crate::terms::ApiKind;

impl Plan {
    /// Checks `spec` against `overrides` and the input's header, and opens the input for reading.
    pub fn new(spec: JobSpec, overrides: &Overrides) -> Result<(Plan, InputReader), PlanError> {
        let input_path = files::input(&spec, overrides)?;
        let format = detect_format(&input_path, spec.input.format)?;
        let delimiter = delimiter(spec.input.delimiter.as_deref())?;
        let sheet = spec.input.sheet.clone();
        let mut reader = InputReader::open_sheet(&input_path, format, delimiter, sheet.as_deref())?;
        let vars = run_vars(&overrides.vars, reader.columns())?;
        let key = template("[input] key", &spec.input.key)?;
        let amount = template("[link] amount", &spec.link.amount)?;
        let link = link_templates(spec.api.kind, &spec.link)?;
        let lifecycle = spec.lifecycle.as_ref().map(|l| Lifecycle::new(l, spec.api.kind)).transpose()?;

        // Every placeholder must name a column or a --var: checked once, here, not on the first row.
        let mut templates = vec![("[input] key", &key), ("[link] amount", &amount)];
        templates.extend(link.templates());
        if let Some(capacity) = lifecycle.as_ref().and_then(|l| l.capacity.as_ref()) {
            templates.push(("[lifecycle] capacity", capacity));
        }
        let columns = used_columns(&templates, &vars, &reader, &input_path)?;
        let (columns, extra_positions) = with_output_columns(columns, &spec.output.columns, reader.columns())?;
        let deliver = spec.deliver.as_ref().map(|d| DeliverPlan::new(d, |p| spec.beside(p))).transpose()?;
        let (columns, mail_columns) = match &deliver {
            Some(deliver) => with_mail_columns(columns, deliver, &vars, &reader, &input_path)?,
            None => (columns, Vec::new()),
        };
        reader.select(columns.clone());

        if let LinkTemplates::Classic { currency, .. } = &link
            && currency.is_literal()
            && Currency::find(&currency.to_string()).is_none()
        {
            return Err(PlanError::Currency(currency.to_string()));
        }
        let unit_unstated = spec.link.amount_unit.is_none() && !amount.is_literal();
        let amount_source = spec.link.amount.clone();
        let (output_path, ledger_path) = files::output_and_ledger(&spec, overrides, &vars)?;
        files::check_paths(&input_path, &output_path, &ledger_path, overrides.job.as_deref())?;
        let header = crate::output::header(&spec.output.columns, deliver.is_some(), lifecycle.is_some());
        files::check_output_target(&output_path, &header, overrides.output.is_some())?;
        let plan = Plan {
            endpoint: Endpoint::new(&spec, overrides)?,
            input_path,
            format,
            delimiter,
            places: reader.places(),
            sheet,
            output_path,
            ledger_path,
            rates: rates(&spec, overrides)?,
            rates_from_flags: overrides.limits.is_some(),
            concurrency: concurrency(overrides.concurrency.unwrap_or(spec.limits.concurrency))?,
            active_links: spec.limits.active_links,
            extra_columns: spec.output.columns,
            extra_positions,
            deliver: deliver.map(Box::new),
            mail_columns,
            lifecycle,
            columns,
            vars,
            key,
            amount,
            // Provisional while unstated: the plan is refused below before anyone can run it.
            amount_unit: spec.link.amount_unit.unwrap_or(AmountUnit::Minor),
            link,
            name: spec.name,
        };
        if unit_unstated {
            let readings = plan.amount_readings(&mut reader);
            return Err(PlanError::AmountUnit { amount: amount_source, readings });
        }
        Ok((plan, reader))
    }
}

impl Endpoint {
    /// Checks the job's `[api]` and `[retry]` with the overrides; reads no input.
    pub fn new(spec: &JobSpec, overrides: &Overrides) -> Result<Endpoint, PlanError> {
        Ok(Endpoint {
            api: spec.api.kind,
            key_env: spec.api.key_env.clone(),
            base_url: base_url(spec, overrides)?,
            timeout: duration("[api] timeout", &spec.api.timeout, Duration::from_millis(1), HOUR)?,
            auth: spec.api.auth,
            retry: RetryPolicy {
                attempts: Some(spec.retry.attempts)
                    .filter(|n| (1..=MAX_ATTEMPTS).contains(n))
                    .ok_or(PlanError::Attempts(spec.retry.attempts))?,
                base_delay: duration("[retry] base_delay", &spec.retry.base_delay, Duration::ZERO, HOUR)?,
                max_delay: duration("[retry] max_delay", &spec.retry.max_delay, Duration::ZERO, HOUR)?,
                breaker: Some(spec.retry.breaker)
                    .filter(|n| (1..=MAX_BREAKER).contains(n))
                    .ok_or(PlanError::Breaker(spec.retry.breaker))?,
                outage: duration("[retry] outage", &spec.retry.outage, Duration::ZERO, 7 * 24 * HOUR)?,
            },
            team_id: match spec.link.team_id {
                Some(crate::job::Field::Fixed(team)) if spec.api.kind == ApiKind::LinksPlus => Some(team),
                _ => None,
            },
            mode: spec.api.mode,
        })
    }
}

/// `[input] delimiter`: one ASCII character that is not a quote or a line break (`,` when absent).
fn delimiter(written: Option<&str>) -> Result<u8, PlanError> {
    match written.map(str::as_bytes) {
        None => Ok(b','),
        Some(&[byte]) if byte.is_ascii() && !matches!(byte, b'"' | b'\n' | b'\r') => Ok(byte),
        Some(_) => Err(PlanError::Delimiter(written.unwrap_or_default().to_owned())),
    }
}

/// The `--var`s, none of which may shadow an input column.
fn run_vars(vars: &[(String, String)], columns: &[String]) -> Result<HashMap<String, String>, PlanError> {
    let mut found = HashMap::new();
    for (name, value) in vars {
        if columns.contains(name) {
            return Err(PlanError::VarShadowsColumn(name.clone()));
        }
        found.insert(name.clone(), value.clone());
    }
    Ok(found)
}

fn link_templates(api: ApiKind, l: &LinkSpec) -> Result<LinkTemplates, PlanError> {
    Ok(match api {
        ApiKind::Links => {
            let plus_only = [
                ("team_id", l.team_id.is_some()),
                ("template_id", l.template_id.is_some()),
                ("name", l.name.is_some()),
                ("multiple_usage", l.multiple_usage.is_some()),
                ("custom_webhook", l.custom_webhook.is_some()),
            ];
            refuse_foreign(
                &plus_only,
                "Links+ jobs (kind = \"links_plus\"); classic links use currency, title, description, multiple",
            )?;
            let text = |field, value: &Option<String>| {
                template(&format!("[link] {field}"), required(field, "classic", value.as_ref())?)
            };
            let metadata = l
                .metadata
                .iter()
                .map(|(name, source)| Ok((name.clone(), template(&format!("[link.metadata] {name}"), source)?)))
                .collect::<Result<_, PlanError>>()?;
            LinkTemplates::Classic {
                currency: text("currency", &l.currency)?,
                title: text("title", &l.title)?,
                description: text("description", &l.description)?,
                multiple: field_source("multiple", l.multiple.as_ref(), false)?,
                metadata,
                key_in_metadata: l.key_in_metadata,
            }
        }
        ApiKind::LinksPlus => {
            let classic_only = [
                ("title", l.title.is_some()),
                ("description", l.description.is_some()),
                ("multiple", l.multiple.is_some()),
                ("metadata", !l.metadata.is_empty()),
                ("key_in_metadata", l.key_in_metadata),
            ];
            refuse_foreign(&classic_only, "classic jobs; Links+ links use team_id, template_id, name, multiple_usage")?;
            if let Some(hook) = &l.custom_webhook
                && Template::parse(hook).is_ok_and(|t| t.is_literal())
            {
                check_webhook(hook).map_err(PlanError::Webhook)?;
            }
            let optional = |field: &str, value: &Option<String>| {
                value.as_deref().map(|v| template(&format!("[link] {field}"), v)).transpose()
            };
            LinkTemplates::Plus {
                team_id: field_source("team_id", Some(required("team_id", "Links+", l.team_id.as_ref())?), 0)?,
                template_id: field_source(
                    "template_id",
                    Some(required("template_id", "Links+", l.template_id.as_ref())?),
                    0,
                )?,
                name: template("[link] name", required("name", "Links+", l.name.as_ref())?)?,
                currency: optional("currency", &l.currency)?,
                multiple_usage: field_source("multiple_usage", l.multiple_usage.as_ref(), false)?,
                custom_webhook: optional("custom_webhook", &l.custom_webhook)?,
            }
        }
    })
}

/// The input columns the templates use, in first-use order; a placeholder naming neither a column nor a
/// `--var` is refused, all of them at once.
fn used_columns(
    templates: &[(&str, &Template)],
    vars: &HashMap<String, String>,
    reader: &InputReader,
    input: &std::path::Path,
) -> Result<Vec<String>, PlanError> {
    let mut wanted: Vec<String> = Vec::new();
    let mut unknown = Vec::new();
    for (field, t) in templates {
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
        return Err(PlanError::UnknownPlaceholders {
            unknown,
            input: input.to_owned(),
            columns: reader.columns().to_vec(),
        });
    }
    Ok(wanted)
}

/// `wanted` with the output's extra columns added, and where each extra column sits in it.
fn with_output_columns(
    mut wanted: Vec<String>,
    extra: &[String],
    columns: &[String],
) -> Result<(Vec<String>, Vec<usize>), PlanError> {
    if let Some(missing) = extra.iter().find(|c| !columns.contains(c)) {
        return Err(PlanError::UnknownOutputColumn { column: missing.clone(), columns: columns.to_vec() });
    }
    for c in extra {
        if !wanted.contains(c) {
            wanted.push(c.clone());
        }
    }
    // Each output column was pushed into `wanted` just above, so every lookup finds it.
    let positions = extra.iter().filter_map(|c| wanted.iter().position(|w| w == c)).collect();
    Ok((wanted, positions))
}

/// Each column a message's templates name, with where it sits among the columns read.
type MailColumns = Vec<(String, usize)>;

/// `wanted` with the columns `[deliver]`'s templates name, and each of them with where it sits. The link's
/// own fields ([`LINK_FIELDS`]) are not columns; any other placeholder names a column or a `--var`.
fn with_mail_columns(
    mut wanted: Vec<String>,
    deliver: &DeliverPlan,
    vars: &HashMap<String, String>,
    reader: &InputReader,
    input: &Path,
) -> Result<(Vec<String>, MailColumns), PlanError> {
    let templates = deliver.templates();
    let mut names: Vec<&str> = Vec::new();
    let mut unknown = Vec::new();
    for (field, t) in &templates {
        for name in t.placeholders() {
            if reader.columns().iter().any(|c| c == name) {
                if !names.contains(&name) {
                    names.push(name);
                }
            } else if !vars.contains_key(name) && !LINK_FIELDS.contains(&name) {
                unknown.push(format!("{{{name}}} in {field}"));
            }
        }
    }
    if !unknown.is_empty() {
        let columns = reader.columns().to_vec();
        return Err(PlanError::UnknownPlaceholders { unknown, input: input.to_owned(), columns });
    }
    let mut positions = Vec::new();
    for name in names {
        let at = wanted.iter().position(|w| w == name).unwrap_or_else(|| {
            wanted.push(name.to_owned());
            wanted.len() - 1
        });
        positions.push((name.to_owned(), at));
    }
    Ok((wanted, positions))
}

fn rates(spec: &JobSpec, overrides: &Overrides) -> Result<Vec<Rate>, PlanError> {
    match &overrides.limits {
        Some(rates) => Ok(rates.clone()),
        None => spec.limits.rates.iter().map(|r| r.parse::<Rate>().map_err(PlanError::Rate)).collect(),
    }
}

const HOUR: Duration = Duration::from_hours(1);

/// A duration of the job, read and held within `min..=max` (a zero timeout would fail every request at once;
/// hours-long ones would hide a stuck run).
pub(super) fn duration(field: &'static str, text: &str, min: Duration, max: Duration) -> Result<Duration, PlanError> {
    let value = parse_duration(text).map_err(|error| PlanError::Duration { field, error })?;
    if value < min || value > max {
        return Err(PlanError::DurationRange { field, value, min, max });
    }
    Ok(value)
}

fn concurrency(n: usize) -> Result<usize, PlanError> {
    if (1..=MAX_CONCURRENCY).contains(&n) { Ok(n) } else { Err(PlanError::Concurrency(n)) }
}

fn base_url(spec: &JobSpec, overrides: &Overrides) -> Result<String, PlanError> {
    let url =
        overrides.base_url.as_deref().or(spec.api.base_url.as_deref()).unwrap_or(spec.api.kind.default_base_url());
    check_base_url(url).map_err(PlanError::BaseUrl)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::job::{Field, MINIMAL};
    use crate::rate::RateError;
    use crate::template::TemplateError;

    /// The minimal job over an input with columns `id,amount,title,note`, changed by `edit`, planned with
    /// `overrides` (its input set to that file).
    fn plan_with(edit: impl FnOnce(&mut JobSpec), overrides: Overrides) -> Result<Plan, PlanError> {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("rows.csv");
        std::fs::write(&input, "id,amount,title,note\nk1,100,A,n\n").unwrap();
        let mut spec = JobSpec::parse(MINIMAL).unwrap();
        edit(&mut spec);
        let overrides = Overrides { input: overrides.input.or(Some(input)), ..overrides };
        Plan::new(spec, &overrides).map(|(plan, _)| plan)
    }

    fn refusal(edit: impl FnOnce(&mut JobSpec)) -> PlanError {
        plan_with(edit, Overrides::default()).unwrap_err()
    }

    fn plus(spec: &mut JobSpec) {
        spec.api.kind = ApiKind::LinksPlus;
        let l = &mut spec.link;
        (l.title, l.description, l.multiple) = (None, None, None);
        (l.team_id, l.template_id, l.name) = (Some(Field::Fixed(1)), Some(Field::Fixed(2)), Some("{title}".into()));
    }

    #[test]
    fn the_minimal_job_plans() {
        let plan = plan_with(|_| {}, Overrides::default()).unwrap();
        assert_eq!((plan.api(), plan.concurrency(), plan.base_url()), (ApiKind::Links, 4, "https://api.omise.co"));
        assert_eq!(plan.ledger_path(), std::path::Path::new("out/t.ledger.jsonl"));
    }

    #[test]
    fn refuses_no_input() {
        let mut spec = JobSpec::parse(MINIMAL).unwrap();
        spec.input.path = None;
        assert!(matches!(Plan::new(spec, &Overrides::default()), Err(PlanError::NoInput)));
    }

    #[test]
    fn refuses_an_input_that_cannot_be_opened() {
        let overrides = Overrides { input: Some("/nonexistent/rows.csv".into()), ..Overrides::default() };
        assert!(matches!(plan_with(|_| {}, overrides), Err(PlanError::Input(_))));
    }

    #[test]
    fn refuses_a_var_shadowing_a_column() {
        let overrides = Overrides { vars: vec![("note".into(), "x".into())], ..Overrides::default() };
        assert!(matches!(plan_with(|_| {}, overrides), Err(PlanError::VarShadowsColumn(name)) if name == "note"));
    }

    #[test]
    fn refuses_a_template_that_does_not_parse() {
        let error = refusal(|s| s.link.title = Some("{title".into()));
        let PlanError::Template { field, error, .. } = &error else { panic!("{error:?}") };
        assert_eq!((field.as_str(), error), ("[link] title", &TemplateError::Unclosed(1)));
    }

    #[test]
    fn refuses_links_plus_fields_on_a_classic_job() {
        let error = refusal(|s| s.link.name = Some("n".into()));
        assert!(matches!(&error, PlanError::ForeignFields { fields, .. } if fields == &["name"]), "{error:?}");
    }

    #[test]
    fn refuses_classic_fields_on_a_links_plus_job() {
        let error = refusal(|s| {
            plus(s);
            s.link.description = Some("d".into());
        });
        assert!(matches!(&error, PlanError::ForeignFields { fields, .. } if fields == &["description"]), "{error:?}");
    }

    #[test]
    fn refuses_a_missing_classic_field() {
        let error = refusal(|s| s.link.title = None);
        assert!(matches!(error, PlanError::Required { field: "title", api: "classic" }), "{error:?}");
    }

    #[test]
    fn refuses_a_missing_links_plus_field() {
        let error = refusal(|s| {
            plus(s);
            s.link.template_id = None;
        });
        assert!(matches!(error, PlanError::Required { field: "template_id", api: "Links+" }), "{error:?}");
    }

    #[test]
    fn refuses_a_fixed_webhook_that_is_not_https_with_a_host() {
        for hook in ["http://example.com/hook", "https://", "https:// ", "example.com"] {
            let error = refusal(|s| {
                plus(s);
                s.link.custom_webhook = Some(hook.into());
            });
            assert!(matches!(error, PlanError::Webhook(_)), "{hook}: {error:?}");
        }
        let fine = plan_with(
            |s| {
                plus(s);
                s.link.custom_webhook = Some("https://example.com/hook".into());
            },
            Overrides::default(),
        );
        assert!(fine.is_ok());
    }

    #[test]
    fn refuses_placeholders_naming_nothing_all_at_once() {
        let error = refusal(|s| {
            s.link.title = Some("{nope}".into());
            s.link.description = Some("{neither}".into());
        });
        let PlanError::UnknownPlaceholders { unknown, columns, .. } = &error else { panic!("{error:?}") };
        assert_eq!(unknown, &["{nope} in [link] title", "{neither} in [link] description"]);
        assert_eq!(columns, &["id", "amount", "title", "note"]);
    }

    #[test]
    fn refuses_an_output_column_the_input_lacks() {
        let error = refusal(|s| s.output.columns = vec!["note".into(), "email".into()]);
        assert!(matches!(&error, PlanError::UnknownOutputColumn { column, .. } if column == "email"), "{error:?}");
    }

    #[test]
    fn refuses_an_unsupported_fixed_currency() {
        let error = refusal(|s| s.link.currency = Some("eur".into()));
        assert!(matches!(&error, PlanError::Currency(code) if code == "eur"), "{error:?}");
    }

    #[test]
    fn refuses_a_rate_that_does_not_parse() {
        let error = refusal(|s| s.limits.rates = vec!["60/fortnight".into()]);
        assert!(matches!(error, PlanError::Rate(RateError::Duration(_))), "{error:?}");
    }

    #[test]
    fn refuses_concurrency_outside_its_range_from_the_job_or_the_flag() {
        assert!(matches!(refusal(|s| s.limits.concurrency = 0), PlanError::Concurrency(0)));
        for n in [0, 65, 1_000_000_000, usize::MAX] {
            let overrides = Overrides { concurrency: Some(n), ..Overrides::default() };
            assert!(matches!(plan_with(|_| {}, overrides), Err(PlanError::Concurrency(m)) if m == n), "{n}");
        }
        let overrides = Overrides { concurrency: Some(64), ..Overrides::default() };
        assert_eq!(plan_with(|_| {}, overrides).unwrap().concurrency(), 64);
    }

    #[test]
    fn refuses_attempts_outside_their_range() {
        assert!(matches!(refusal(|s| s.retry.attempts = 0), PlanError::Attempts(0)));
        assert!(matches!(refusal(|s| s.retry.attempts = 101), PlanError::Attempts(101)));
    }

    #[test]
    fn refuses_durations_outside_their_range() {
        let error = refusal(|s| s.api.timeout = "0s".into());
        assert!(matches!(error, PlanError::DurationRange { field: "[api] timeout", .. }), "{error:?}");
        assert!(error.to_string().contains("outside 1ms to 3600s"), "{error}");
        let error = refusal(|s| s.retry.max_delay = "18446744073709551615s".into());
        assert!(matches!(error, PlanError::DurationRange { .. } | PlanError::Duration { .. }), "{error:?}");
        assert!(matches!(refusal(|s| s.retry.base_delay = "2h".into()), PlanError::DurationRange { .. }));
    }

    #[test]
    fn refuses_a_duration_that_does_not_parse() {
        let error = refusal(|s| s.retry.max_delay = "soon".into());
        assert!(matches!(error, PlanError::Duration { field: "[retry] max_delay", .. }), "{error:?}");
    }

    #[test]
    fn refuses_plain_http_off_loopback_and_credentials() {
        for url in ["http://api.omise.co", "ftp://api.omise.co", "https://skey_test_x:@api.omise.co", "not a url"] {
            let error = refusal(|s| s.api.base_url = Some(url.into()));
            assert!(matches!(error, PlanError::BaseUrl(_)), "{url}: {error:?}");
        }
        let overrides = Overrides { base_url: Some("http://127.0.0.1:9/".into()), ..Overrides::default() };
        assert_eq!(plan_with(|_| {}, overrides).unwrap().base_url(), "http://127.0.0.1:9");
    }

    #[test]
    fn refuses_paths_that_would_overwrite_the_input_or_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("rows.csv");
        std::fs::write(&input, "id,amount,title,note\nk1,100,A,n\n").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        let spelled = dir.path().join(".").join("rows.csv");
        let cases: [(Option<PathBuf>, Option<PathBuf>); 5] = [
            (Some(input.clone()), None),
            (Some(link), None),
            (Some(spelled), None),
            (Some(dir.path().join("o.csv")), Some(dir.path().join("o.csv"))),
            (Some(dir.path().to_owned()), None),
        ];
        for (output, ledger) in cases {
            let overrides = Overrides { input: Some(input.clone()), output, ledger, ..Overrides::default() };
            let error = plan_with(|_| {}, overrides).unwrap_err();
            assert!(matches!(error, PlanError::Paths(_)), "{error:?}");
        }
        let overrides = Overrides { input: Some(input.clone()), ledger: Some(input), ..Overrides::default() };
        assert!(matches!(plan_with(|_| {}, overrides), Err(PlanError::Paths(_))));
    }

    #[test]
    fn sandbox_trials_get_their_own_paths_unless_given() {
        let sandbox = Overrides { sandbox: true, ..Overrides::default() };
        let plan = plan_with(|_| {}, sandbox.clone()).unwrap();
        assert_eq!(plan.output_path(), std::path::Path::new("out/t.sandbox.csv"));
        assert_eq!(plan.ledger_path(), std::path::Path::new("out/t.sandbox.ledger.jsonl"));
        let given = Overrides { ledger: Some("l.jsonl".into()), ..sandbox };
        let plan = plan_with(|_| {}, given).unwrap();
        assert_eq!(plan.ledger_path(), std::path::Path::new("l.jsonl"));
        assert_eq!(plan.output_path(), std::path::Path::new("out/t.sandbox.csv"));
    }

    #[test]
    fn the_ledger_is_the_jobs_wherever_the_output_goes() {
        let elsewhere =
            Overrides { output: Some("/tmp/linkbatch-elsewhere/report.csv".into()), ..Overrides::default() };
        let plan = plan_with(|_| {}, elsewhere).unwrap();
        assert_eq!(plan.output_path(), std::path::Path::new("/tmp/linkbatch-elsewhere/report.csv"));
        assert_eq!(plan.ledger_path(), std::path::Path::new("out/t.ledger.jsonl"));
        let own = plan_with(|s| s.output.path = Some("monthly/dec.csv".into()), Overrides::default()).unwrap();
        assert_eq!(own.ledger_path(), std::path::Path::new("monthly/dec.ledger.jsonl"));
    }

    #[test]
    fn output_and_ledger_fill_in_the_job_and_var_placeholders() {
        let month = || Overrides { vars: vec![("month".into(), "2026-12".into())], ..Overrides::default() };
        let monthly = |s: &mut JobSpec| {
            s.output.path = Some("out/{job}-{month}.csv".into());
            s.output.ledger = Some("out/{job}.ledger.jsonl".into());
        };
        let plan = plan_with(monthly, month()).unwrap();
        assert_eq!(plan.output_path(), Path::new("out/t-2026-12.csv"));
        assert_eq!(plan.ledger_path(), Path::new("out/t.ledger.jsonl"));
        // `{job}` does not change from run to run: the default ledger may follow it.
        let plan = plan_with(|s| s.output.path = Some("out/{job}.csv".into()), Overrides::default()).unwrap();
        assert_eq!(plan.ledger_path(), Path::new("out/t.ledger.jsonl"));
        let refused = |edit: fn(&mut JobSpec), overrides: Overrides| match plan_with(edit, overrides) {
            Err(PlanError::Paths(why)) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refused(monthly, Overrides::default()),
            "[output] path = \"out/{job}-{month}.csv\": {month} is neither {job} nor a --var (pass --var month=VALUE)"
        );
        let up = Overrides { vars: vec![("month".into(), "../..".into())], ..Overrides::default() };
        assert_eq!(
            refused(monthly, up),
            "[output] path = \"out/{job}-{month}.csv\": {month} is \"../..\", which would name another folder; a \
             value in a path is one file name's part"
        );
        // A --var in the output path with no ledger named would start a ledger for every value.
        let why = refused(|s| s.output.path = Some("out/{month}.csv".into()), month());
        assert!(why.starts_with("[output] path changes with --var month, and the ledger beside it"), "{why}");
        let given = Overrides { ledger: Some("l.jsonl".into()), ..month() };
        assert!(plan_with(|s| s.output.path = Some("out/{month}.csv".into()), given).is_ok(), "--ledger names it");
    }

    #[test]
    fn an_amount_from_a_column_needs_its_unit() {
        let error = plan_with(|s| s.link.amount_unit = None, Overrides::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "[link] amount_unit is required when the amount comes from a column ({amount}), and line 2's `100` is \
             1.00 THB as \"minor\" but 100.00 THB as \"major\": add amount_unit = \"minor\" or \"major\" to [link]; \
             nothing was sent"
        );
        // A fixed amount says its own unit: minor, as the API takes it.
        assert!(
            plan_with(|s| (s.link.amount_unit, s.link.amount) = (None, "990".into()), Overrides::default()).is_ok()
        );
    }
}
