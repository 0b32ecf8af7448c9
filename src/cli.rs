//! The command line: flags as SPEC section 7 names them, turned into a [`Plan`] and handed to the runner.
//!
//! Everything that can be refused without the network is refused here, with exit code 2 and nothing sent:
//! a bad job, a bad flag, a missing or public key, a live key without `--live`. The key is read from the
//! environment and goes straight into a [`SecretKey`]; it is never printed.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::api::{ApiError, Client, Mode, SecretKey};
use crate::job::JobSpec;
use crate::ledger::{Header, Ledger, VERSION};
use crate::outcome::Outcome;
use crate::plan::{Overrides, Plan};
use crate::rate::{Rate, parse_duration};
use crate::runner::{self, RunOptions, Stop, Work};
use crate::sandbox::{FaultSpec, Sandbox, SandboxConfig};

/// The key `--sandbox` uses when the job's variable is unset: fixed, so a re-run finds its ledger.
pub const SANDBOX_KEY: &str = "skey_test_linkbatch_sandbox";

const EXAMPLES: &str = "Examples:
  linkbatch run jobs/catalog-import.toml --sandbox        try a job on the built-in sandbox
  linkbatch validate jobs/monthly-subscriptions.toml --var billing_month=2026-12
  OMISE_SECRET_KEY=skey_test_... linkbatch run jobs/monthly-subscriptions.toml --var billing_month=$(date +%Y-%m)
  linkbatch status jobs/catalog-import.toml
  linkbatch sandbox --limit 60/min --limit 1000/h --fault drop-after-commit=0.05 --seed 7

Exit codes: 0 every row has a link; 1 some rows failed, were rejected or conflict; 2 usage, job or
input error (nothing sent); 3 aborted (authentication failure, ledger locked or mismatched);
130 interrupted (run again to resume).";

/// Turns rows of a CSV or JSONL file into Omise payment links, exactly once.
#[derive(Debug, Parser)]
#[command(name = "linkbatch", version, about, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log detail (-vv for traces).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a link for every new row of the job's input.
    Run(RunCommand),
    /// Check every row and count what a run would do; nothing is sent.
    Validate(InspectArgs),
    /// Count rows per state from the input and the ledger; nothing is sent.
    Status(InspectArgs),
    /// Serve both Omise link APIs on localhost, in memory, for trying jobs without an account.
    Sandbox(SandboxArgs),
    /// Read which links were paid (one request per link, within the limits; resumable) into the output.
    Refresh(RunArgs),
    /// Rebuild the output CSV from the input and the ledger alone; nothing is sent.
    Export(InspectArgs),
}

#[derive(Debug, Args)]
struct RunCommand {
    #[command(flatten)]
    args: RunArgs,
    /// For a row changed since its link was made (classic API): delete the old link, if unpaid, and create
    /// the new one. A paid link is never replaced.
    #[arg(long)]
    replace_changed: bool,
}

#[derive(Debug, Args)]
struct JobArgs {
    /// The job file (TOML).
    job: PathBuf,
    /// Input file, instead of the job's [input] path.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Ledger file, instead of the job's [output] ledger.
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// A run variable for templates, e.g. --var billing_month=2026-11 (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Output CSV, instead of the job's [output] path.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Run against an in-process sandbox (no account, no network).
    #[arg(long, conflicts_with = "base_url")]
    sandbox: bool,
    /// API base URL: https, or http on a loopback address.
    #[arg(long)]
    base_url: Option<String>,
    /// Rate limit COUNT/PERIOD replacing the job's (repeatable; `none` lifts them).
    #[arg(long = "limit", value_name = "RATE")]
    limits: Vec<String>,
    /// Requests in flight at once.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Allow a live key (`skey_live`_…): real links, real money.
    #[arg(long)]
    live: bool,
}

#[derive(Debug, Args)]
struct InspectArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Output CSV whose ledger to read, instead of the job's.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Look at the ledger of `run --sandbox` trials.
    #[arg(long)]
    sandbox: bool,
    /// Rate limits for the ETA, replacing the job's (repeatable; `none` lifts them).
    #[arg(long = "limit", value_name = "RATE")]
    limits: Vec<String>,
}

