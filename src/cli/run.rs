//! `run` and `refresh`: the sandbox (with `--sandbox`), the plan, the key, the ledger, the Links+ checks
//! and the signals, then the runner. Never sends a create before the plan, key and ledger are checked.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{Ended, RunArgs, SANDBOX_KEY, overrides, usage};
use crate::api::{ApiError, Client, SecretKey};
use crate::job::JobSpec;
use crate::ledger::{Header, Ledger, VERSION};
use crate::monitor::Monitor;
use crate::outcome::Outcome;
use crate::plan::{Endpoint, Overrides, Plan, PlannedRow};
use crate::request::LinkRequest;
use crate::runner::{self, RunOptions, Work};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::stop::Stop;
use crate::terms::{ApiKind, AuthScheme, Mode};
use crate::wait::{Attempt, Gate, Next, Outages, Retrying};

fn header(plan: &Plan, key: &SecretKey, base_url: &str) -> Header {
    // What is known: the key's prefix, else the job's `[api] mode`, else nothing (such a run needed --live).
    Header {
        version: VERSION,
        api: plan.api(),
        base_url: base_url.to_owned(),
        mode: key.mode().or(plan.endpoint().mode()),
        key_hash: key.fingerprint(),
        auth: None,
    }
}

/// What a run heard, for its monitors: rows by status once the output is written, and the client's tally.
#[derive(Default)]
struct Heard {
    rows: std::collections::BTreeMap<String, u64>,
    answers: Option<crate::api::Answers>,
}

/// `run` and `refresh`: the sandbox, the plan, the key, the ledger and the signals, then the runner.
pub(super) async fn run(args: RunArgs, work: Work, quiet: bool) -> Ended {
    run_as(args, work, Said { quiet, output: true }).await
}

/// How a run ends: with its summary said unless `quiet`, and its output written unless a pass after it
/// writes it (the delivery after `deliver --remind`'s refresh), when the run says nothing but trouble.
#[derive(Debug, Clone, Copy)]
pub(super) struct Said {
    pub(super) quiet: bool,
    pub(super) output: bool,
}

/// [`run`], saying and writing as `said` asks.
pub(super) async fn run_as(args: RunArgs, work: Work, said: Said) -> Ended {
    match work {
        Work::Refresh { .. } => reads_earlier_links(&args, "refresh")?,
        Work::Retire => reads_earlier_links(&args, "retire")?,
        Work::Create { .. } => {}
    }
    let (spec, overrides, sandbox) = job_with_flags(&args).await?;
    let monitor = monitor_of(&spec)?;
    // The reader that read the header is the survey's: the input is opened once for both.
    let (plan, reader) = Plan::new(spec, &overrides)?;
    if work.by_events() && plan.api() == ApiKind::LinksPlus {
        return Err(usage(
            "refresh --events reads the Events API, which Payment Links+ does not have: use refresh; nothing was sent",
        ));
    }
    let mut heard = Heard::default();
    let Some(monitor) = monitor else {
        return Box::pin(send((plan, reader), sandbox, &args, (work, said), &mut heard)).await;
    };
    // A job that cannot even be planned never started; from here on, every end is the monitor's to hear.
    let started = std::time::Instant::now();
    monitor.start().await;
    // Boxed: the run's future is large, and this one is awaited once.
    let ended = Box::pin(send((plan, reader), sandbox, &args, (work, said), &mut heard)).await;
    let (Ok(outcome) | Err(outcome)) = &ended;
    let report = crate::monitor::Report {
        code: outcome.code(),
        rows: heard.rows,
        answers: heard.answers.map(|a| a.by_status()).unwrap_or_default(),
        elapsed: started.elapsed(),
    };
    monitor.finish(&report).await;
    ended
}

