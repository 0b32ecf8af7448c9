//! Exactly-once under crashes: the real binary, `SIGKILLed` at random moments against a sandbox that drops
//! connections after committing, answers 500 after storing, stalls past the timeout and throttles; then run to
//! completion. The sandbox's own figures must show exactly one link per row, none doubled, none lost.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use linkbatch::sandbox::{FaultKind, Profile, SandboxConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;

use crate::support::{World, faults, read_csv};

const ROWS: usize = 300;
/// Kills per test; `LINKBATCH_TORTURE_KILLS` raises it for a soak (CI uses the default).
fn kills_wanted() -> usize {
    std::env::var("LINKBATCH_TORTURE_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(24)
}

/// Seed of the sandbox's faults and of the kill times; `LINKBATCH_TORTURE_SEED` varies it for a soak.
fn seed() -> u64 {
    std::env::var("LINKBATCH_TORTURE_SEED").ok().and_then(|k| k.parse().ok()).unwrap_or(2026)
}

/// Every tenth row repeats the content of the row before it under another key: identical rows must still
/// end with one link each.
fn write_input(world: &World) -> BTreeMap<String, usize> {
    let mut text = String::from("id,title,amount\n");
    let mut per_title = BTreeMap::new();
    for i in 0..ROWS {
        let content = if i % 10 == 9 { i - 1 } else { i };
        let title = format!("Torture item {content}");
        writeln!(text, "R{i:04},{title},{}", 1000 + content).unwrap();
        *per_title.entry(title).or_insert(0) += 1;
    }
    std::fs::write(world.path("rows.csv"), text).unwrap();
    per_title
}

fn write_job(world: &World, kind: &str) {
    let link = match kind {
        "links" => "title = \"{title}\"\ndescription = \"Crash test\"\ncurrency = \"thb\"\n",
        _ => "team_id = 456\ntemplate_id = 123\nname = \"{title}\"\ncurrency = \"thb\"\n",
    };
    let job = format!(
        "name = \"torture\"\n[api]\nkind = \"{kind}\"\ntimeout = \"400ms\"\n[input]\npath = \"{}\"\nkey = \"{{id}}\"\n\
         [link]\namount = \"{{amount}}\"\namount_unit = \"minor\"\n{link}[limits]\nrates = []\nconcurrency = 8\n\
         [retry]\nattempts = 30\nbase_delay = \"20ms\"\nmax_delay = \"200ms\"\n",
        world.path("rows.csv").display()
    );
    std::fs::write(world.path("job.toml"), job).unwrap();
}

fn torture(kind: &str, profile: Profile) {
    let world = World::with(SandboxConfig {
        profile,
        faults: faults(&[
            (FaultKind::DropAfterCommit, 0.06),
            (FaultKind::ServerErrorAfter, 0.05),
            (FaultKind::SlowAfter, 0.03),
            (FaultKind::RateLimited, 0.03),
            (FaultKind::ServerErrorBefore, 0.03),
        ]),
        seed: seed(),
        slow_delay: Duration::from_secs(1),
        ..Default::default()
    });
    let per_title = write_input(&world);
    write_job(&world, kind);
    let mut rng = StdRng::seed_from_u64(seed() ^ 0x2a);
    let wanted = kills_wanted();
    let started = Instant::now();
    let base = world.base_url();
    let (job, output, ledger) = (world.path("job.toml"), world.path("out.csv"), world.path("ledger.jsonl"));
    let command = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_linkbatch"));
        command
            .args(["run", job.to_str().unwrap(), "--base-url", &base, "--output", output.to_str().unwrap()])
            .args(["--ledger", ledger.to_str().unwrap(), "-q"])
            .env("OMISE_SECRET_KEY", &world.key)
            .env("CI", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };

    let mut kills = 0;
    while kills < wanted {
        let mut child = command().spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(30..350)));
        let finished_alone = child.try_wait().unwrap().is_some();
        if !finished_alone {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        // Every link made: stop at half the kills wanted, or once a run ends before it can be killed (a
        // finished job run again is too quick to kill, and more runs would only spin).
        if world.stats().links_held >= ROWS && (kills >= wanted / 2 || finished_alone) {
            break;
        }
    }
    // Then to completion; a run that meets only retryable faults ends 0.
    let mut finished = false;
    for _ in 0..5 {
        if command().status().unwrap().code() == Some(0) {
            finished = true;
            break;
        }
    }
    let stats = world.stats();
    eprintln!(
        "{kind} ({}): {kills} kills in {:.1}s; faults served {:?}; sandbox holds {} links for {ROWS} rows",
        profile.name(),
        started.elapsed().as_secs_f64(),
        stats.faults,
        stats.links_held
    );
    assert!(finished, "the job did not finish after the kills");

    // From the sandbox's side: exactly one link per row, per title as many as the input has.
    assert_eq!(
        stats.links_held, ROWS,
        "links held (identical beyond one: {}, creates: {}, answers: {:?})",
        stats.identical_extra, stats.creates, stats.requests
    );
    assert_eq!(stats.links_per_title, per_title.iter().map(|(t, n)| (t.clone(), *n)).collect::<BTreeMap<_, _>>());
    assert!(stats.faults.get("drop-after-commit").copied().unwrap_or(0) > 0);

    // The output is complete and its link ids are exactly the sandbox's.
    let rows = read_csv(&output);
    assert_eq!(rows.len(), ROWS);
    assert!(rows.iter().all(|r| r["status"] == "created" || r["status"] == "existing"), "{rows:?}");
    let in_output: BTreeSet<String> = rows.iter().map(|r| r["link_id"].clone()).collect();
    assert_eq!(in_output.len(), ROWS, "no link id is given to two rows");
    let held = held_ids(&world, kind);
    assert_eq!(in_output, held, "output link ids equal the sandbox's");
}

fn held_ids(world: &World, kind: &str) -> BTreeSet<String> {
    let http = world.http();
    let mut ids = BTreeSet::new();
    let mut offset = 0;
    loop {
        let path = match kind {
            "links" => format!("/links?limit=100&offset={offset}"),
            _ => format!("/external/456/links?limit=100&offset={offset}"),
        };
        // The faults apply to reads too (500-before, 429): ask again until an answer comes.
        let page = loop {
            let answer = http.send(http.request(Method::GET, &path).basic_auth(&world.key, Some("")));
            if answer.status == 200 {
                break answer.body;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let data = page["data"].as_array().unwrap();
        ids.extend(data.iter().map(|l| match &l["id"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }));
        offset += data.len();
        if data.is_empty() || offset >= page["total"].as_u64().unwrap() as usize {
            return ids;
        }
    }
}

#[test]
fn kill_nine_classic() {
    torture("links", Profile::Current);
}

#[test]
fn kill_nine_classic_legacy_answers() {
    torture("links", Profile::Legacy);
}

#[test]
fn kill_nine_classic_2025_answers() {
    torture("links", Profile::Recorded2025);
}

#[test]
fn kill_nine_links_plus() {
    torture("links_plus", Profile::Current);
}

#[test]
fn kill_nine_links_plus_variant_answers() {
    torture("links_plus", Profile::PlusVariant);
}
