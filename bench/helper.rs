//! Benchmark helper for `bench/run`:
//! - `input N FILE`: a catalog CSV of N rows (the columns jobs/catalog-import.toml uses), always the same;
//! - `ledger JOB INPUT LEDGER BASE_URL KEY`: a ledger in which every row already has its link, exactly as a
//!   finished run leaves it, so a 1M-row resume can be measured without a 1M-request run;
//! - `bound N RATE...`: the fastest legal schedule for N requests, in seconds, computed here from the
//!   definition (docs/reference.md, "Throughput") with none of the library's code.
//! - `schedules COUNT SEED`: COUNT random rate schedules for the rate bench, a line each: rows, concurrency,
//!   latency and jitter (ms), then the windows (see [`schedule`]);
//! - `read LEDGER`: reads a ledger into its index, as a run does at start, and prints the time it took.

use std::io::Write;
use std::path::PathBuf;

use linkbatch::api::SecretKey;
use linkbatch::job::JobSpec;
use linkbatch::ledger::{Event, Header, Time, VERSION};
use linkbatch::plan::{Overrides, Plan};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("input") => input(&args[1..]),
        Some("ledger") => ledger(&args[1..]),
        Some("bound") => bound(&args[1..]),
        Some("schedules") => schedules(&args[1..]),
        Some("read") => {
            let Some(path) = args.get(1) else { anyhow::bail!("usage: bench-helper read LEDGER") };
            let t = std::time::Instant::now();
            let found = linkbatch::ledger::Ledger::inspect(path.as_ref())?;
            eprintln!("read {:?} keys {}", t.elapsed(), found.map_or(0, |(_, i, _)| i.len()));
            Ok(())
        }
        _ => anyhow::bail!(
            "usage: bench-helper input N FILE | ledger JOB INPUT LEDGER BASE_URL KEY | bound N RATE... | \
             schedules COUNT SEED | read LEDGER"
        ),
    }
}

fn input(args: &[String]) -> anyhow::Result<()> {
    let [n, file] = args else { anyhow::bail!("usage: bench-helper input N FILE") };
    let n: u64 = n.parse()?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
    writeln!(out, "sku,name,description,price,currency,stock")?;
    for i in 0..n {
        // A fixed pseudo-random price per row: the same file on every machine.
        let price = (i * 7919 + 13) % 99_000 + 100;
        writeln!(out, "SKU-{i:07},Product {i},Description of product {i},{}.{:02},thb,{}", price, i % 100, i % 50)?;
    }
    out.flush()?;
    Ok(())
}

fn bound(args: &[String]) -> anyhow::Result<()> {
    let Some((n, rates)) = args.split_first() else { anyhow::bail!("usage: bench-helper bound N RATE...") };
    let rates = rates.iter().map(|r| r.parse::<linkbatch::rate::Rate>()).collect::<Result<Vec<_>, _>>()?;
    let windows: Vec<(u64, f64)> = rates.iter().map(|r| (u64::from(r.count), r.period.as_secs_f64())).collect();
    println!("{:.3}", fastest_legal_schedule(n.parse()?, &windows));
    Ok(())
}

fn schedules(args: &[String]) -> anyhow::Result<()> {
    use rand::SeedableRng;
    let [count, seed] = args else { anyhow::bail!("usage: bench-helper schedules COUNT SEED") };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed.parse()?);
    for _ in 0..count.parse::<usize>()? {
        let s = schedule(&mut rng);
        let windows: Vec<String> = s.windows.iter().map(|&(count, ms)| format!("{count}/{ms}ms")).collect();
        println!("{} {} {} {} {}", s.rows, s.concurrency, s.latency_ms, s.jitter_ms, windows.join(" "));
    }
    Ok(())
}

struct Schedule {
    rows: u64,
    concurrency: u64,
    latency_ms: u64,
    jitter_ms: u64,
    /// `(count, period in ms)`.
    windows: Vec<(u64, u64)>,
}

