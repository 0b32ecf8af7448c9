//! Where a job's files are. Paths the job names are read beside the job file (as Cargo, docker compose and
//! systemd's drop-ins read theirs), paths given as flags from the working directory; `[output] path` and
//! `ledger` fill in `{job}` and `--var` placeholders. Then the checks that keep linkbatch from writing over
//! a file of the user's. Reads nothing but metadata and an existing output's first line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Overrides, PlanError};
use crate::job::JobSpec;
use crate::template::Template;

/// The input, from `--input` or the job.
pub(super) fn input(spec: &JobSpec, overrides: &Overrides) -> Result<PathBuf, PlanError> {
    if let Some(given) = &overrides.input {
        return Ok(given.clone());
    }
    let written = spec.input.path.as_deref().ok_or(PlanError::NoInput)?;
    let path = spec.beside(written);
    moved_away("[input] path", written, &path)?;
    Ok(path)
}

/// The output CSV and the ledger: flags first, then the job (placeholders filled in, beside the job file),
/// then the ledger beside the output; a sandbox trial gets its own names for whatever the flags did not give.
pub(super) fn output_and_ledger(
    spec: &JobSpec,
    overrides: &Overrides,
    vars: &HashMap<String, String>,
) -> Result<(PathBuf, PathBuf), PlanError> {
    let own_written = match &spec.output.path {
        Some(path) => filled("[output] path", path, spec, vars)?,
        None => PathBuf::from("out").join(format!("{}.csv", spec.name)),
    };
    // The ledger belongs to the job: derived from the job's own output path, never from `--output`, so
    // writing the CSV elsewhere never starts a second ledger (and a second link for every row).
    let ledger = match (&overrides.ledger, &spec.output.ledger) {
        (Some(given), _) => given.clone(),
        (None, Some(written)) => {
            let written = filled("[output] ledger", written, spec, vars)?;
            let path = spec.beside(&written);
            moved_away("[output] ledger", &written, &path)?;
            path
        }
        (None, None) => {
            if let Some(var) = spec.output.path.as_deref().and_then(|p| var_in(p, vars)) {
                return Err(PlanError::Paths(format!(
                    "[output] path changes with --var {var}, and the ledger beside it would change with it, \
                     starting a new one (and a new link for every row) whenever {var} does: name the job's \
                     ledger with [output] ledger (one for every {var}: \"out/{}.ledger.jsonl\"); nothing was sent",
                    spec.name
                )));
            }
            let stem = own_written.file_stem().and_then(|s| s.to_str()).unwrap_or("linkbatch");
            let written = own_written.with_file_name(format!("{stem}.ledger.jsonl"));
            let path = spec.beside(&written);
            moved_away("the ledger", &written, &path)?;
            path
        }
    };
    let output = overrides.output.clone().unwrap_or_else(|| spec.beside(&own_written));
    let trial = |given: bool, path: PathBuf| if overrides.sandbox && !given { sandbox_path(&path) } else { path };
    Ok((trial(overrides.output.is_some(), output), trial(overrides.ledger.is_some(), ledger)))
}

/// `out/x.csv` → `out/x.sandbox.csv`: sandbox trials never share a ledger with real runs.
fn sandbox_path(path: &Path) -> PathBuf {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("linkbatch");
    let ext = path.extension().and_then(|s| s.to_str()).map(|e| format!(".{e}")).unwrap_or_default();
    let stem =
        stem.strip_suffix(".ledger").map_or_else(|| format!("{stem}.sandbox"), |s| format!("{s}.sandbox.ledger"));
    path.with_file_name(format!("{stem}{ext}"))
}

/// A path of the job with its placeholders filled: `{job}`, the job's name, and any `--var`. A value put
/// into a path cannot move it to another folder.
fn filled(field: &str, path: &Path, spec: &JobSpec, vars: &HashMap<String, String>) -> Result<PathBuf, PlanError> {
    let Some(text) = path.to_str().filter(|t| t.contains(['{', '}'])) else { return Ok(path.to_owned()) };
    let template = super::template(field, text)?;
    let lookup = |name: &str| if name == "job" { Some(spec.name.as_str()) } else { vars.get(name).map(String::as_str) };
    for name in template.placeholders() {
        match lookup(name) {
            None => {
                return Err(PlanError::Paths(format!(
                    "{field} = \"{text}\": {{{name}}} is neither {{job}} nor a --var (pass --var {name}=VALUE)"
                )));
            }
            Some(value) if value.is_empty() || value == "." || value == ".." || value.contains(['/', '\\']) => {
                return Err(PlanError::Paths(format!(
                    "{field} = \"{text}\": {{{name}}} is \"{value}\", which would name another folder; a value \
                     in a path is one file name's part"
                )));
            }
            Some(_) => {}
        }
    }
    // Every placeholder was found just above.
    Ok(PathBuf::from(template.render(lookup).unwrap_or_else(|_| text.to_owned())))
}

