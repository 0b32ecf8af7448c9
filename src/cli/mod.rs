//! The command line: flags as docs/reference.md, "Commands", names them, turned into a [`Plan`] and handed to the runner.
//!
//! Everything that can be refused without the network is refused here, with exit code 2 and nothing sent:
//! a bad job, a bad flag, a missing or public key, a live key without `--live`. The key is read from the
//! environment and goes straight into a [`SecretKey`]; it is never printed.

mod deliver;
mod inspect;
mod listen;
mod manual;
mod recover;
mod run;
mod sandbox;

use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::outcome::Outcome;
use crate::plan::Overrides;
use crate::rate::{Limit, parse_duration};
use crate::runner::Work;
use crate::sandbox::{FaultSpec, Profile};
use crate::terms::AuthScheme;

/// The key `--sandbox` uses when the job's variable is unset: fixed, so a re-run finds its ledger.
pub const SANDBOX_KEY: &str = "skey_test_linkbatch_sandbox";

const EXAMPLES: &str = "Examples:
  linkbatch run jobs/catalog-import.toml --sandbox        try a job on the built-in sandbox
  linkbatch validate jobs/monthly-subscriptions.toml --var billing_month=2026-12
  OMISE_SECRET_KEY=skey_test_... linkbatch run jobs/monthly-subscriptions.toml --var billing_month=$(date +%Y-%m)
  linkbatch run jobs/monthly-subscriptions.toml --var billing_month=2026-12 --deliver --sandbox
  linkbatch deliver jobs/monthly-subscriptions.toml --var billing_month=2026-12 --remind
  linkbatch status jobs/catalog-import.toml
  linkbatch sandbox --limit 60/min --limit 1000/h --fault drop-after-commit=0.05 --seed 7

Exit codes: 0 every row has a link (and its message); 1 some rows failed, were rejected or conflict,
or their message failed, was rejected or is uncertain; 2 usage, job or input error (nothing sent);
3 aborted (authentication failure, ledger locked or mismatched, a mail server unreachable or its
login refused); 130 interrupted (run again to resume).";

/// The version and the commit the binary was built from (`-dirty`: with uncommitted changes).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("LINKBATCH_COMMIT"), ")");

/// Turns rows of a CSV or JSONL file into Omise payment links, exactly once.
#[derive(Debug, Parser)]
#[command(name = "linkbatch", version = VERSION, about, after_help = EXAMPLES)]
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
    Validate(ValidateArgs),
    /// Count rows per state from the input and the ledger; nothing is sent.
    Status(InspectArgs),
    /// Serve both Omise link APIs on localhost, in memory, for trying jobs without an account.
    Sandbox(SandboxArgs),
    /// Read which links were paid (100 links a page of the list, then by id; within the limits; resumable)
    /// into the output.
    Refresh(RefreshCommand),
    /// End the links the job's [lifecycle] ends (unpaid and expired, sold out, pruned): their payments read
    /// first, each delete recorded before and after; nothing is created.
    Retire(RunArgs),
    /// Mail each row's link to its customer, once (the job's [deliver]); with --remind, remind the unpaid.
    Deliver(DeliverCommand),
    /// Take Omise's webhooks: each payment on the job's links read again from the API and recorded as it
    /// happens, and [lifecycle] applied at once (a sold-out tier closed within a second).
    Listen(ListenCommand),
    /// Rebuild the output CSV from the input and the ledger alone; nothing is sent.
    Export(InspectArgs),
    /// Settle by hand a row whose answer linkbatch could not read: the link it has, or that none was made.
    Settle(SettleArgs),
    /// Rebuild a lost ledger from the links the server holds, matched to the job's rows; nothing is created.
    Recover(RunArgs),
    /// List a Links+ team's templates (id, name, currency), for a job's template id; nothing is created.
    Templates(TemplatesArgs),
    /// Print a shell's completion script (bash, zsh, fish…) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages into DIR: linkbatch(1), a page per command, and linkbatch-job(5).
    Man {
        /// Where the pages go (made when missing).
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
struct TemplatesArgs {
    #[command(flatten)]
    run: RunArgs,
    /// The team, instead of the job's team.
    #[arg(long)]
    team: Option<u64>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("outcome").required(true).args(["link_id", "no_link"])))]
struct SettleArgs {
    #[command(flatten)]
    inspect: InspectArgs,
    /// The row's key, as the output CSV and the error name it.
    #[arg(long)]
    key: String,
    /// The id of the link the row has (found in the dashboard or with the server's answer in the ledger).
    #[arg(long, requires = "payment_uri")]
    link_id: Option<String>,
    /// That link's payment URI.
    #[arg(long)]
    payment_uri: Option<String>,
    /// No link was made: the row is sent again on the next run.
    #[arg(long)]
    no_link: bool,
}

