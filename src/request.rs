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
    /// Metadata (the Links guide), rendered from `[link.metadata]`; left out of the JSON when empty, so requests
    /// without it keep the fingerprints existing ledgers hold.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// The metadata key that carries a row's key (`[link] key_in_metadata = true`).
pub const KEY_IN_METADATA: &str = "linkbatch_key";

impl ClassicRequest {
    /// The form body of `POST /links`, as Omise's libraries send it: `metadata[name]=value` for each entry.
    pub fn form(&self) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("amount".to_owned(), self.amount.to_string()),
            ("currency".to_owned(), self.currency.clone()),
            ("title".to_owned(), self.title.clone()),
            ("description".to_owned(), self.description.clone()),
            ("multiple".to_owned(), self.multiple.to_string()),
        ];
        pairs.extend(self.metadata.iter().map(|(k, v)| (format!("metadata[{k}]"), v.clone())));
        pairs
    }
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

    /// The request's JSON, fields in declaration order, as `serde_json` writes it: the canonical form a
    /// fingerprint hashes (a hand-written writer saved 8% of a 1M resume, under the tenth that would keep
    /// it: ARCHITECTURE.md, "Built by hand").
    fn canonical(&self, out: &mut Vec<u8>) {
        // Writing a derived Serialize of strings, numbers and booleans to memory cannot fail.
        let _ = serde_json::to_writer(out, self);
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

    /// Multiple-use (Links+: `multiple_usage`).
    pub fn multiple(&self) -> bool {
        match self {
            LinkRequest::Classic(r) => r.multiple,
            LinkRequest::Plus(r) => r.multiple_usage,
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

    /// Every ledger ever written holds fingerprints of this form: a change to the canonical JSON would turn
    /// every existing link into a conflict. These are the fingerprints of two requests as version 0.1 wrote
    /// them.
    #[test]
    fn fingerprints_are_those_existing_ledgers_hold() {
        let classic = LinkRequest::Classic(ClassicRequest {
            amount: 99_000,
            currency: "thb".into(),
            title: "Quote \" and ünïcødé\n".into(),
            description: "d".into(),
            multiple: true,
            metadata: std::collections::BTreeMap::new(),
        });
        let plus = LinkRequest::Plus(PlusRequest {
            template_id: 123,
            team_id: 456,
            name: "VIP".into(),
            amount: 450_000,
            currency: None,
            multiple_usage: false,
            custom_webhook: Some("https://example.com/h".into()),
        });
        let mut text = Vec::new();
        classic.canonical(&mut text);
        assert_eq!(
            String::from_utf8(text).unwrap(),
            r#"{"amount":99000,"currency":"thb","title":"Quote \" and ünïcødé\n","description":"d","multiple":true}"#
        );
        assert_eq!(classic.fingerprint().to_string(), "aa7e892912aa77ed2f45f90beb65d506");
        assert_eq!(plus.fingerprint().to_string(), "cd7b244df8c1259ee88fb43d1fd2451f");
    }
}
