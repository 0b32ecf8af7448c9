//! `deliver` and `run --deliver`: the job's messages sent from its ledger, each once (with `--remind`, a
//! refresh first), then the output with its delivery columns. Never creates a link; never sends a message
//! before every due message is written and the mail server has accepted the login.

use std::sync::Arc;
use std::time::SystemTime;

use super::{Ended, RunArgs, usage};
use crate::decide::delivery::Asked;
use crate::delivery::Pass;
use crate::ledger::{Book, Ledger};
use crate::mail::Mailer;
use crate::outcome::Outcome;
use crate::plan::{Plan, Security, SmtpServer};
use crate::runner::Work;
use crate::stop::Stop;

/// `deliver --remind`, `--resend-uncertain` and `--smtp`, as typed.
#[derive(Debug, Clone, Default)]
pub(super) struct DeliverFlags {
    pub(super) remind: bool,
    pub(super) resend_uncertain: bool,
    /// `--smtp`: the mail server instead of the job's.
    pub(super) smtp: Option<SmtpServer>,
}

/// `deliver`: a refresh first with `--remind`, then the messages due.
pub(super) async fn deliver(args: RunArgs, flags: DeliverFlags, quiet: bool) -> Ended {
    if flags.remind {
        super::run::reads_earlier_links(&args, "deliver --remind")?;
        // The payment state a reminder goes by is read fresh, by pages; the delivery after it writes the
        // output and says the links' payments.
        let said = super::run::Said { quiet, output: false };
        let refreshed = super::run::run_as(args.clone(), Work::Refresh { by_id: false, events: false }, said).await;
        let (Ok(outcome) | Err(outcome)) = &refreshed;
        if !matches!(outcome, Outcome::Complete | Outcome::Incomplete) {
            return refreshed;
        }
    }
    send(&args, flags, quiet).await
}

/// `run --deliver`, before its first create: the mail server reached and the login accepted (a `--sandbox`
/// trial's mail goes to the sandbox's catcher), so that a wrong password stops the run before any link is
/// made rather than after every one.
pub(super) async fn check_before_run(args: &RunArgs, smtp: Option<&SmtpServer>) -> Result<(), Outcome> {
    if args.sandbox {
        return Ok(());
    }
    let (plan, _) = super::run::planned(args).await?;
    let mut mailer = mailer(&plan, None, smtp)?;
    crate::delivery::check_server(&mut mailer).await.map_err(|e| Outcome::aborted(anyhow::anyhow!("{e}")))
}

/// The SMTP user and password from the variables `[deliver]` names (each also from `_FILE` or a credential).
fn credentials(user_env: Option<&str>, password_env: Option<&str>) -> Result<Option<(String, String)>, Outcome> {
    let read = |name: &str| crate::secret::read(name).map_err(usage);
    match (user_env, password_env) {
        (None, None) => Ok(None),
        (Some(user), Some(password)) => match (read(user)?, read(password)?) {
            (Some(u), Some(p)) => Ok(Some((u, p))),
            _ => Err(usage(format!("[deliver] names ${user} and ${password} for the mail server's login: set both"))),
        },
        _ => Err(usage("[deliver] needs both user_env and password_env, or neither")),
    }
}

/// The mail server and login: the job's; with `--sandbox` the in-process sandbox's catcher, whatever the
/// job's `smtp` says (a trial never mails a customer); with `--smtp`, that server, without the job's login
/// (its credentials are for its own server, never another).
pub(super) fn mailer(
    plan: &Plan,
    sandbox: Option<&crate::sandbox::Sandbox>,
    smtp: Option<&SmtpServer>,
) -> Result<Mailer, Outcome> {
    let deliver = plan.deliver().ok_or_else(|| {
        usage("the job has no [deliver] section: add one to mail each link (see `man 5 linkbatch-job`)")
    })?;
    if let Some(sandbox) = sandbox {
        let catcher = SmtpServer { host: "127.0.0.1".into(), port: sandbox.smtp_port(), security: Security::Loopback };
        return Ok(Mailer::new(catcher, None, plan.timeout()));
    }
    if let Some(server) = smtp {
        return Ok(Mailer::new(server.clone(), None, plan.timeout()));
    }
    let login = credentials(deliver.user_env.as_deref(), deliver.password_env.as_deref())?;
    Ok(Mailer::new(deliver.smtp.clone(), login, plan.timeout()))
}

async fn send(args: &RunArgs, flags: DeliverFlags, quiet: bool) -> Ended {
    let (plan, reader, sandbox) = super::run::planned_reading(args).await?;
    let mailer = mailer(&plan, sandbox.as_ref(), flags.smtp.as_ref())?;
    let reminder = plan.deliver().and_then(|d| d.reminder.as_ref());
    let remind = match (flags.remind, reminder) {
        (true, None) => return Err(usage("--remind needs a [deliver.reminder] section in the job")),
        (true, Some(r)) => Some((r.after, r.at_most)),
        (false, _) => None,
    };
    if !plan.ledger_path().exists() {
        return Err(usage(format!(
            "no ledger at {}: the job has made no links yet, so there is nothing to deliver (run it first, or \
             `run --deliver`)",
            plan.ledger_path().display()
        )));
    }
    let (opened, index, _) = Ledger::read_locked(plan.ledger_path(), None)?;
    let asked = Asked { remind, resend_uncertain: flags.resend_uncertain };
    let due = crate::delivery::due(&plan, reader, &index, asked, SystemTime::now());
    let book = Book::new(opened.proceed()?, index);

    let stop = Arc::new(Stop::default());
    let signals = tokio::spawn(super::run::watch_signals(stop.clone(), plan.timeout()));
    let sent = Pass::new(&plan, &book, mailer, &stop).run(due).await;
    signals.abort();
    // The output says where every row stands, whatever stopped the pass.
    let (_, payments) = {
        let index = book.index();
        crate::runner::write_output(&plan, &index, Some(index.last_run), index.has_payments())
            .map_err(Outcome::aborted)?
    };
    crate::runner::record_output(&book, plan.output_path()).await?;
    if let Some(server) = sandbox {
        server.shutdown().await;
    }
    let summary = match sent {
        Ok(summary) => summary,
        Err(e) => return Err(Outcome::aborted(anyhow::anyhow!("{e}"))),
    };
    let outcome = summary.outcome();
    if !quiet || outcome.code() != 0 {
        // After `--remind`'s refresh, what it read is said here, once the output holds it.
        let links = payments.filter(|_| flags.remind).map(|p| format!("; links: {}", p.line())).unwrap_or_default();
        crate::said::say(crate::said::Kind::Summary, &format!("{}{links}", summary.line()));
    }
    Ok(outcome)
}
