//! What a person (or cron's mail) sees while a run goes: a progress bar on a terminal, a log line every ten
//! seconds otherwise. The ETA comes from the throttle's fastest legal schedule, so it knows the rate limits.
//!
//! Log lines are written through [`suspend`], so they never tear the bar.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar currently on screen, for [`suspend`].
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `write` with the bar (if any) cleared from the screen, then redraws it.
pub fn suspend<R>(write: impl FnOnce() -> R) -> R {
    let bar = BAR.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// Whether a bar can be drawn: stderr is a terminal and this is not CI.
pub fn interactive() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

struct Counters {
    bar: Option<ProgressBar>,
    log_lines: bool,
    total: u64,
    created: AtomicU64,
    failed: AtomicU64,
    started: Instant,
    /// What a finished row is called: `created`, `refreshed`.
    done: &'static str,
}

/// Progress of one run.
#[derive(Clone)]
pub struct Progress(Arc<Counters>);

/// What the throttle says of the rows left: the fastest legal time for them, and the window that holds the
/// next request back (and for how long) when one does.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outlook {
    /// The limits' bound for the rows left (`None`: no limits).
    pub eta: Option<Duration>,
    /// A window holding the next request for [`crate::throttle::SAID_WAIT`] or more.
    pub held: Option<(crate::rate::Rate, Duration)>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").field("total", &self.0.total).finish()
    }
}

/// A duration as a person reads it: `14m 40s`.
pub fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

impl Progress {
    /// `total` rows to send. With `enabled` false nothing is shown (tests, `-q`).
    pub fn new(enabled: bool, total: u64, done: &'static str) -> Progress {
        let bar = (enabled && interactive()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} rows  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            *BAR.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(bar.clone());
            bar
        });
        Progress(Arc::new(Counters {
            log_lines: enabled && bar.is_none(),
            bar,
            total,
            created: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            started: Instant::now(),
            done,
        }))
    }

    /// One more row has its link.
    pub fn created(&self) {
        self.0.created.fetch_add(1, Ordering::Relaxed);
        if let Some(bar) = &self.0.bar {
            bar.inc(1);
        }
    }

    /// Rows that got their link so far.
    pub fn made(&self) -> u64 {
        self.0.created.load(Ordering::Relaxed)
    }

    /// Rows that failed so far.
    pub fn failures(&self) -> u64 {
        self.0.failed.load(Ordering::Relaxed)
    }

    /// One more row failed.
    pub fn failed(&self) {
        self.0.failed.fetch_add(1, Ordering::Relaxed);
        if let Some(bar) = &self.0.bar {
            bar.inc(1);
        }
    }

    /// Refreshes the bar every second (or logs every ten); `outlook` gives the throttle's bound for n rows and
    /// the window that holds the next request back, if one does.
    pub fn start_ticker(&self, outlook: impl Fn(u64) -> Outlook + Send + 'static) -> tokio::task::JoinHandle<()> {
        let counters = self.0.clone();
        tokio::spawn(async move {
            let mut tick = 0u64;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                tick += 1;
                let (created, failed) =
                    (counters.created.load(Ordering::Relaxed), counters.failed.load(Ordering::Relaxed));
                let done = created + failed;
                let elapsed = counters.started.elapsed().as_secs_f64().max(0.001);
                let rate = done as f64 / elapsed;
                let remaining = counters.total.saturating_sub(done);
                // The slower of the limits' bound and what the server has actually sustained.
                let Outlook { eta, held } = outlook(remaining);
                let bound = eta.unwrap_or_default();
                let observed = if done >= 5 { Duration::from_secs_f64(remaining as f64 / rate) } else { bound };
                let eta = bound.max(observed);
                let waiting = held.map(|(window, wait)| format!("; waiting {} for the {window} window", human(wait)));
                let message = format!(
                    "{created} {}, {failed} failed, {rate:.1}/s, ETA {}{}",
                    counters.done,
                    human(eta),
                    waiting.unwrap_or_default()
                );
                if let Some(bar) = &counters.bar {
                    bar.set_message(message);
                } else if counters.log_lines && tick.is_multiple_of(10) {
                    tracing::info!("progress: {done}/{} rows, {message}", counters.total);
                }
            }
        })
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.0.bar {
            bar.finish_and_clear();
        }
        *BAR.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}
