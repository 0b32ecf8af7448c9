//! The official Omise Python library, unmodified, pointed at the sandbox (issue: "must work unchanged").
//!
//! It is installed from `PyPI` into a throwaway virtual environment under `target/`, reused between runs.

use std::path::PathBuf;
use std::process::Command;

use crate::support::World;

fn venv_python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/compat-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let made =
            Command::new("python3").args(["-m", "venv"]).arg(&venv).status().expect("python3 is needed for this check");
        assert!(made.success(), "python3 -m venv failed");
    }
    let has_omise = Command::new(&python).args(["-c", "import omise"]).status().is_ok_and(|s| s.success());
    if !has_omise {
        let pip = Command::new(&python).args(["-m", "pip", "install", "--quiet", "omise==0.16.0"]).status().unwrap();
        assert!(pip.success(), "pip install omise failed");
    }
    python
}

#[test]
fn official_python_library_works_unchanged() {
    let world = World::new();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat/omise_python.py");
    let output = Command::new(venv_python()).arg(script).arg(world.base_url()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("create, retrieve, list, destroy and errors OK"));
    let stats = world.stats();
    assert_eq!((stats.creates, stats.links_held, stats.deleted_links), (1, 0, 1));
}