#[derive(Debug, Args)]
struct SandboxArgs {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8700")]
    addr: SocketAddr,
    /// Rate limit per key, COUNT/PERIOD (repeatable), e.g. --limit 60/min --limit 1000/h.
    #[arg(long = "limit", value_name = "RATE")]
    limits: Vec<String>,
    /// Fault to inject, KIND=PROB: 500-before, 500-after, 429, slow-after, drop-after-commit (repeatable).
    #[arg(long = "fault", value_name = "KIND=PROB")]
    faults: Vec<String>,
    /// Seed for ids and fault draws (same seed, same sequence); random when not given.
    #[arg(long)]
    seed: Option<u64>,
    /// Latency added to every API answer, e.g. 300ms.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    latency: String,
    /// How long a slow-after fault holds its answer once the link is stored.
    #[arg(long, value_name = "DURATION", default_value = "40s")]
    slow_delay: String,
    /// Links+ teams and templates, as JSON: [{"id": 456, "templates": [{"id": 123, "name": "…", "currency": "thb"}]}].
    #[arg(long, value_name = "FILE")]
    teams: Option<PathBuf>,
}

fn usage(error: impl std::fmt::Display) -> Outcome {
    Outcome::refused(anyhow::anyhow!("{error}"))
}

/// What a command returns: `Err` carries an outcome that stops it early, so `?` works on every error type
/// that has an [`Outcome`].
type Ended = Result<Outcome, Outcome>;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(Outcome::refused(anyhow::anyhow!("no runtime")).code());
        }
    };
    let (Ok(outcome) | Err(outcome)) = runtime.block_on(dispatch(cli));
    if let Some(error) = outcome.error() {
        crate::progress::suspend(|| eprintln!("error: {error:#}"));
    }
    ExitCode::from(outcome.code())
}

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::progress::suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter =
        EnvFilter::try_from_env("LINKBATCH_LOG").unwrap_or_else(|_| EnvFilter::new(format!("linkbatch={level}")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| LogWriter).with_target(false);
    let _ = match cli.log_format {
        LogFormat::Text => builder.with_ansi(crate::progress::interactive()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn parse_limits(limits: &[String]) -> Result<Option<Vec<Rate>>, Outcome> {
    if limits.is_empty() {
        return Ok(None);
    }
    if limits.iter().any(|l| l.eq_ignore_ascii_case("none")) {
        return Ok(Some(Vec::new()));
    }
    limits
        .iter()
        .map(|l| l.parse::<Rate>().map_err(|e| usage(format!("--limit: {e}"))))
        .collect::<Result<_, _>>()
        .map(Some)
}

fn parse_vars(vars: &[String]) -> Result<Vec<(String, String)>, Outcome> {
    vars.iter()
        .map(|v| match v.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_owned(), value.to_owned())),
            _ => Err(usage(format!("--var `{v}` is not NAME=VALUE"))),
        })
        .collect()
}

/// The job file and the flags every job command shares, as [`Overrides`] (`extra`: the command's own).
fn overrides(
    job: &JobArgs,
    output: Option<PathBuf>,
    limits: &[String],
    extra: Overrides,
) -> Result<Overrides, Outcome> {
    Ok(Overrides {
        input: job.input.clone(),
        output,
        ledger: job.ledger.clone(),
        vars: parse_vars(&job.vars)?,
        limits: parse_limits(limits)?,
        ..extra
    })
}

async fn dispatch(cli: Cli) -> Ended {
    let quiet = cli.quiet;
    match cli.command {
        Command::Run(RunCommand { args, replace_changed }) => {
            run(args, if replace_changed { Work::CreateReplacing } else { Work::Create }, quiet).await
        }
        Command::Refresh(args) => run(args, Work::Refresh, quiet).await,
        Command::Export(args) => export(&args),
        Command::Validate(args) => validate(&args),
        Command::Status(args) => status(&args),
        Command::Sandbox(args) => sandbox(args).await,
    }
}