/// The run itself, once planned: the key, the ledger, the survey, then the runner.
async fn send(
    (plan, mut reader): (Plan, crate::input::InputReader),
    sandbox: Option<Sandbox>,
    args: &RunArgs,
    (work, said): (Work, Said),
    heard: &mut Heard,
) -> Ended {
    let (client, header) = connect(&plan, args).await?;
    heard.answers = Some(client.answers());
    if std::fs::metadata(plan.ledger_path()).map_or(true, |m| m.len() == 0) {
        // Checked before a new ledger is made in its place.
        refuse_if_output_names_more(&plan, &crate::ledger::Index::default())?;
    }
    // Locked and read, not yet changed: every refusal below leaves the ledger as it was.
    let (opened, mut index, report) = Ledger::read_locked(plan.ledger_path(), Some(&header))?;
    // The output the ledger last recorded is the one on disk: the ledger holds every link it names. Anything
    // else (a ledger cut short, restored or replaced, an output from elsewhere) is checked line by line.
    let stamp = crate::ledger::file_stamp(plan.output_path());
    if stamp.is_some() && index.last_output != stamp {
        refuse_if_output_names_more(&plan, &index)?;
    }

    let adopted = runner::adopt_kept_answers(&mut index, plan.api(), plan.ledger_path());
    // The file the survey reads: later passes stop if the input is another file by then.
    let input = reader.stamp().ok();
    // A plain run drafts its output while surveying: a finished job run again then reads its input once.
    let draft = match work {
        Work::Create { replace: false, retire: false, .. } => {
            Some(runner::OutputPass::create(&plan, Some(index.lines), false).map_err(usage)?)
        }
        Work::Create { .. } | Work::Refresh { .. } | Work::Retire => None,
    };
    // A refresh by pages gathers on this pass the links it reads (`decide::task`'s `refresh_since`: the
    // refresh being resumed, or one about to start, before which every reading lies).
    let pages =
        matches!(work, Work::Refresh { by_id: false, .. }).then(|| index.unfinished_refresh.unwrap_or(index.lines));
    let (survey, _, draft) = runner::survey_drafting(&plan, &mut reader, &index, draft, pages);
    if work != Work::Retire {
        let retire_first = matches!(work, Work::Create { retire: true, .. });
        runner::check_cap(&plan, &survey, retire_first).map_err(Outcome::refused)?;
    }
    for &(team, template) in &survey.templates {
        check_template(&plan, &client, team, template).await?;
    }

    // The run goes ahead: now the ledger may change (a torn tail cut, a header written).
    let ledger = opened.proceed()?;
    if let Some(bytes) = report.torn_tail {
        tracing::warn!(ledger = %plan.ledger_path().display(), "ignored a torn last line ({bytes} bytes) left by an interrupted run");
    }
    let book = crate::ledger::Book::new(ledger, index);
    book.write_applied(&adopted).await?;

    let stop = Arc::new(Stop::default());
    let mut signals = tokio::spawn(watch_signals(stop.clone(), plan.timeout()));
    let options = RunOptions { progress: !said.quiet, work, draft, input, output: said.output };
    let summary = tokio::select! {
        // Past the start mark requests may have left: a failure here is the run's (exit 3), never exit 2.
        summary = runner::run(plan, client, book, survey, stop, options) => summary.map_err(Outcome::Aborted)?,
        // A second signal, or requests in flight past their grace: quit now. Every intent is on disk.
        _ = &mut signals => return Ok(Outcome::Interrupted),
    };
    signals.abort();
    if let Some(server) = sandbox {
        server.shutdown().await;
    }
    heard.rows = summary.counts.iter().map(|(status, n)| (status.name().to_owned(), *n)).collect();
    if summary.interrupted {
        crate::said::say(
            crate::said::Kind::Interrupted,
            "interrupted: requests in flight were finished and recorded; run the same command again to resume",
        );
    }
    let outcome = summary.outcome();
    if (!said.quiet && said.output) || outcome.code() != 0 {
        crate::said::say(crate::said::Kind::Summary, &summary.line());
    }
    Ok(outcome)
}

/// The job planned with the command's flags. With `--sandbox` an in-process sandbox is started first, its
/// address the plan's base URL; it lives as long as the value returned (its ledger records "sandbox").
pub(super) async fn planned(args: &RunArgs) -> Result<(Plan, Option<Sandbox>), Outcome> {
    planned_reading(args).await.map(|(plan, _, sandbox)| (plan, sandbox))
}

/// [`planned`], with the reader that read the input's header, for a first pass over its rows.
pub(super) async fn planned_reading(
    args: &RunArgs,
) -> Result<(Plan, crate::input::InputReader, Option<Sandbox>), Outcome> {
    let (spec, overrides, sandbox) = job_with_flags(args).await?;
    let (plan, reader) = Plan::new(spec, &overrides)?;
    Ok((plan, reader, sandbox))
}