// Each flag of `run` is a switch, as clap reads it.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Args)]
struct RunCommand {
    #[command(flatten)]
    args: RunArgs,
    /// For a row changed since its link was made (classic API): delete the old link, if unpaid, and create
    /// the new one. A paid link is never replaced.
    #[arg(long)]
    replace_changed: bool,
    /// For a row whose description or metadata changed since its link was made (classic API): change the
    /// link in place (PATCH). Other changes stay conflicts, or go to --replace-changed.
    #[arg(long)]
    update_changed: bool,
    /// Then mail each row's link to its customer, once (the job's [deliver]).
    #[arg(long)]
    deliver: bool,
    /// With --deliver: the mail server to send to instead of the job's [deliver] smtp, e.g. the mail catcher of
    /// `linkbatch sandbox` (`smtp://127.0.0.1:8725`); the job's login is never sent to it.
    #[arg(long, value_name = "URL", requires = "deliver", conflicts_with = "sandbox", value_parser = smtp_server)]
    smtp: Option<crate::plan::SmtpServer>,
    /// First end the links the job's [lifecycle] ends (as `linkbatch retire` does), so that new links fit
    /// under the account's cap that old ones held.
    #[arg(long)]
    retire: bool,
}

#[derive(Debug, Args)]
struct DeliverCommand {
    #[command(flatten)]
    args: RunArgs,
    /// Read which links were paid (a refresh), then remind each unpaid row whose last message is older than
    /// [deliver.reminder] after, at most `at_most` times.
    #[arg(long)]
    remind: bool,
    /// Send again the messages whose delivery is uncertain (their end was sent and no reply came): a
    /// customer may get the message twice.
    #[arg(long)]
    resend_uncertain: bool,
    /// The mail server to send to instead of the job's [deliver] smtp, e.g. the mail catcher of `linkbatch
    /// sandbox` (`smtp://127.0.0.1:8725`); the job's login is never sent to it.
    #[arg(long, value_name = "URL", conflicts_with = "sandbox", value_parser = smtp_server)]
    smtp: Option<crate::plan::SmtpServer>,
}

/// `--smtp URL`, read as `[deliver] smtp` is.
fn smtp_server(text: &str) -> Result<crate::plan::SmtpServer, String> {
    crate::plan::SmtpServer::parse(text)
}

#[derive(Debug, Args)]
struct RefreshCommand {
    #[command(flatten)]
    args: RunArgs,
    /// Read every link by id (one request per link), not from the list pages first.
    #[arg(long, conflicts_with = "events")]
    by_id: bool,
    /// Read only the links the Events API names since the last refresh (classic): a cost that follows
    /// what happened, not the job's size. The first time, or past the 30 days events are kept, every link.
    #[arg(long)]
    events: bool,
}

#[derive(Debug, Args)]
struct ListenCommand {
    #[command(flatten)]
    args: RunArgs,
    /// Where to take the posts, e.g. 127.0.0.1:8787 behind a reverse proxy (an address that is not loopback
    /// needs `[listen] secret_env`).
    #[arg(long, value_name = "HOST:PORT")]
    addr: SocketAddr,
    /// Serve HTTPS with this certificate chain (PEM; the server's certificate first), with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
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
    vars: Vec<Var>,
}

#[derive(Debug, Clone, Args)]
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
    limits: Vec<Limit>,
    /// Requests in flight at once.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Allow a live key (`skey_live_…`, or a key whose mode cannot be told, such as a Payment Links+ API
    /// key, unless the job states `[api] mode`): real links, real money.
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
    limits: Vec<Limit>,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    #[command(flatten)]
    inspect: InspectArgs,
    /// Also log into the job's mail server ([deliver] smtp) with its credentials, sending nothing; without
    /// it, every message is written and checked and no mail server is contacted.
    #[arg(long)]
    login: bool,
}

