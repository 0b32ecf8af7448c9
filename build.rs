//! Names the commit a binary was built from, for `linkbatch --version`: `LINKBATCH_COMMIT` is the short
//! hash, with `-dirty` when the tree had changes, or `unknown` outside a git checkout (a crate tarball).

use std::process::Command;

fn main() {
    for path in ["src", "Cargo.toml", ".git/HEAD", ".git/index", ".git/refs"] {
        println!("cargo:rerun-if-changed={path}");
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(hash) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty { format!("{hash}-dirty") } else { hash }
        }
        None => "unknown".to_owned(),
    };
    println!("cargo:rustc-env=LINKBATCH_COMMIT={commit}");
}
