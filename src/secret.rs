//! Secrets from where hosts keep them: the environment variable a job names, the file named by
//! `<VARIABLE>_FILE` (the convention of the `PostgreSQL` and `MySQL` images, Docker and Kubernetes secrets), or
//! `$CREDENTIALS_DIRECTORY/<VARIABLE>` (systemd's `LoadCredential=`).
//!
//! Owns finding a secret and reading it; never prints one. Every secret read is handed to
//! [`crate::redact::remember`] before it is returned, so no later line can carry it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where a secret came from, for messages (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `$VARIABLE`.
    Variable(String),
    /// A file: `$VARIABLE_FILE` or a systemd credential.
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Variable(name) => write!(f, "${name}"),
            Source::File(path) => write!(f, "the file {}", path.display()),
        }
    }
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// Two places hold it: which one is meant is the user's to say.
    #[error("{first} and {second} are both set for {variable}: keep one (a host's secret file, or the variable)")]
    Twice {
        /// The secret's variable.
        variable: String,
        /// One place.
        first: Source,
        /// The other.
        second: Source,
    },
    /// The file named for it cannot be read.
    #[error("cannot read {variable} from {path}: {reason}")]
    Unreadable {
        /// The secret's variable.
        variable: String,
        /// The file.
        path: PathBuf,
        /// The OS's reason.
        reason: String,
    },
    /// The file is empty.
    #[error("{path} (for {variable}) is empty")]
    Empty {
        /// The secret's variable.
        variable: String,
        /// The file.
        path: PathBuf,
    },
}

/// The secret named `variable` from this process's environment: `None` when no place holds it.
pub fn read(variable: &str) -> Result<Option<String>, SecretError> {
    read_from(variable, |name| std::env::var_os(name).filter(|v| !v.is_empty()))
}

/// [`read`] with the environment given, for tests.
pub fn read_from(variable: &str, env: impl Fn(&str) -> Option<OsString>) -> Result<Option<String>, SecretError> {
    let mut found = Vec::new();
    if let Some(value) = env(variable) {
        found.push((Source::Variable(variable.to_owned()), Some(value.to_string_lossy().into_owned())));
    }
    if let Some(path) = env(&format!("{variable}_FILE")) {
        found.push((Source::File(path.into()), None));
    }
    if let Some(dir) = env("CREDENTIALS_DIRECTORY") {
        let path = PathBuf::from(dir).join(variable);
        if path.exists() {
            found.push((Source::File(path), None));
        }
    }
    let mut found = found.into_iter();
    let Some((source, value)) = found.next() else { return Ok(None) };
    if let Some((second, _)) = found.next() {
        return Err(SecretError::Twice { variable: variable.to_owned(), first: source, second });
    }
    let secret = match (source, value) {
        (_, Some(value)) => value,
        (Source::File(path), None) => from_file(variable, &path)?,
        (Source::Variable(_), None) => return Ok(None),
    };
    crate::redact::remember(&secret);
    Ok(Some(secret))
}

/// A secret file's text, its trailing line break cut (`echo KEY > file` writes one).
fn from_file(variable: &str, path: &Path) -> Result<String, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|e| SecretError::Unreadable {
        variable: variable.to_owned(),
        path: path.to_owned(),
        reason: e.kind().to_string(),
    })?;
    let text = text.trim_end_matches(['\n', '\r']).to_owned();
    if text.trim().is_empty() {
        return Err(SecretError::Empty { variable: variable.to_owned(), path: path.to_owned() });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &Path)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), v.as_os_str().to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn a_secret_comes_from_the_variable_its_file_or_a_credential() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "skey_test_fromfile1\n").unwrap();
        std::fs::write(dir.path().join("K"), "skey_test_credential1\r\n").unwrap();
        let var = read_from("K", env(&[("K", Path::new("skey_test_fromvar1"))])).unwrap();
        assert_eq!(var.as_deref(), Some("skey_test_fromvar1"));
        let from_file = read_from("K", env(&[("K_FILE", &file)])).unwrap();
        assert_eq!(from_file.as_deref(), Some("skey_test_fromfile1"), "the trailing newline is cut");
        let credential = read_from("K", env(&[("CREDENTIALS_DIRECTORY", dir.path())])).unwrap();
        assert_eq!(credential.as_deref(), Some("skey_test_credential1"));
        assert_eq!(read_from("K", env(&[])).unwrap(), None);
        let other = tempfile::tempdir().unwrap();
        assert_eq!(read_from("K", env(&[("CREDENTIALS_DIRECTORY", other.path())])).unwrap(), None);
    }

    #[test]
    fn two_places_or_a_bad_file_are_refused_without_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "skey_test_fromfile2\n").unwrap();
        let twice = read_from("K", env(&[("K", Path::new("skey_test_fromvar2")), ("K_FILE", &file)])).unwrap_err();
        assert_eq!(
            twice.to_string(),
            format!(
                "$K and the file {} are both set for K: keep one (a host's secret file, or the variable)",
                file.display()
            )
        );
        let missing = dir.path().join("none");
        let unreadable = read_from("K", env(&[("K_FILE", &missing)])).unwrap_err();
        assert_eq!(unreadable.to_string(), format!("cannot read K from {}: entity not found", missing.display()));
        std::fs::write(&file, "\n").unwrap();
        let empty = read_from("K", env(&[("K_FILE", &file)])).unwrap_err();
        assert_eq!(empty.to_string(), format!("{} (for K) is empty", file.display()));
    }
}
