//! The parameters of one create request, for each API, and their fingerprint: a hash of their canonical
//! JSON. Never reads a row and never sends anything.

use serde::Serialize;

use crate::digest::Digest;

/// A classic link, as `POST /links` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ClassicRequest {
    /// Minor units.
    pub amount: u64,
    /// Lowercase code.
    pub currency: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Multiple-use.
    pub multiple: bool,
}

/// A Links+ link, as `POST /external/links` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PlusRequest {
    /// Template.
    pub template_id: u64,
    /// Team.
    pub team_id: u64,
    /// Name.
    pub name: String,
    /// Minor units.
    pub amount: u64,
    /// Lowercase code; absent means the template's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Multiple-use.
    pub multiple_usage: bool,
    /// Per-link webhook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_webhook: Option<String>,
}

/// The parameters of one create request.
// The lint sees the `unsafe` inside `thread_local!` (the fingerprint's scratch buffer); none is ours.
#[allow(clippy::unsafe_derive_deserialize)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum LinkRequest {
    /// Classic Links API.
    Classic(ClassicRequest),
    /// Payment Links+.
    Plus(PlusRequest),
}

impl LinkRequest {
    /// A hash of the canonical parameters: equal requests, equal fingerprints.
    pub fn fingerprint(&self) -> Digest {
        thread_local! {
            /// The canonical text of the last request, its room reused by the next.
            static CANONICAL: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        // Borrowed only here, and nothing below fingerprints: never borrowed twice.
        CANONICAL.with_borrow_mut(|canonical| {
            canonical.clear();
            self.canonical(canonical);
            Digest::of(canonical)
        })
    }

    /// The request's JSON, fields in declaration order: byte for byte what `serde_json` writes for it (a test
    /// holds the two together), without a serializer's per-field work, which is most of a resumed row's.
    fn canonical(&self, out: &mut Vec<u8>) {
        fn text(out: &mut Vec<u8>, name: &[u8], value: &str) {
            out.extend_from_slice(name);
            if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
                out.push(b'"');
                out.extend_from_slice(value.as_bytes());
                out.push(b'"');
            } else {
                // Escapes are serde_json's; writing to memory cannot fail.
                let _ = serde_json::to_writer(&mut *out, value);
            }
        }
        fn number(out: &mut Vec<u8>, name: &[u8], value: u64) {
            out.extend_from_slice(name);
            out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        }
        fn boolean(out: &mut Vec<u8>, name: &[u8], value: bool) {
            out.extend_from_slice(name);
            out.extend_from_slice(if value { b"true" } else { b"false" });
        }
        match self {
            LinkRequest::Classic(r) => {
                number(out, b"{\"amount\":", r.amount);
                text(out, b",\"currency\":", &r.currency);
                text(out, b",\"title\":", &r.title);
                text(out, b",\"description\":", &r.description);
                boolean(out, b",\"multiple\":", r.multiple);
            }
            LinkRequest::Plus(r) => {
                number(out, b"{\"template_id\":", r.template_id);
                number(out, b",\"team_id\":", r.team_id);
                text(out, b",\"name\":", &r.name);
                number(out, b",\"amount\":", r.amount);
                if let Some(currency) = &r.currency {
                    text(out, b",\"currency\":", currency);
                }
                boolean(out, b",\"multiple_usage\":", r.multiple_usage);
                if let Some(hook) = &r.custom_webhook {
                    text(out, b",\"custom_webhook\":", hook);
                }
            }
        }
        out.push(b'}');
    }

    /// Amount in minor units.
    pub fn amount(&self) -> u64 {
        match self {
            LinkRequest::Classic(r) => r.amount,
            LinkRequest::Plus(r) => r.amount,
        }
    }

    /// Currency code, where the request fixes one.
    pub fn currency(&self) -> Option<&str> {
        match self {
            LinkRequest::Classic(r) => Some(&r.currency),
            LinkRequest::Plus(r) => r.currency.as_deref(),
        }
    }

    /// Title (Links+: name).
    pub fn title(&self) -> &str {
        match self {
            LinkRequest::Classic(r) => &r.title,
            LinkRequest::Plus(r) => &r.name,
        }
    }

    /// What differs between two requests, field by field, for a conflict message.
    pub fn changes_from(&self, before: &LinkRequest) -> String {
        let (Ok(serde_json::Value::Object(now)), Ok(serde_json::Value::Object(then))) =
            (serde_json::to_value(self), serde_json::to_value(before))
        else {
            return "the link's parameters".into();
        };
        let mut changes = Vec::new();
        for (field, value) in &now {
            let old = then.get(field).cloned().unwrap_or(serde_json::Value::Null);
            if &old != value {
                changes.push(format!("{field} {old} -> {value}"));
            }
        }
        for field in then.keys().filter(|f| !now.contains_key(*f)) {
            changes.push(format!("{field} removed"));
        }
        if changes.is_empty() { "the link's parameters".into() } else { changes.join(", ") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_is_serde_jsons() {
        let awkward = ["", "plain", "quote\" and \\ backslash", "tab\tnew\nline\u{1}\u{7f}", "ünïcødé €", "</script>"];
        for a in awkward {
            for b in awkward {
                let classic = LinkRequest::Classic(ClassicRequest {
                    amount: 1_000_000_007,
                    currency: a.into(),
                    title: b.into(),
                    description: format!("{a}{b}"),
                    multiple: a.len() % 2 == 0,
                });
                for (currency, custom_webhook) in [(None, None), (Some(a.to_owned()), Some(b.to_owned()))] {
                    let plus = LinkRequest::Plus(PlusRequest {
                        template_id: 7,
                        team_id: u64::MAX,
                        name: b.into(),
                        amount: 0,
                        currency,
                        multiple_usage: b.is_empty(),
                        custom_webhook,
                    });
                    for request in [&classic, &plus] {
                        let mut ours = Vec::new();
                        request.canonical(&mut ours);
                        assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(request).unwrap());
                    }
                }
            }
        }
    }
}