fn header(plan: &Plan, key: &SecretKey, base_url: &str) -> Header {
    Header {
        version: VERSION,
        api: plan.api().name().to_owned(),
        base_url: base_url.to_owned(),
        mode: key.mode().name().to_owned(),
        key_hash: key.fingerprint(),
    }
}

/// `run` and `refresh`: the sandbox, the plan, the key, the ledger and the signals, then the runner.
async fn run(args: RunArgs, work: Work, quiet: bool) -> Ended {
    let spec = JobSpec::load(&args.job.job)?;
    // The in-process sandbox lives as long as this run; its ledger records "sandbox", not its port.
    let sandbox = if args.sandbox { Some(start_sandbox().await?) } else { None };
    let extra = Overrides {
        base_url: sandbox.as_ref().map(|s| s.base_url().to_owned()).or(args.base_url.clone()),
        concurrency: args.concurrency,
        sandbox: args.sandbox,
        ..Overrides::default()
    };
    let (plan, _) = Plan::new(spec, &overrides(&args.job, args.output.clone(), &args.limits, extra)?)?;
    let key = secret_key(&plan, args.sandbox, args.live)?;
    let ledger_base = if args.sandbox { "sandbox" } else { plan.base_url() };
    let (ledger, index, report) = Ledger::open(plan.ledger_path(), &header(&plan, &key, ledger_base))?;
    if let Some(bytes) = report.torn_tail {
        tracing::warn!(ledger = %plan.ledger_path().display(), "ignored a torn last line ({bytes} bytes) left by an interrupted run");
    }
    let client = Client::new(plan.api(), plan.base_url(), key, plan.auth(), plan.timeout()).map_err(usage)?;

    let mut reader = plan.reader()?;
    // A plain run drafts its output while surveying: a finished job run again then reads its input once.
    let draft = match work {
        Work::Create => Some(runner::OutputPass::create(&plan, Some(index.lines), false).map_err(usage)?),
        Work::CreateReplacing | Work::Refresh => None,
    };
    let (survey, _, draft) = runner::survey_drafting(&plan, &mut reader, &index, draft);
    for &(team, template) in &survey.templates {
        check_template(&client, team, template).await?;
    }

    let stop = Arc::new(Stop::default());
    let signals = tokio::spawn(watch_signals(stop.clone(), plan.timeout()));
    let options = RunOptions { progress: !quiet, work, draft };
    let summary = runner::run(plan, client, ledger, index, survey, stop, options).await.map_err(Outcome::Refused)?;
    signals.abort();
    if let Some(server) = sandbox {
        server.shutdown().await;
    }
    let outcome = summary.outcome();
    if let Some(reason) = &summary.aborted {
        eprintln!("aborted: {reason}");
    }
    if summary.interrupted {
        eprintln!("interrupted: requests in flight were finished and recorded; run the same command again to resume");
    }
    if !quiet || outcome.code() != 0 {
        eprintln!("{}", summary.line());
    }
    // The reason was printed above; the exit status is what is left to say.
    Ok(match outcome {
        Outcome::Aborted(_) => Outcome::Aborted(anyhow::anyhow!("aborted")),
        other => other,
    })
}

async fn start_sandbox() -> Result<Sandbox, Outcome> {
    let config = SandboxConfig { seed: rand::random(), ..SandboxConfig::default() };
    let server = Sandbox::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| usage(format!("cannot start the sandbox: {e}")))?;
    tracing::info!(base_url = %server.base_url(), "started the in-process sandbox");
    Ok(server)
}

