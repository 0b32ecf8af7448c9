//! `linkbatch sandbox`: both APIs served on an address until Ctrl-C, with the limits, faults, latency and
//! teams the flags give. Never runs a job.

use std::io::Write;

use super::{Ended, SandboxArgs, usage};
use crate::outcome::Outcome;
use crate::sandbox::webhook::{Scheme, Webhooks};
use crate::sandbox::{Sandbox, SandboxConfig};

pub(super) async fn sandbox(args: SandboxArgs) -> Ended {
    let mut config = SandboxConfig {
        limits: crate::rate::Limit::windows(&args.limits).unwrap_or_default(),
        faults: args.faults.clone(),
        seed: args.seed.unwrap_or_else(rand::random),
        latency: args.latency,
        jitter: args.jitter,
        slow_delay: args.slow_delay,
        profile: args.profile,
        active_links: args.active_links,
        plus_auth: args.auth,
        close_each: args.close_each,
        smtp_addr: args.smtp_addr,
        smtps: args.smtps,
        clock_offset_ms: args.clock_offset,
        ..SandboxConfig::default()
    };
    config.validate().map_err(|e| usage(format!("--fault: {e}")))?;
    config.webhooks = webhooks(&args, config.webhooks.first_retry)?;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(crate::sandbox::tls::from_files(cert, key).map_err(|e| usage(format!("--tls-cert: {e}")))?);
    }

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
    let _ = writeln!(out, "  test key:  {}", Sandbox::test_key(seed));
    let _ = writeln!(out, "  classic:   {base}/links");
    let _ = writeln!(out, "  Links+:    {base}/external/links  ({})", teams.join("; "));
    let _ = writeln!(out, "  stats:     {base}/__sandbox/stats");
    let scheme = if args.smtps { "smtps" } else { "smtp" };
    let host = args.smtp_addr.map_or_else(|| "127.0.0.1".to_owned(), |a| a.ip().to_string());
    let _ = writeln!(
        out,
        "  mail:      {scheme}://{host}:{}   (kept, never delivered: {base}/__sandbox/mail)",
        server.smtp_port()
    );
    let _ = writeln!(out, "  seed:      {seed}   (--seed {seed} replays the same ids and faults)");
    let _ = writeln!(
        out,
        "  try:       linkbatch run JOB --base-url {base}   (with OMISE_SECRET_KEY set to the key above; add --deliver \
         --smtp {scheme}://{host}:{} to mail through the catcher)",
        server.smtp_port()
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

/// `--webhook`, `--webhook-secret` and `--webhook-scheme`, checked: each URL https or loopback, and a secret
/// the scheme can use (refused now, not at the first event).
fn webhooks(args: &SandboxArgs, first_retry: std::time::Duration) -> Result<Webhooks, Outcome> {
    for url in &args.webhooks {
        crate::plan::check_base_url(url).map_err(|e| usage(format!("--webhook: {e}")))?;
    }
    let scheme = Scheme::parse(&args.webhook_scheme).map_err(usage)?;
    let hooks = Webhooks { urls: args.webhooks.clone(), secret: args.webhook_secret.clone(), scheme, first_retry };
    if hooks.secret.is_some() {
        crate::sandbox::webhook::sign(&hooks, b"{}", 0).map_err(usage)?;
    }
    Ok(hooks)
}
