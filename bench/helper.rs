//! Benchmark helper for `bench/run`:
//! - `input N FILE`: a catalog CSV of N rows (the columns jobs/catalog-import.toml uses), always the same;
//! - `ledger JOB INPUT LEDGER BASE_URL KEY`: a ledger in which every row already has its link, exactly as a
//!   finished run leaves it, so a 1M-row resume can be measured without a 1M-request run;
//! - `bound N RATE...`: the fastest legal schedule for N requests, in seconds, computed here from the
//!   definition (SPEC section 4) with none of the library's code.
//! - `read LEDGER`: reads a ledger into its index, as a run does at start, and prints the time it took.

use std::io::Write;
use std::path::PathBuf;

use linkbatch::api::SecretKey;
use linkbatch::job::JobSpec;
use linkbatch::ledger::{Event, Header, VERSION, now};
use linkbatch::plan::{Overrides, Plan};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("input") => input(&args[1..]),
        Some("ledger") => ledger(&args[1..]),
        Some("bound") => bound(&args[1..]),
        Some("read") => {
            let Some(path) = args.get(1) else { anyhow::bail!("usage: bench-helper read LEDGER") };
            let t = std::time::Instant::now();
            let found = linkbatch::ledger::Ledger::inspect(path.as_ref())?;
            eprintln!("read {:?} keys {}", t.elapsed(), found.map_or(0, |(_, i, _)| i.len()));
            Ok(())
        }
        _ => anyhow::bail!(
            "usage: bench-helper input N FILE | ledger JOB INPUT LEDGER BASE_URL KEY | bound N RATE... | read LEDGER"
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

/// The bound, from its definition alone (SPEC section 4), with none of linkbatch's code: `n` requests,
/// spaced at least the smallest period/count apart, each window `(count, period in seconds)` a sliding count
/// (no more than `count` requests in any span shorter than `period`). Returns the seconds from the first
/// request to the last.
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
    let key = SecretKey::new(key.clone(), "KEY")?;
    let overrides = Overrides { input: Some(PathBuf::from(input)), ..Overrides::default() };
    let (plan, _) = Plan::new(JobSpec::load(job.as_ref())?, &overrides)?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(ledger)?);
    let header = Header {
        version: VERSION,
        api: plan.api().name().to_owned(),
        base_url: base_url.trim_end_matches('/').to_owned(),
        mode: key.mode().name().to_owned(),
        key_hash: key.fingerprint(),
        auth: None,
    };
    // Each line exactly as the ledger writes it, checksum included.
    let line = |event: &Event, out: &mut std::io::BufWriter<std::fs::File>| -> anyhow::Result<()> {
        out.write_all(&linkbatch::ledger::encode(event)?)?;
        Ok(())
    };
    line(&Event::Header(header), &mut out)?;
    line(&Event::Run { at: now(), version: "bench".into() }, &mut out)?;
    let mut reader = plan.reader()?;
    let mut n = 0u64;
    let mut failure = None;
    linkbatch::runner::for_each_row(&plan, &mut reader, None, |row| {
        let Ok(row) = row else { return true };
        n += 1;
        let link_id = format!("link_test_{n:019}");
        let at = now();
        let intent = Event::Intent {
            key: row.key.clone(),
            fingerprint: row.fingerprint().to_string(),
            at: at.clone(),
            request: row.request.clone(),
        };
        let created = Event::Created {
            key: row.key.clone(),
            payment_uri: format!("https://pay.omise.co/links/{link_id}"),
            link_id,
            fingerprint: row.fingerprint().to_string(),
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
