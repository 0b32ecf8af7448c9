//! What linkbatch says on stderr outside its log: a command's summary, an interruption, the error it ended
//! with, a panic. Written in the log's own format, so that under `--log-format json` every line on stderr is
//! one JSON object a log shipper reads as it reads the log's (`timestamp`, `level`, `fields.message`, plus
//! `fields.kind`); plain text otherwise. Every line goes through [`crate::redact`] first.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// Whether the lines are JSON (`--log-format json`), set once the command line is read.
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::SeqCst);
}

/// Whether a command line asks for JSON lines, read from its raw words: for a line clap refused, which
/// says no more than that.
pub fn asks_json<T: AsRef<std::ffi::OsStr>>(args: &[T]) -> bool {
    let words: Vec<&str> = args.iter().filter_map(|a| a.as_ref().to_str()).collect();
    words.windows(2).any(|w| w == ["--log-format", "json"]) || words.contains(&"--log-format=json")
}

/// What a line is, for a reader that sorts them.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// How a command ended: its counts.
    Summary,
    /// The command was interrupted, and how to resume.
    Interrupted,
    /// The error the command ended with (exit 2 or 3).
    Error,
    /// A panic, which is a bug.
    Panic,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Summary => "summary",
            Kind::Interrupted => "interrupted",
            Kind::Error => "error",
            Kind::Panic => "panic",
        }
    }

    fn level(self) -> &'static str {
        match self {
            Kind::Summary => "INFO",
            Kind::Interrupted => "WARN",
            Kind::Error | Kind::Panic => "ERROR",
        }
    }
}

/// One line (a message of several lines stays one JSON object).
pub fn say(kind: Kind, text: &str) {
    let text = crate::redact::text(text);
    let line = if JSON.load(Ordering::SeqCst) { json_line(kind, &text) } else { text.trim_end().to_owned() };
    crate::progress::suspend(|| {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    });
}

fn json_line(kind: Kind, text: &str) -> String {
    let timestamp = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    let line = serde_json::json!({
        "timestamp": timestamp,
        "level": kind.level(),
        "fields": { "message": text.trim_end(), "kind": kind.name() },
    });
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_is_one_object_with_the_logs_fields() {
        let line = json_line(Kind::Error, "error: the ledger is locked\nby another run\n");
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["level"], "ERROR");
        assert_eq!(value["fields"]["kind"], "error");
        assert_eq!(value["fields"]["message"], "error: the ledger is locked\nby another run");
        assert!(value["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn json_is_asked_either_way_the_flag_is_written() {
        assert!(asks_json(&["linkbatch", "run", "--log-format", "json"]));
        assert!(asks_json(&["linkbatch", "--log-format=json", "run"]));
        assert!(!asks_json(&["linkbatch", "run", "--log-format", "text"]));
        assert!(!asks_json(&["linkbatch", "run", "json"]));
    }
}