/// The key from the job's variable (`--sandbox` has its own when none is set); a live key needs `--live`.
fn secret_key(plan: &Plan, sandbox: bool, live: bool) -> Result<SecretKey, Outcome> {
    let raw_key = std::env::var(plan.key_env()).ok().filter(|k| !k.trim().is_empty());
    let raw_key = match (raw_key, sandbox) {
        (Some(key), _) => key,
        (None, true) => SANDBOX_KEY.to_owned(),
        (None, false) => String::new(),
    };
    let key = SecretKey::new(raw_key, plan.key_env())?;
    if key.mode() == Mode::Live && !live {
        return Err(usage(format!(
            "the key in ${} is a live key: it creates real payment links. Pass --live to confirm",
            plan.key_env()
        )));
    }
    Ok(key)
}

/// Links+: the job's template must exist and belong to its team, or nothing is created.
async fn check_template(client: &Client, team: u64, template: u64) -> Result<(), Outcome> {
    match client.template_team(template).await {
        Ok(owner) if owner == team => Ok(()),
        Ok(owner) => Err(usage(format!(
            "[link] template_id {template} belongs to team {owner}, not to team_id {team}; nothing was created"
        ))),
        Err(ApiError::Permanent { status: 404, .. }) => Err(usage(format!(
            "[link] template_id {template} was not found (list your team's templates: GET /external/{team}/templates); nothing was created"
        ))),
        Err(e @ ApiError::Fatal { .. }) => Err(Outcome::aborted(anyhow::anyhow!("checking template {template}: {e}"))),
        Err(e) => Err(usage(format!("could not check template {template}: {e}; nothing was created"))),
    }
}

/// First SIGINT/SIGTERM: stop dispatching and let in-flight requests finish (bounded). Second: exit now;
/// every intent is already on disk, so the next run reconciles whatever was cut short.
async fn watch_signals(stop: Arc<Stop>, timeout: std::time::Duration) {
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
    std::process::exit(130);
}

fn inspect_plan(args: &InspectArgs) -> Result<(Plan, Option<crate::ledger::Index>), Outcome> {
    let spec = JobSpec::load(&args.job.job)?;
    let extra = Overrides { sandbox: args.sandbox, ..Overrides::default() };
    let (plan, _) = Plan::new(spec, &overrides(&args.job, args.output.clone(), &args.limits, extra)?)?;
    let index = Ledger::inspect(plan.ledger_path())?.map(|(_, index, report)| {
        if report.torn_tail.is_some() {
            tracing::warn!("the ledger ends with a torn line; the next run will drop it");
        }
        index
    });
    Ok((plan, index))
}

fn validate(args: &InspectArgs) -> Ended {
    let (plan, index) = inspect_plan(args)?;
    let index = index.unwrap_or_default();
    let mut reader = plan.reader()?;
    let (survey, rejections) = runner::survey(&plan, &mut reader, &index);
    let to_send = survey.new + survey.uncertain;
    let eta = crate::throttle::fastest_schedule(to_send, plan.rates());
    let limits = if plan.rates().is_empty() {
        "no limits".to_owned()
    } else {
        plan.rates().iter().map(Rate::to_string).collect::<Vec<_>>().join(", ")
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}: {} rows in {}", plan.name(), survey.rows, plan.input_path().display());
    let _ = writeln!(out, "  new:              {}", survey.new);
    if survey.failed_before > 0 {
        let _ = writeln!(out, "    (of which failed before: {})", survey.failed_before);
    }
    let _ = writeln!(out, "  already created:  {}", survey.existing);
    let _ = writeln!(out, "  uncertain:        {} (reconciled before any resend)", survey.uncertain);
    let _ = writeln!(out, "  conflicts:        {}", survey.conflict);
    let _ = writeln!(out, "  rejected:         {}", survey.rejected);
    let _ = writeln!(out, "  ETA under {limits}: {} for {to_send} requests", crate::progress::human(eta));
    for e in rejections.iter().take(20) {
        let _ = writeln!(out, "  line {}: {}: {}", e.line, e.field, e.reason);
    }
    if rejections.len() > 20 {
        let _ = writeln!(out, "  … and {} more rejected rows", survey.rejected - 20);
    }
    Ok(Outcome::complete_if(survey.rejected + survey.conflict == 0))
}

