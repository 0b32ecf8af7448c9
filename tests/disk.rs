//! The host's disk and files under a run: a filesystem that fills (a tmpfs this test mounts, 64 KiB, with
//! a filler file that is removed again once the disk is full and a write has met it, so space comes back
//! while requests are in flight), and a ledger removed mid-run. The failed run exits 3 naming what failed;
//! the next run reads every line of the ledger and makes no second link.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use linkbatch::sandbox::SandboxConfig;

use crate::support::{JobFile, World, count, statuses};

/// A small tmpfs, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount(8)");
        assert!(
            mounted.status.success(),
            "this test fills a disk it makes: mount -t tmpfs needs root: {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Bytes free, as df sees them.
    fn free(&self) -> u64 {
        let out = Command::new("df").args(["--output=avail", "-B1"]).arg(self.dir.path()).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap_or(u64::MAX)
    }
}

impl SmallDisk {
    /// The files the run writes here (all but the filler), with their metadata.
    fn files(&self) -> Vec<std::fs::Metadata> {
        let entries = std::fs::read_dir(self.dir.path()).unwrap().filter_map(Result::ok);
        entries.filter(|e| e.file_name() != "filler").filter_map(|e| e.metadata().ok()).collect()
    }

    /// Bytes in the run's files.
    fn written(&self) -> u64 {
        self.files().iter().map(std::fs::Metadata::len).sum()
    }

    /// The least room left in the last page of a file the run has begun: a line longer than this cannot be
    /// written without a new page.
    fn least_room(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let begun = self.files().into_iter().filter(|m| m.len() > 0);
        begun.map(|m| (m.blocks() * 512).saturating_sub(m.len())).min().unwrap_or(u64::MAX)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

fn job(world: &World) -> String {
    JobFile::sample("catalog-import")
        .add("retry.base_delay", "20ms")
        .add("retry.max_delay", "100ms")
        .write(world, "c.toml")
}

fn run(world: &World, job: &str, output: &Path, ledger: &Path) -> crate::support::Cmd {
    let base = world.base_url();
    world.linkbatch(&[
        "run",
        job,
        "--base-url",
        &base,
        "--limit",
        "200/s",
        "--output",
        output.to_str().unwrap(),
        "--ledger",
        ledger.to_str().unwrap(),
    ])
}

/// The disk filled at some point of a run, and space given back while it runs.
fn fills(on_disk: &str, filler: usize) {
    let world = World::with(SandboxConfig::default());
    let disk = SmallDisk::mount();
    let job = job(&world);
    let (ledger, output) = match on_disk {
        "ledger" => (disk.path("l.jsonl"), world.path("out.csv")),
        "output" => (world.path("l.jsonl"), disk.path("out.csv")),
        _ => (disk.path("l.jsonl"), disk.path("out.csv")),
    };
    let filler_path = disk.path("filler");
    std::fs::write(&filler_path, vec![7u8; filler]).unwrap();
    let mut running = run(&world, &job, &output, &ledger).spawn_capturing();
    // Space comes back once a write has met the full disk, while the run is still on: no file on the disk
    // has grown for a while (the run writes every few milliseconds), and one has less room left in its
    // last page than a line takes. (The disk can be full before the first line, the filler and one page of
    // ledger taking every page, while the run reads the server first.)
    let (mut last, mut since) = (disk.written(), Instant::now());
    let started = Instant::now();
    while !running.ended() && started.elapsed() < Duration::from_secs(30) {
        let now = disk.written();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if disk.free() == 0 && disk.least_room() < 512 && since.elapsed() > Duration::from_millis(100) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::fs::remove_file(&filler_path).unwrap();
    let failed = running.finish();
    let label = format!("{on_disk} on a full disk, {filler} bytes of filler");
    let full = if on_disk == "output" { &output } else { &ledger };
    assert_eq!(failed.code, 3, "{label}: {}", failed.stderr);
    let error = failed.error();
    assert!(
        error.contains(&full.display().to_string()) && error.contains("No space left on device"),
        "{label}: the error names the file and the cause: {error}"
    );
    if on_disk != "output" {
        // The ledger's error first, whatever else failed after it.
        let cause = error.trim_start_matches("error: ").trim_start_matches("aborted: ");
        assert!(cause.starts_with(&format!("cannot write the ledger {}", ledger.display())), "{label}: {error}");
    }
    // What was made is said, whichever file failed.
    let summary = failed.stderr.lines().find(|l| l.contains(" requests)")).unwrap_or_default();
    let said = if on_disk == "ledger" { summary.starts_with("60 rows: ") } else { summary.contains(" made in ") };
    assert!(said, "{label}: the summary says what was made: {}", failed.stderr);
    // Every line on disk is whole and its own: serde reads each.
    let text = std::fs::read_to_string(&ledger).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "{label}: the ledger ends with a whole line");
    for line in text.lines() {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "{label}: a torn line: {line}");
    }
    let made = world.stats().links_held;
    let again = run(&world, &job, &output, &ledger).code(0);
    assert!(!again.stderr.contains("corrupt"), "{label}: {}", again.stderr);
    let stats = world.stats();
    assert_eq!(stats.links_held, 60, "{label}: one link per row (the failed run had made {made})");
    assert_eq!(stats.identical_extra, 0, "{label}");
    let rows = crate::support::read_csv(&output);
    assert_eq!(count(&rows, "created") + count(&rows, "existing"), 60, "{label}: {:?}", statuses(&rows));
}

#[test]
fn a_ledger_on_a_disk_that_fills_is_cut_back_and_the_run_exits_3() {
    for filler in [40_000, 52_000, 58_000] {
        fills("ledger", filler);
    }
}

#[test]
fn ledger_and_output_on_a_disk_that_fills() {
    for filler in [44_000, 56_000] {
        fills("both", filler);
    }
}

#[test]
fn an_output_on_a_full_disk_exits_3_and_names_it() {
    fills("output", 60_000);
}

#[test]
fn a_ledger_removed_mid_run_stops_it_before_the_output() {
    let world = World::new();
    let job = job(&world);
    let (output, ledger) = (world.path("out.csv"), world.path("l.jsonl"));
    let base = world.base_url();
    let args = ["run", &job, "--base-url", &base, "--limit", "30/s", "--output"];
    let running = world
        .linkbatch(&[&args[..], &[output.to_str().unwrap(), "--ledger", ledger.to_str().unwrap()]].concat())
        .spawn_capturing();
    while world.stats().creates < 10 {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::remove_file(&ledger).unwrap();
    let outcome = running.finish();
    assert_eq!(outcome.code, 3, "{}", outcome.stderr);
    assert_eq!(
        outcome.error(),
        format!(
            "error: aborted: the ledger {} was removed during the run: nothing more was sent, and the output was not written. \
             Put the ledger back at {} (every event of this run went to the file that was there), then run again",
            ledger.display(),
            ledger.display()
        )
    );
    assert!(!output.exists(), "no output claims success");
    assert!(world.stats().creates < 60, "the run stopped before the end");
}