/// One random schedule. Two or three windows, periods log-uniform from 0.5 s to 30 s (a 60-fold span, as
/// from a minute to an hour at 1/120 scale). One window, drawn at random (so not always the shortest), is the
/// densest at 10 to 50 requests a second; the others allow 30% to 95% of its rate on average. Server latency
/// 0 to 300 ms plus jitter up to half of it; concurrency 1 to 16, but at least what keeps the densest pace
/// through the latency (else no client could reach the bound, which knows nothing of latency). Rows: as
/// many as make the bound 6 to 12 s.
fn schedule(rng: &mut impl rand::Rng) -> Schedule {
    let k = rng.random_range(2..=3);
    let densest = rng.random_range(0..k);
    let peak: f64 = rng.random_range(10.0..50.0);
    let windows: Vec<(u64, u64)> = (0..k)
        .map(|i| {
            let period = 0.5 * 60f64.powf(rng.random::<f64>());
            let rate = if i == densest { peak } else { peak * rng.random_range(0.3..0.95) };
            (whole(rate * period).max(1), whole(period * 1000.0))
        })
        .collect();
    let spacing = windows.iter().map(|&(c, ms)| ms as f64 / 1000.0 / c as f64).fold(f64::INFINITY, f64::min);
    let (mut latency_ms, mut jitter_ms) = (rng.random_range(0..=300u64), 0);
    jitter_ms = rng.random_range(jitter_ms..=latency_ms / 2);
    let in_flight = |latency: u64| whole(((latency + 5) as f64 / 1000.0 / spacing).ceil()) + 1;
    // Sixteen workers carry at most so much latency at this pace: a slower server is drawn faster.
    while in_flight(latency_ms + jitter_ms) > 16 {
        (latency_ms, jitter_ms) = (latency_ms * 2 / 3, jitter_ms * 2 / 3);
    }
    let concurrency = rng.random_range(in_flight(latency_ms + jitter_ms)..=16);
    let seconds: Vec<(u64, f64)> = windows.iter().map(|&(c, ms)| (c, ms as f64 / 1000.0)).collect();
    let target = rng.random_range(6.0..12.0);
    let (mut low, mut high) = (2u64, 2u64);
    while fastest_legal_schedule(high, &seconds) < target {
        high *= 2;
    }
    while low + 1 < high {
        let mid = u64::midpoint(low, high);
        if fastest_legal_schedule(mid, &seconds) < target { low = mid } else { high = mid }
    }
    Schedule { rows: high, concurrency, latency_ms, jitter_ms, windows }
}

/// A non-negative figure of a few thousand at most, rounded to a whole number.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn whole(x: f64) -> u64 {
    x.max(0.0).round() as u64
}

/// The bound, from its definition alone (docs/reference.md, "Throughput"), with none of linkbatch's code:
/// `n` requests, spaced at least the smallest period/count apart, each window `(count, period in seconds)` a
/// sliding count (no more than `count` requests in any span shorter than `period`). Returns the seconds from
/// the first request to the last.
fn fastest_legal_schedule(n: u64, windows: &[(u64, f64)]) -> f64 {
    let spacing = windows.iter().map(|&(count, period)| period / count as f64).fold(f64::INFINITY, f64::min);
    let spacing = if spacing.is_finite() { spacing } else { 0.0 };
    let mut times: Vec<f64> = Vec::new();
    for i in 0..n as usize {
        let mut t = times.last().map_or(0.0, |&last| last + spacing);
        for &(count, period) in windows {
            // The request `count` back must have left the window: at least `period` before this one.
            if let Some(earlier) = i.checked_sub(count as usize) {
                t = t.max(times[earlier] + period);
            }
        }
        times.push(t);
    }
    times.last().copied().unwrap_or(0.0)
}

fn ledger(args: &[String]) -> anyhow::Result<()> {
    let [job, input, ledger, base_url, key] = args else {
        anyhow::bail!("usage: bench-helper ledger JOB INPUT LEDGER BASE_URL KEY");
    };
    let key = SecretKey::new(key.clone(), "KEY", "secret key")?;
    let overrides = Overrides { input: Some(PathBuf::from(input)), ..Overrides::default() };
    let (plan, _) = Plan::new(JobSpec::load(job.as_ref())?, &overrides)?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(ledger)?);
    let header = Header {
        version: VERSION,
        api: plan.api(),
        base_url: base_url.trim_end_matches('/').to_owned(),
        mode: key.mode(),
        key_hash: key.fingerprint(),
        auth: None,
    };
    // Each line exactly as the ledger writes it, checksum included.
    let line = |event: &Event, out: &mut std::io::BufWriter<std::fs::File>| -> anyhow::Result<()> {
        out.write_all(&linkbatch::ledger::encode(event)?)?;
        Ok(())
    };
    line(&Event::Header(header), &mut out)?;
    line(&Event::Run { at: Time::now(), version: "bench".into() }, &mut out)?;
    let mut reader = plan.reader()?;
    let mut n = 0u64;
    let mut failure = None;
    linkbatch::rows::for_each_row(&plan, &mut reader, None, |row| {
        let Ok(row) = row else { return true };
        n += 1;
        let link_id = format!("link_test_{n:019}");
        let at = Time::now();
        let intent =
            Event::Intent { key: row.key.clone(), fingerprint: row.fingerprint(), at, request: row.request.clone() };
        let created = Event::Created {
            key: row.key.clone(),
            payment_uri: format!("https://pay.omise.co/links/{link_id}"),
            link_id,
            fingerprint: row.fingerprint(),
            at,
        };
        if let Err(e) = line(&intent, &mut out).and_then(|()| line(&created, &mut out)) {
            failure = Some(e);
            return false;
        }
        true
    });
    if let Some(e) = failure {
        return Err(e);
    }
    out.flush()?;
    eprintln!("wrote {n} created links to {ledger}");
    Ok(())
}