fn export(args: &InspectArgs) -> Ended {
    let (plan, index) = inspect_plan(args)?;
    let index = index.ok_or_else(|| {
        usage(format!("no ledger at {}: nothing has been run for this job yet", plan.ledger_path().display()))
    })?;
    let payments = index.has_payments();
    let (counts, totals) =
        runner::write_output(&plan, &index, Some(index.last_run), payments).map_err(Outcome::Refused)?;
    let totals = totals.map(|t| format!("; links: {}", t.line())).unwrap_or_default();
    println!("{}: {}{totals}; output {}", plan.name(), runner::counts_line(&counts), plan.output_path().display());
    Ok(Outcome::Complete)
}

fn status(args: &InspectArgs) -> Ended {
    let (plan, index) = inspect_plan(args)?;
    let index = index.unwrap_or_default();
    let mut reader = plan.reader()?;
    let (survey, _) = runner::survey(&plan, &mut reader, &index);
    let failed = survey.failed_before;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}: {} rows, ledger {}", plan.name(), survey.rows, plan.ledger_path().display());
    let _ = writeln!(out, "  created:   {}   (by the latest run)", survey.by_latest_run);
    let _ = writeln!(out, "  existing:  {}   (by earlier runs)", survey.existing - survey.by_latest_run);
    let _ = writeln!(out, "  uncertain: {}", survey.uncertain);
    let _ = writeln!(out, "  failed:    {failed}");
    let _ = writeln!(out, "  pending:   {}", survey.new - failed);
    let _ = writeln!(out, "  conflict:  {}", survey.conflict);
    let _ = writeln!(out, "  rejected:  {}", survey.rejected);
    Ok(Outcome::Complete)
}

async fn sandbox(args: SandboxArgs) -> Ended {
    let limits = parse_limits(&args.limits)?.unwrap_or_default();
    let faults = args
        .faults
        .iter()
        .map(|f| f.parse::<FaultSpec>().map_err(|e| usage(format!("--fault: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let duration = |flag: &str, text: &str| parse_duration(text).map_err(|e| usage(format!("{flag}: {e}")));
    let config = SandboxConfig {
        limits,
        faults,
        seed: args.seed.unwrap_or_else(rand::random),
        latency: duration("--latency", &args.latency)?,
        slow_delay: duration("--slow-delay", &args.slow_delay)?,
        ..SandboxConfig::default()
    };
    config.validate().map_err(|e| usage(format!("--fault: {e}")))?;
    let mut config = config;
    if let Some(path) = &args.teams {
        let text = std::fs::read_to_string(path).map_err(|e| usage(format!("--teams {}: {e}", path.display())))?;
        config.teams = serde_json::from_str(&text).map_err(|e| usage(format!("--teams {}: {e}", path.display())))?;
    }
    let teams: Vec<String> = config
        .teams
        .iter()
        .map(|t| {
            format!(
                "team {} (templates {})",
                t.id,
                t.templates.iter().map(|x| x.id.to_string()).collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    let seed = config.seed;
    let server =
        Sandbox::start(config, args.addr).await.map_err(|e| usage(format!("cannot listen on {}: {e}", args.addr)))?;
    let base = server.base_url().to_owned();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "linkbatch sandbox listening on {base}");
    let _ = writeln!(out, "  test key:  {}", Sandbox::test_key());
    let _ = writeln!(out, "  classic:   {base}/links");
    let _ = writeln!(out, "  Links+:    {base}/external/links  ({})", teams.join("; "));
    let _ = writeln!(out, "  stats:     {base}/__sandbox/stats");
    let _ = writeln!(out, "  seed:      {seed}   (--seed {seed} replays the same ids and faults)");
    let _ = writeln!(
        out,
        "  try:       linkbatch run JOB --base-url {base}   (with OMISE_SECRET_KEY set to the key above)"
    );
    let _ = out.flush();
    drop(out);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(()) = async { match &mut terminate { Some(t) => t.recv().await, None => std::future::pending().await } } => {}
    }
    server.shutdown().await;
    Ok(Outcome::Complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
