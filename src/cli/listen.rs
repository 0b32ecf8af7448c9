//! `linkbatch listen JOB --addr HOST:PORT`: the plan, the key, the secret and the ledger checked as a run
//! checks them, then the webhook server until SIGTERM. It holds the ledger's lock while it runs: `run`,
//! `refresh` and `retire` meet it locked and say so, and take their turn once it stops (the sender's retries
//! and `refresh` cover what happens while it is down).

use std::sync::Arc;
use std::time::Duration;

use super::{Ended, ListenCommand, usage};
use crate::ledger::{Book, Ledger};
use crate::listen::Serving;
use crate::outcome::Outcome;
use crate::stop::Stop;
use crate::terms::ApiKind;

/// `listen`: serves until a signal, then lets the posts in flight finish.
pub(super) async fn listen(command: ListenCommand, quiet: bool) -> Ended {
    let ListenCommand { args, addr, tls_cert, tls_key } = command;
    super::run::reads_earlier_links(&args, "listen")?;
    // The job file is read once: its [listen] and [monitor] here, the rest by the plan below.
    let (spec, overrides, _) = super::run::job_with_flags(&args).await?;
    let secret = match &spec.listen.secret_env {
        Some(name) => Some(crate::secret::read(name).map_err(usage)?.ok_or_else(|| {
            usage(format!("[listen] secret_env names ${name}, which is not set (nor ${name}_FILE, nor a credential)"))
        })?),
        None => None,
    };
    if secret.is_none() && !crate::listen::is_loopback(&addr) {
        return Err(usage(format!(
            "listen on {addr} needs [listen] secret_env: without a secret a post cannot be told from a forgery, so \
             an unsigned listener serves a loopback address only (127.0.0.1, behind your proxy)"
        )));
    }
    let tls = match (&tls_cert, &tls_key) {
        (Some(cert), Some(key)) => {
            Some(crate::sandbox::tls::from_files(cert, key).map_err(|e| usage(format!("--tls-cert: {e}")))?)
        }
        _ => None,
    };
    let monitor = super::run::monitor_of(&spec)?;
    let (plan, _) = crate::plan::Plan::new(spec, &overrides)?;
    if plan.api() == ApiKind::LinksPlus {
        return Err(usage(
            "listen reads classic links: Payment Links+ posts to each link's custom_webhook and has no Events API; \
             refresh reads its payments",
        ));
    }
    if !plan.ledger_path().exists() {
        return Err(usage(format!(
            "no ledger at {}: the job has made no links yet, so there is nothing to listen for",
            plan.ledger_path().display()
        )));
    }
    let (client, header) = super::run::connect(&plan, &args).await?;
    let (opened, index, _) = Ledger::read_locked(plan.ledger_path(), Some(&header))?;
    let book = Book::new(opened.proceed()?, index);
    let socket =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| usage(format!("cannot listen on {addr}: {e}")))?;
    let grace = plan.timeout() + Duration::from_secs(5);
    let stop = Arc::new(Stop::default());
    let listener = Arc::new(crate::runner::listener(plan, client, book, stop.clone()).await.map_err(Outcome::Aborted)?);
    crate::told::listen::listening(&socket.local_addr().unwrap_or(addr), listener.links(), secret.is_some());
    if let Some(monitor) = &monitor {
        monitor.start().await;
    }
    let started = std::time::Instant::now();
    let signals = tokio::spawn(stop_on_signal(stop.clone()));
    let stopped = {
        let stop = stop.clone();
        async move { stop.stopped().await }
    };
    crate::listen::serve(socket, listener.clone(), Serving { secret, tls }, stopped, grace).await;
    signals.abort();
    let outcome = match listener.aborted() {
        Some(reason) => Outcome::Aborted(anyhow::anyhow!("listen stopped: {reason}")),
        None => Outcome::Complete,
    };
    if let Some(monitor) = &monitor {
        let report = crate::monitor::Report {
            code: outcome.code(),
            rows: std::collections::BTreeMap::new(),
            answers: std::collections::BTreeMap::new(),
            elapsed: started.elapsed(),
        };
        monitor.finish(&report).await;
    }
    if !quiet && outcome.code() == 0 {
        crate::said::say(crate::said::Kind::Summary, &crate::told::listen::stopped(listener.requests()));
    }
    Ok(outcome)
}

/// SIGTERM or Ctrl-C: stop taking posts; those in flight finish.
async fn stop_on_signal(stop: Arc<Stop>) {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(()) = async { match &mut terminate { Some(t) => t.recv().await, None => std::future::pending().await } } => {}
    }
    stop.stop();
}