/// The first `--var` a job path's template uses, if any (`{job}` does not change from run to run).
fn var_in(path: &Path, vars: &HashMap<String, String>) -> Option<String> {
    let template = Template::parse(path.to_str()?).ok()?;
    template.placeholders().find(|name| vars.contains_key(*name)).map(str::to_owned)
}

/// A job path that is not beside the job file but is where an older linkbatch read it (from the working
/// directory) is refused, never taken for a new file: a ledger started afresh would make every link again.
fn moved_away(field: &str, written: &Path, beside: &Path) -> Result<(), PlanError> {
    if written.is_absolute() || beside == written || beside.exists() || !written.exists() {
        return Ok(());
    }
    if canonical(written) == canonical(beside) {
        return Ok(());
    }
    Err(PlanError::Paths(format!(
        "{field}: a job's paths are read beside the job file, and {} does not exist, while {} (the same path from \
         the working directory, where linkbatch read it before) does: move the file beside the job, write the path \
         relative to the job's folder, or name it with a flag; nothing was sent and no file was changed",
        beside.display(),
        written.display()
    )))
}

/// A path as it will be opened: symlinks followed, `..` resolved; a file not there yet by its directory's
/// canonical path and its name.
fn canonical(path: &Path) -> PathBuf {
    if let Ok(found) = path.canonicalize() {
        return found;
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (dir.canonicalize(), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_owned(),
    }
}

/// The output and the ledger are written: neither may be the input, each other, or a directory. Compared by
/// canonical path, so a symlink or `./` spelling cannot hide the same file.
pub(super) fn check_paths(input: &Path, output: &Path, ledger: &Path, job: Option<&Path>) -> Result<(), PlanError> {
    let (input_c, output_c, ledger_c) = (canonical(input), canonical(output), canonical(ledger));
    let refuse = |what: String| Err(PlanError::Paths(format!("{what}; nothing was sent and no file was changed")));
    if let Some(job_c) = job.map(canonical) {
        for (what, path, path_c) in [("output", output, &output_c), ("ledger", ledger, &ledger_c)] {
            if *path_c == job_c {
                return refuse(format!("the {what} {} is the job file: it would be overwritten", path.display()));
            }
        }
    }
    if output_c == input_c {
        return refuse(format!("the output {} is the input: it would be overwritten", output.display()));
    }
    if ledger_c == input_c {
        return refuse(format!("the ledger {} is the input", ledger.display()));
    }
    if output_c == ledger_c {
        return refuse(format!(
            "the output and the ledger are the same file ({}): give each its own",
            output.display()
        ));
    }
    for (what, path) in [("output", output), ("ledger", ledger)] {
        if path.is_dir() {
            return refuse(format!("the {what} {} is a directory; name a file", path.display()));
        }
    }
    Ok(())
}

/// The output is written over only when it is this job's: absent or empty, or a CSV whose header is
/// linkbatch's (its first columns `line,key,status,…`); at a path `--output` names, the very header this
/// job writes. Anything else is a file of the user's (a report, a ledger, another job's output), and is
/// never touched.
pub(super) fn check_output_target(output: &Path, header: &[String], given: bool) -> Result<(), PlanError> {
    let Ok(meta) = std::fs::metadata(output) else { return Ok(()) };
    if meta.len() == 0 {
        return Ok(());
    }
    let found: Option<Vec<String>> = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(output)
        .ok()
        .and_then(|mut r| r.records().next())
        .and_then(Result::ok)
        .map(|r| r.iter().map(|c| c.trim_start_matches('\u{feff}').to_owned()).collect());
    let ours = found.as_ref().is_some_and(|found| {
        let linkbatch = found.len() >= crate::output::COLUMNS.len()
            && found.iter().zip(crate::output::COLUMNS).all(|(f, c)| f == c);
        linkbatch && (!given || found.starts_with(header))
    });
    if ours {
        return Ok(());
    }
    let what = if found.is_none() {
        "is not a CSV file"
    } else {
        "is not an output of this job (its header is not the one this job writes)"
    };
    Err(PlanError::Paths(format!(
        "the output {} exists and {what}: nothing was sent and the file was not changed. Name a new file with \
         --output, or move this one away",
        output.display()
    )))
}
