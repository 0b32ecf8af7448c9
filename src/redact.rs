//! Secrets out of every text a person or a machine reads: anything shaped like an Omise key (`skey_…`,
//! `pkey_…`) and every secret this process actually read, whatever its shape (a Links+ key, an SMTP
//! password). The log writer, `main`'s error line and the panic hook pass their text through [`text`].
//!
//! Owns the list of secrets read; never stores them anywhere but in this process's memory.

use std::borrow::Cow;
use std::sync::{LazyLock, Mutex, PoisonError};

use regex::{Captures, Regex};

/// Secrets read by this process, longest first (so a secret that contains another is replaced whole).
static READ: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Shorter secrets would match ordinary words; no real key or password that short is accepted anyway.
const SHORTEST: usize = 6;

/// What stands in a text where a secret stood.
pub const MARK: &str = "[redacted]";

/// Remembers a secret read from the environment or a file, so that [`text`] removes it from then on.
pub fn remember(secret: &str) {
    let secret = secret.trim();
    if secret.len() < SHORTEST {
        return;
    }
    let mut read = READ.lock().unwrap_or_else(PoisonError::into_inner);
    if !read.iter().any(|s| s == secret) {
        read.push(secret.to_owned());
        read.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// A command line's refusal as the flag parser wrote it, each value it quotes cut to a short prefix (a flag's
/// name, quoted with its dashes, is kept): a slip of the shell can put a secret of any shape there.
pub fn quoted_values(text: &str) -> String {
    const SHOWN: usize = 4;
    let mut out = String::with_capacity(text.len());
    let mut parts = text.split('\'');
    out.push_str(parts.next().unwrap_or_default());
    let mut inside = true;
    for part in parts {
        out.push('\'');
        if inside && !part.starts_with('-') && part.chars().count() > SHOWN {
            out.extend(part.chars().take(SHOWN));
            out.push('…');
        } else {
            out.push_str(part);
        }
        inside = !inside;
    }
    out
}

/// `text` with every secret read and every key-shaped word replaced: `skey_test_…` keeps its prefix (the
/// mode says which key without telling it), the rest becomes [`MARK`].
pub fn text(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    for secret in READ.lock().unwrap_or_else(PoisonError::into_inner).iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), MARK));
        }
    }
    if !out.contains("key_") {
        return out;
    }
    if let Cow::Owned(cut) = key_shaped(&out) {
        return Cow::Owned(cut);
    }
    out
}

/// Every `skey_…` or `pkey_…` word cut to its prefix (`skey_live_` + [`MARK`]); a bare prefix holds nothing.
fn key_shaped(text: &str) -> Cow<'_, str> {
    static KEY: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b([sp]key_)([A-Za-z0-9_]*)").expect("a constant pattern"));
    KEY.replace_all(text, |found: &Captures<'_>| {
        let rest = &found[2];
        let mode = ["test_", "live_"].into_iter().find(|m| rest.starts_with(m)).unwrap_or_default();
        if rest.len() > mode.len() { format!("{}{mode}{MARK}", &found[1]) } else { found[0].to_owned() }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_shaped_words_keep_only_their_prefix() {
        assert_eq!(text("--var `=skey_test_5abcXYZ` is bad"), "--var `=skey_test_[redacted]` is bad");
        assert_eq!(text("pkey_live_1 and skey_x"), "pkey_live_[redacted] and skey_[redacted]");
        assert_eq!(text("a monkey_business and skey"), "a monkey_business and skey", "not a key: left alone");
        assert_eq!(text("no keys here"), "no keys here");
        assert_eq!(text("only skey_test_… keys"), "only skey_test_… keys", "a bare prefix holds no secret");
    }

    #[test]
    fn values_a_refused_command_line_quotes_are_cut() {
        assert_eq!(
            quoted_values("error: invalid value 'lp_k3y_0f_th3_us3r' for '--var <NAME=VALUE>': no `=`; try '--help'."),
            "error: invalid value 'lp_k…' for '--var <NAME=VALUE>': no `=`; try '--help'."
        );
        assert_eq!(quoted_values("invalid value '5x' for '--latency'"), "invalid value '5x' for '--latency'");
    }

    #[test]
    fn a_secret_read_is_removed_whatever_its_shape() {
        remember("plus-Key-0d41a7c2");
        assert_eq!(text("Authorization: plus-Key-0d41a7c2\n"), "Authorization: [redacted]\n");
        remember("abc");
        assert_eq!(text("abc"), "abc", "too short to be a secret, and would match ordinary words");
    }
}