/// A command that reads the links earlier runs made cannot use `--sandbox`: the sandbox it starts in this
/// process holds none of them (each of them would be read, not found, and warned about one by one).
pub(super) fn reads_earlier_links(args: &RunArgs, command: &str) -> Result<(), Outcome> {
    if !args.sandbox {
        return Ok(());
    }
    Err(usage(format!(
        "{command} reads the links earlier runs made, and --sandbox starts an empty sandbox in this process: start \
         `linkbatch sandbox` and pass its address with --base-url (and its mail catcher with --smtp) to every \
         command instead; nothing was sent"
    )))
}

/// The job file, the flags as [`Overrides`], and the sandbox `--sandbox` starts (its address the base URL).
/// The job's monitors, a textfile's path read beside the job.
pub(super) fn monitor_of(spec: &JobSpec) -> Result<Option<Monitor>, Outcome> {
    let monitor_spec = crate::job::MonitorSpec {
        textfile: spec.monitor.textfile.as_deref().map(|p| spec.beside(p)),
        ..spec.monitor.clone()
    };
    Monitor::new(&spec.name, &monitor_spec).map_err(usage)
}

pub(super) async fn job_with_flags(args: &RunArgs) -> Result<(JobSpec, Overrides, Option<Sandbox>), Outcome> {
    let spec = JobSpec::load(&args.job.job)?;
    let sandbox = if args.sandbox { Some(start_sandbox().await?) } else { None };
    let extra = Overrides {
        base_url: sandbox.as_ref().map(|s| s.base_url().to_owned()).or(args.base_url.clone()),
        concurrency: args.concurrency,
        sandbox: args.sandbox,
        ..Overrides::default()
    };
    Ok((spec, overrides(&args.job, args.output.clone(), &args.limits, extra), sandbox))
}

/// The key, the ledger header the job's links are recorded under, and a client with the Links+ scheme
/// settled (found and put in the header when the job says `auto`).
pub(super) async fn connect(plan: &Plan, args: &RunArgs) -> Result<(Client, Header), Outcome> {
    let key = secret_key(plan.endpoint(), args.sandbox, args.live)?;
    let ledger_base = if args.sandbox { "sandbox" } else { plan.base_url() };
    let mut header = header(plan, &key, ledger_base);
    let mut client = Client::new(plan.api(), plan.base_url(), key, plan.auth(), plan.timeout()).map_err(usage)?;
    if plan.api() == ApiKind::LinksPlus {
        let scheme = links_plus_auth(plan, &client).await?;
        header.auth = (plan.auth() == AuthScheme::Auto).then_some(scheme);
        client = client.with_auth(scheme);
    }
    Ok((client, header))
}

async fn start_sandbox() -> Result<Sandbox, Outcome> {
    let config = SandboxConfig { seed: rand::random(), ..SandboxConfig::default() };
    let server = Sandbox::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| usage(format!("cannot start the sandbox: {e}")))?;
    tracing::info!(base_url = %server.base_url(), "started the in-process sandbox");
    Ok(server)
}

/// The key from the job's variable, its `_FILE` or a systemd credential (`--sandbox` has its own when none is
/// set). A live key needs `--live`, and so does a key whose mode neither its prefix nor the job tells.
fn secret_key(plan: &Endpoint, sandbox: bool, live: bool) -> Result<SecretKey, Outcome> {
    let raw_key = crate::secret::read(plan.key_env()).map_err(usage)?;
    let raw_key = match (raw_key, sandbox) {
        (Some(key), _) => key,
        (None, true) => SANDBOX_KEY.to_owned(),
        (None, false) => String::new(),
    };
    let key = SecretKey::new(raw_key, plan.key_env(), plan.api().key_name())?;
    let mode = match (key.mode(), plan.mode()) {
        (Some(from_key), Some(stated)) if from_key != stated => {
            return Err(usage(format!(
                "the key in ${} is a {}-mode key, and the job says [api] mode = \"{}\"",
                plan.key_env(),
                from_key.name(),
                stated.name()
            )));
        }
        (from_key, stated) => from_key.or(stated),
    };
    match mode {
        Some(Mode::Test) => {}
        _ if live => {}
        Some(Mode::Live) => {
            return Err(usage(format!(
                "the key in ${} is a live key: it creates real payment links. Pass --live to confirm",
                plan.key_env()
            )));
        }
        None => {
            return Err(usage(format!(
                "the {} in ${} does not tell test from live (only skey_test_… and skey_live_… keys do), so it is \
                 treated as live: pass --live to confirm real links, or state the mode in the job: [api] mode = \
                 \"test\" or \"live\"",
                plan.api().key_name(),
                plan.key_env()
            )));
        }
    }
    Ok(key)
}