#[derive(Debug, Args)]
struct SandboxArgs {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8700")]
    addr: SocketAddr,
    /// Rate limit per key, COUNT/PERIOD (repeatable), e.g. --limit 60/min --limit 1000/h.
    #[arg(long = "limit", value_name = "RATE")]
    limits: Vec<Limit>,
    /// Fault to inject, KIND=PROB: 500-before, 500-after, 429, slow-after, drop-after-commit, unreadable-after;
    /// for mail smtp-reject-rcpt, smtp-4xx, smtp-drop-after-data (repeatable).
    #[arg(long = "fault", value_name = "KIND=PROB")]
    faults: Vec<FaultSpec>,
    /// Seed for ids and fault draws (same seed, same sequence); random when not given.
    #[arg(long)]
    seed: Option<u64>,
    /// Latency added to every API answer, e.g. 300ms.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    latency: Duration,
    /// Up to this much more, drawn afresh for every answer (uniform), e.g. 100ms.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    jitter: Duration,
    /// How long a slow-after fault holds its answer once the link is stored.
    #[arg(long, value_name = "DURATION", default_value = "40s", value_parser = parse_duration)]
    slow_delay: Duration,
    /// The shape of the answers: current, legacy (`created`, no `deleted`), 2025 (`deleted_at`, upper-case
    /// currency) or plus-variant (Links+ `transaction_url` and `state`).
    // Named values, so that a shell completes them rather than file names.
    #[arg(long, default_value = "current", value_parser = profile_names())]
    profile: Profile,
    /// Links+: accept only this scheme (raw, bearer or basic); all three when not given.
    #[arg(long, value_name = "SCHEME", value_parser = scheme_names())]
    auth: Option<AuthScheme>,
    /// Refuse creates past N active links per key, as a standard account does at 100.
    #[arg(long, value_name = "N")]
    active_links: Option<usize>,
    /// Serve HTTPS with this certificate chain (PEM; the server's certificate first), with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Close every connection after its answer: each request a new connection (over TLS, a new handshake).
    #[arg(long)]
    close_each: bool,
    /// Where the mail catcher listens for SMTP (a free port on 127.0.0.1 when not given).
    #[arg(long, value_name = "HOST:PORT")]
    smtp_addr: Option<SocketAddr>,
    /// The mail catcher speaks TLS from the first byte (as port 465 does) with --tls-cert, not STARTTLS.
    #[arg(long, requires = "tls_cert")]
    smtps: bool,
    /// Run the server's clock this far from the host's, e.g. -150s (the host 150 s ahead of the server) or
    /// +1h; `POST /__sandbox/clock?offset=…` moves it while the sandbox runs.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = crate::sandbox::parse_offset, allow_hyphen_values = true)]
    clock_offset: i64,
    /// Links+ teams and templates, as JSON: [{"id": 456, "templates": [{"id": 123, "name": "…", "currency": "thb"}]}].
    #[arg(long, value_name = "FILE")]
    teams: Option<PathBuf>,
    /// Post each event (link.create, charge.create, charge.complete) to this URL as Omise's webhooks do, again
    /// with backoff until answered 2xx (repeatable; https, or http on loopback).
    #[arg(long = "webhook", value_name = "URL")]
    webhooks: Vec<String>,
    /// Sign each post with this secret (`Omise-Signature`).
    #[arg(long, value_name = "SECRET")]
    webhook_secret: Option<String>,
    /// How posts are signed: body (HMAC-SHA256 of the body, hex) or timestamped (of "<timestamp>.<body>"
    /// with the base64-decoded secret, and `Omise-Signature-Timestamp`).
    #[arg(long, value_name = "SCHEME", default_value = "body", value_parser = ["body", "timestamped"])]
    webhook_scheme: String,
}

/// `--var NAME=VALUE`. Its refusal never repeats what was typed: a slip of the shell can put a key there.
#[derive(Debug, Clone)]
struct Var {
    name: String,
    value: String,
}

impl FromStr for Var {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                Ok(Var { name: name.trim().to_owned(), value: value.to_owned() })
            }
            Some(_) => Err("the name before `=` is empty: write NAME=VALUE"),
            None => Err("there is no `=`: write NAME=VALUE"),
        }
    }
}

/// `--var NAME VALUE` (a space where the `=` goes) leaves clap a word it did not expect: say how it is written.
fn var_hint(args: &[OsString]) -> Option<String> {
    let words: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    let at = words.windows(3).position(|w| w[0] == "--var" && !w[1].contains('=') && !w[2].starts_with('-'))?;
    let name = words[at + 1];
    Some(format!("tip: --var takes NAME=VALUE in one word: --var {name}=…"))
}

/// `--profile`: the sandbox's answer shapes, by name.
fn profile_names() -> impl clap::builder::TypedValueParser<Value = Profile> {
    use clap::builder::TypedValueParser;
    let names: Vec<&'static str> = Profile::ALL.iter().map(|p| p.name()).collect();
    clap::builder::PossibleValuesParser::new(names).try_map(|name: String| name.parse::<Profile>())
}

/// `--auth`: a scheme a server can insist on (`auto` is the client's search, not a scheme).
fn scheme_names() -> impl clap::builder::TypedValueParser<Value = AuthScheme> {
    use clap::builder::TypedValueParser;
    let names: Vec<&'static str> = AuthScheme::TRIED.iter().map(|s| s.name()).collect();
    clap::builder::PossibleValuesParser::new(names).try_map(|name: String| {
        AuthScheme::named(&name).ok_or_else(|| format!("`{name}` is not one of raw, bearer, basic"))
    })
}

