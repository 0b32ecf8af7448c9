//! How a command ended, and the exit status that says so: the one place exit codes are chosen (README,
//! docs/reference.md, "Exit codes"). Every command returns an [`Outcome`]; `main` prints its error, if any, and exits with
//! [`Outcome::code`].

use crate::api::KeyError;
use crate::job::JobError;
use crate::ledger::LedgerError;
use crate::plan::PlanError;

/// How a command ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every row has a link (`validate`: every row can be sent). Exit 0.
    Complete,
    /// Finished, but some rows failed, were rejected, conflict or were not reached. Exit 1.
    Incomplete,
    /// A usage, job or input error: nothing was sent. Exit 2.
    Refused(anyhow::Error),
    /// A command line the flag parser refused, in its own words (with the usage line). Exit 2.
    Usage(String),
    /// Stopped: authentication failure, a ledger locked, mismatched, damaged or unwritable. Exit 3.
    Aborted(anyhow::Error),
    /// Stopped by a signal; in-flight requests were finished and recorded. Exit 130.
    Interrupted,
}

impl Outcome {
    /// The process exit status.
    pub fn code(&self) -> u8 {
        match self {
            Outcome::Complete => 0,
            Outcome::Incomplete => 1,
            Outcome::Refused(_) | Outcome::Usage(_) => 2,
            Outcome::Aborted(_) => 3,
            Outcome::Interrupted => 130,
        }
    }

    /// The error to print, when the outcome carries one.
    pub fn error(&self) -> Option<&anyhow::Error> {
        match self {
            Outcome::Refused(e) | Outcome::Aborted(e) => Some(e),
            Outcome::Complete | Outcome::Incomplete | Outcome::Interrupted | Outcome::Usage(_) => None,
        }
    }

    /// What `main` prints to stderr before it exits, secrets redacted: each cause once (an error whose
    /// message already quotes its source does not repeat it), or the flag parser's text as it wrote it.
    pub fn message(&self) -> Option<String> {
        let text = match self {
            Outcome::Usage(text) => text.trim_end().to_owned(),
            Outcome::Refused(e) | Outcome::Aborted(e) => format!("error: {}", one_sentence(e)),
            Outcome::Complete | Outcome::Incomplete | Outcome::Interrupted => return None,
        };
        Some(crate::redact::text(&text).into_owned())
    }

    /// `Complete` when nothing is left to report, else `Incomplete`.
    pub fn complete_if(done: bool) -> Outcome {
        if done { Outcome::Complete } else { Outcome::Incomplete }
    }

    /// A usage, job or input error (exit 2).
    pub fn refused(error: impl Into<anyhow::Error>) -> Outcome {
        Outcome::Refused(error.into())
    }

    /// A run stopped for good (exit 3).
    pub fn aborted(error: impl Into<anyhow::Error>) -> Outcome {
        Outcome::Aborted(error.into())
    }
}

/// An error and its causes joined by `: `, leaving out a cause whose text the message already holds.
fn one_sentence(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

impl From<PlanError> for Outcome {
    fn from(e: PlanError) -> Self {
        Outcome::refused(e)
    }
}

impl From<JobError> for Outcome {
    fn from(e: JobError) -> Self {
        Outcome::refused(e)
    }
}

impl From<KeyError> for Outcome {
    fn from(e: KeyError) -> Self {
        Outcome::refused(e)
    }
}

impl From<LedgerError> for Outcome {
    fn from(e: LedgerError) -> Self {
        match e {
            // A ledger that cannot be opened or created is a path to fix: nothing was sent.
            LedgerError::Io { .. } | LedgerError::NotALedger(_) => Outcome::refused(e),
            // Written to, or moved, while the run went on: requests may have left.
            LedgerError::Write { .. }
            | LedgerError::Moved { .. }
            | LedgerError::Locked(_)
            | LedgerError::Corrupt { .. }
            | LedgerError::Mismatch { .. } => Outcome::aborted(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_readme() {
        let codes: Vec<u8> = [
            Outcome::Complete,
            Outcome::Incomplete,
            Outcome::refused(anyhow::anyhow!("bad job")),
            Outcome::aborted(anyhow::anyhow!("401")),
            Outcome::Interrupted,
        ]
        .iter()
        .map(Outcome::code)
        .collect();
        assert_eq!(codes, [0, 1, 2, 3, 130]);
    }

    #[test]
    fn a_cause_the_message_quotes_is_said_once() {
        let source = std::io::Error::from(std::io::ErrorKind::NotFound);
        let job = JobError::Read { path: "jobs/x.toml".into(), source };
        assert_eq!(
            Outcome::refused(job).message().unwrap(),
            "error: cannot read job file jobs/x.toml: entity not found"
        );
        let chained = anyhow::anyhow!("disk full").context("cannot write the output out.csv");
        assert_eq!(Outcome::aborted(chained).message().unwrap(), "error: cannot write the output out.csv: disk full");
    }

    #[test]
    fn ledger_errors_abort_unless_the_path_is_wrong() {
        let path = std::path::PathBuf::from("l.jsonl");
        let io = LedgerError::Io { path: path.clone(), source: std::io::Error::other("denied") };
        assert_eq!(Outcome::from(io).code(), 2);
        assert_eq!(Outcome::from(LedgerError::Locked(path.clone())).code(), 3);
        let write = LedgerError::Write { path: path.clone(), source: std::io::Error::other("no space") };
        assert_eq!(Outcome::from(write).code(), 3, "a write fails only once the run went ahead");
        assert_eq!(Outcome::from(LedgerError::Moved { path: path.clone(), why: "was removed" }).code(), 3);
        let corrupt = LedgerError::Corrupt { path, line: 4, reason: "not JSON".into() };
        assert_eq!(Outcome::from(corrupt).code(), 3);
    }
}