/// A ledger that lacks links its output names was damaged or replaced: running on it would send those rows
/// again. Refused (exit 3), the files untouched, with the way out.
fn refuse_if_output_names_more(plan: &Plan, index: &crate::ledger::Index) -> Result<(), Outcome> {
    let missing = runner::links_missing_from(index, plan.output_path()).map_err(|e| {
        usage(format!("cannot read the output {} to check the ledger: {e}", plan.output_path().display()))
    })?;
    let Some(missing) = missing else { return Ok(()) };
    let (key, link) = &missing.first;
    Err(Outcome::aborted(anyhow::anyhow!(
        "the ledger {} lacks {} that the output {} names (the first: `{key}` has {link}): it was emptied, cut \
         short or replaced since that output was written. Nothing was sent: running on it would create those links \
         again. Restore the ledger from a backup, or move it aside and rebuild it from the server with `linkbatch \
         recover` (or, if the output belongs to another ledger, move the output aside).",
        plan.ledger_path().display(),
        crate::terms::count(missing.count, "link", "links"),
        plan.output_path().display()
    )))
}

/// `templates`: the Links+ team's templates, read with the job's key and scheme (found as for a run, on the
/// list itself when the job does not fix one). Sends nothing but reads; reads the job's `[api]`, not its input.
pub(super) async fn templates(args: super::TemplatesArgs) -> Ended {
    let (spec, overrides, _sandbox) = job_with_flags(&args.run).await?;
    let plan = Endpoint::new(&spec, &overrides)?;
    if plan.api() != ApiKind::LinksPlus {
        return Err(usage("templates are Payment Links+'s: this job's kind is the classic Links API"));
    }
    let team = args
        .team
        .or(plan.team_id())
        .ok_or_else(|| usage("the job's team_id is a column: name the team with --team"))?;
    let key = secret_key(&plan, args.run.sandbox, args.run.live)?;
    let client = Client::new(plan.api(), plan.base_url(), key, plan.auth(), plan.timeout()).map_err(usage)?;
    let schemes = if plan.auth() == AuthScheme::Auto { AuthScheme::TRIED.to_vec() } else { vec![plan.auth()] };
    for scheme in schemes {
        let client = client.with_auth(scheme);
        match retried(&plan, || client.templates(team)).await {
            Ok(templates) => {
                println!("team {team}: {} template(s)", templates.len());
                for t in templates {
                    println!("  {:<8} {:<4} {}", t.id, t.currency.to_uppercase(), t.name);
                }
                return Ok(Outcome::Complete);
            }
            Err(ApiError::Fatal { .. }) => {}
            Err(e @ ApiError::Permanent { status: 404, .. }) => return Err(usage(format!("team {team}: {e}"))),
            Err(e @ (ApiError::Unreachable { .. } | ApiError::Untrusted { .. })) => {
                return Err(Outcome::aborted(anyhow::anyhow!("listing team {team}'s templates: {e}")));
            }
            Err(e) => return Err(usage(format!("could not list team {team}'s templates: {e}"))),
        }
    }
    Err(Outcome::aborted(anyhow::anyhow!(
        "the server refused the key with every Links+ scheme: check ${}",
        plan.key_env()
    )))
}

/// The Links+ scheme: the job's, else the one the ledger header recorded, else the first the server accepts
/// on a read of the job's first template (raw, bearer, basic: Omise's documentation shows the raw key, other
/// published examples Bearer and Basic; docs/reference.md, "What Omise documents"). Each scheme tried costs one read, refused or not; none is tried twice.
async fn links_plus_auth(plan: &Plan, client: &Client) -> Result<AuthScheme, Outcome> {
    if plan.auth() != AuthScheme::Auto {
        return Ok(plan.auth());
    }
    // Only a scheme that is one (never `auto`) is taken from the header.
    let recorded = crate::ledger::peek_header(plan.ledger_path()).and_then(|h| h.auth);
    if let Some(scheme) = recorded.filter(|s| AuthScheme::TRIED.contains(s)) {
        return Ok(scheme);
    }
    let Some(template) = first_template(plan)? else {
        // No row can be sent: there is nothing to authenticate.
        return Ok(AuthScheme::Raw);
    };
    for scheme in AuthScheme::TRIED {
        let client = client.with_auth(scheme);
        match retried(plan.endpoint(), || client.accepts_auth(template)).await {
            Ok(true) => {
                tracing::info!("Links+ accepts the {} scheme; recorded in the ledger header", scheme.name());
                return Ok(scheme);
            }
            Ok(false) => tracing::debug!("Links+ refused the {} scheme", scheme.name()),
            Err(e @ (ApiError::Unreachable { .. } | ApiError::Untrusted { .. })) => {
                return Err(Outcome::aborted(anyhow::anyhow!(
                    "finding the Links+ auth scheme: {e}; nothing was created"
                )));
            }
            Err(e) => {
                return Err(usage(format!("could not reach Links+ to find its auth scheme: {e}; nothing was created")));
            }
        }
    }
    Err(Outcome::aborted(anyhow::anyhow!(
        "the server refused the key with every Links+ scheme (raw, bearer, basic): check ${}; nothing was created",
        plan.key_env()
    )))
}