fn usage(error: impl std::fmt::Display) -> Outcome {
    Outcome::refused(anyhow::anyhow!("{error}"))
}

/// What a command returns: `Err` carries an outcome that stops it early, so `?` works on every error type
/// that has an [`Outcome`].
type Ended = Result<Outcome, Outcome>;

/// Runs one command line (the program's name first, as `std::env::args_os` gives it) to its [`Outcome`].
/// Prints what the command prints; the caller prints [`Outcome::message`] and exits with its code.
pub fn run<I, T>(args: I) -> Outcome
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    install_panic_hook();
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    crate::said::set_json(crate::said::asks_json(&args));
    let hint = var_hint(&args);
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let said = crate::redact::quoted_values(&e.render().to_string());
            return Outcome::Usage(match hint {
                Some(hint) => format!("{}\n\n{hint}", said.trim_end()),
                None => said,
            });
        }
        Err(e) => {
            // --help and --version: what was asked for, on stdout.
            let _ = e.print();
            return Outcome::Complete;
        }
    };
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return usage(format!("cannot start the async runtime: {e}")),
    };
    let (Ok(outcome) | Err(outcome)) = runtime.block_on(dispatch(cli));
    // A second Ctrl-C leaves tasks behind on purpose: they hold nothing the next run needs (every intent is
    // on disk), so the process does not wait for them.
    runtime.shutdown_background();
    outcome
}

/// Whether a command line (the program's name first) parses with linkbatch's flags: how a unit file or a
/// crontab line is checked without running it. The refusal is clap's, values cut as [`run`] prints them.
pub fn parses<I, T>(args: I) -> Result<(), String>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Cli::try_parse_from(args).map(drop).map_err(|e| crate::redact::quoted_values(&e.render().to_string()))
}

/// A panic's text goes through [`crate::redact`] like every other line: a key in a value being formatted
/// must not reach a terminal or a cron mail that way either.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        crate::said::say(crate::said::Kind::Panic, &format!("linkbatch panicked{place}: {payload}"));
    }));
}

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        crate::progress::suspend(|| std::io::stderr().write_all(crate::redact::text(&text).as_bytes()))?;
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

/// The job file and the flags every job command shares, as [`Overrides`] (`extra`: the command's own).
fn overrides(job: &JobArgs, output: Option<PathBuf>, limits: &[Limit], extra: Overrides) -> Overrides {
    Overrides {
        input: job.input.clone(),
        output,
        ledger: job.ledger.clone(),
        vars: job.vars.iter().map(|v| (v.name.clone(), v.value.clone())).collect(),
        limits: Limit::windows(limits),
        job: Some(job.job.clone()),
        ..extra
    }
}

async fn dispatch(cli: Cli) -> Ended {
    let quiet = cli.quiet;
    match cli.command {
        Command::Run(RunCommand { args, replace_changed, update_changed, deliver, retire, smtp }) => {
            let work = Work::Create { update: update_changed, replace: replace_changed, retire };
            if !deliver {
                return run::run(args, work, quiet).await;
            }
            deliver::check_before_run(&args, smtp.as_ref()).await?;
            let made = run::run(args.clone(), work, quiet).await;
            let (Ok(outcome) | Err(outcome)) = &made;
            if !matches!(outcome, Outcome::Complete | Outcome::Incomplete) {
                return made;
            }
            let incomplete = matches!(outcome, Outcome::Incomplete);
            let flags = deliver::DeliverFlags { smtp, ..deliver::DeliverFlags::default() };
            match deliver::deliver(args, flags, quiet).await {
                Ok(Outcome::Complete) if incomplete => Ok(Outcome::Incomplete),
                delivered => delivered,
            }
        }
        Command::Deliver(DeliverCommand { args, remind, resend_uncertain, smtp }) => {
            deliver::deliver(args, deliver::DeliverFlags { remind, resend_uncertain, smtp }, quiet).await
        }
        Command::Listen(command) => listen::listen(command, quiet).await,
        Command::Refresh(RefreshCommand { args, by_id, events }) => {
            run::run(args, Work::Refresh { by_id, events }, quiet).await
        }
        Command::Retire(args) => run::run(args, Work::Retire, quiet).await,
        Command::Export(args) => inspect::export(&args),
        Command::Settle(args) => inspect::settle(&args).await,
        Command::Templates(args) => run::templates(args).await,
        Command::Recover(args) => recover::recover(args).await,
        Command::Validate(args) => inspect::validate(&args.inspect, args.login).await,
        Command::Status(args) => inspect::status(&args),
        Command::Sandbox(args) => sandbox::sandbox(args).await,
        Command::Completions { shell } => manual::completions(shell),
        Command::Man { dir } => manual::man(&dir),
    }
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