/// A read before the run, sent again as the job's retry policy says while the answer is retryable (a 429, a
/// 5xx, a lost connection): reads are safe to repeat, and a passing fault must not stop the job. It waits
/// for an absent server as a run does, through the one outage tracker and the one backoff loop.
pub(super) async fn retried<T, F, Fut>(plan: &Endpoint, mut read: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let retry = plan.retry();
    let outages = Outages::new(retry.outage, retry.base_delay, retry.max_delay);
    // Nothing stops a read before the run but its own answer (a signal here ends the process as before), so
    // the loop never meets a stop.
    let stop = crate::stop::Stop::default();
    let mut retrying = Retrying::new(&stop, retry.delays());
    loop {
        let probe = match outages.gate(&stop).await {
            Gate::Go(probe) => probe,
            Gate::Stopped => continue,
            Gate::GaveUp(reason) => return Err(ApiError::Unreachable { reason }),
        };
        let answer = read().await;
        drop(probe);
        outages.hear(&answer);
        let attempt = match answer {
            Ok(value) => Attempt::Done(Ok(value)),
            Err(error) => Attempt::after(crate::decide::read_again(&error), Err(error)),
        };
        match retrying.after(attempt).await {
            Next::Again | Next::Stopped => {}
            Next::Done(answer) => return answer,
        }
    }
}

/// The template of the first row that plans, for the auth search.
fn first_template(plan: &Plan) -> Result<Option<u64>, Outcome> {
    let mut reader = plan.reader()?;
    let mut found = None;
    crate::rows::for_each_row(plan, &mut reader, None, |row| {
        if let Ok(PlannedRow { request: LinkRequest::Plus(r), .. }) = row {
            found = Some(r.template_id);
        }
        found.is_none()
    });
    Ok(found)
}

/// Links+: the job's template must exist and belong to its team, or nothing is created.
async fn check_template(plan: &Plan, client: &Client, team: u64, template: u64) -> Result<(), Outcome> {
    match retried(plan.endpoint(), || client.template_team(template)).await {
        Ok(owner) if owner == team => Ok(()),
        Ok(owner) => Err(usage(format!(
            "[link] template_id {template} belongs to team {owner}, not to team_id {team}; nothing was created"
        ))),
        Err(ApiError::Permanent { status: 404, .. }) => Err(usage(format!(
            "[link] template_id {template} was not found (list your team's templates: GET /external/{team}/templates); nothing was created"
        ))),
        Err(e @ (ApiError::Fatal { .. } | ApiError::Unreachable { .. } | ApiError::Untrusted { .. })) => {
            Err(Outcome::aborted(anyhow::anyhow!("checking template {template}: {e}")))
        }
        Err(e) => Err(usage(format!("could not check template {template}: {e}; nothing was created"))),
    }
}

/// First SIGINT/SIGTERM: stop dispatching and let in-flight requests finish (bounded). Returns on the second,
/// or when the grace is over: the run then ends at once (exit 130); every intent is already on disk, so the
/// next run reconciles whatever was cut short.
pub(super) async fn watch_signals(stop: Arc<Stop>, timeout: std::time::Duration) {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let next = async |terminate: &mut Option<tokio::signal::unix::Signal>| {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            Some(()) = async { match terminate { Some(t) => t.recv().await, None => std::future::pending().await } } => {}
        }
    };
    next(&mut terminate).await;
    tracing::warn!("stopping: finishing requests in flight (press Ctrl-C again to quit at once; the next run resumes)");
    stop.stop();
    let grace = timeout + std::time::Duration::from_secs(5);
    tokio::select! {
        () = next(&mut terminate) => {}
        () = tokio::time::sleep(grace) => tracing::warn!("requests in flight did not finish in {grace:?}; quitting"),
    }
}
