//! What the server's answers say, read from their JSON: links, pages of links, charges and the error object.
//! Pure functions over `serde_json::Value`, held to the recorded answers of the real API
//! (`tests/fixtures/omise/`) by the contract tests. Never guesses: a field it needs and cannot read is an
//! [`Unreadable`], which the caller treats as "do not act on this answer" (docs/reference.md, "Fail closed").

use serde_json::Value;

use crate::request::LinkRequest;
use crate::terms::ApiKind;
use crate::terms::Payment;

/// An answer linkbatch cannot read: what it needed and did not find.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the answer has no readable {missing}")]
pub struct Unreadable {
    /// The field (or item and field) that is missing or of the wrong type.
    pub missing: String,
}

fn unreadable(missing: impl Into<String>) -> Unreadable {
    Unreadable { missing: missing.into() }
}

/// A link as the server describes it, from either API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLink {
    /// Id (Links+ integer ids as text).
    pub id: String,
    /// Where the customer pays (classic `payment_uri`; Links+ `payment_url` or `transaction_url`).
    pub payment_uri: String,
    /// Minor units.
    pub amount: u64,
    /// Currency code, lower case (the 2025 recording answers `THB`).
    pub currency: String,
    /// Title (Links+: name).
    pub title: String,
    /// Description (classic only).
    pub description: String,
    /// Multiple-use.
    pub multiple: bool,
    /// Deleted (classic: `deleted`, or a `deleted_at` time; absent in older versions).
    pub deleted: bool,
    /// Links+ team and template.
    pub team_template: Option<(u64, u64)>,
    /// Metadata, when the answer carries it (the API reference and the recordings show none).
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
}

fn text(v: &Value, name: &str) -> Option<String> {
    v.get(name).and_then(Value::as_str).map(str::to_owned)
}

fn flag(v: &Value, name: &str) -> bool {
    v.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// An id that may be a JSON number or a string of one (Links+ answers either).
fn number_or_text(v: &Value, name: &str) -> Option<String> {
    match v.get(name)? {
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn whole(v: &Value, name: &str) -> Option<u64> {
    match v.get(name)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl RemoteLink {
    /// Reads a link object of `api`; what a create, a retrieve or a list item answers.
    pub fn read(api: ApiKind, v: &Value) -> Result<RemoteLink, Unreadable> {
        match api {
            ApiKind::Links => Self::classic(v),
            ApiKind::LinksPlus => Self::plus(v),
        }
    }

    fn classic(v: &Value) -> Result<RemoteLink, Unreadable> {
        let id = text(v, "id").filter(|id| !id.is_empty()).ok_or_else(|| unreadable("id"))?;
        let payment_uri = text(v, "payment_uri").filter(|u| !u.is_empty()).ok_or_else(|| unreadable("payment_uri"))?;
        let deleted_at = v.get("deleted_at").is_some_and(|d| !d.is_null());
        Ok(RemoteLink {
            id,
            payment_uri,
            amount: v.get("amount").and_then(Value::as_u64).ok_or_else(|| unreadable("amount"))?,
            currency: text(v, "currency").ok_or_else(|| unreadable("currency"))?.to_ascii_lowercase(),
            title: text(v, "title").unwrap_or_default(),
            description: text(v, "description").unwrap_or_default(),
            multiple: flag(v, "multiple"),
            deleted: flag(v, "deleted") || deleted_at,
            team_template: None,
            metadata: v.get("metadata").and_then(Value::as_object).map(|m| {
                m.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect()
            }),
        })
    }

    fn plus(v: &Value) -> Result<RemoteLink, Unreadable> {
        let id = number_or_text(v, "id").ok_or_else(|| unreadable("id"))?;
        let url = text(v, "payment_url").or_else(|| text(v, "transaction_url")).filter(|u| !u.is_empty());
        let payment_uri = url.ok_or_else(|| unreadable("payment_url (or transaction_url)"))?;
        let team = whole(v, "team_id").ok_or_else(|| unreadable("team_id"))?;
        let template = whole(v, "template_id").ok_or_else(|| unreadable("template_id"))?;
        Ok(RemoteLink {
            id,
            payment_uri,
            amount: whole(v, "amount").ok_or_else(|| unreadable("amount"))?,
            currency: text(v, "currency").unwrap_or_default().to_ascii_lowercase(),
            title: text(v, "name").unwrap_or_default(),
            description: String::new(),
            multiple: flag(v, "multiple_usage"),
            deleted: false,
            team_template: Some((team, template)),
            metadata: None,
        })
    }

    /// The row key linkbatch put in the link's metadata (`[link] key_in_metadata`), if the answer carries it.
    pub fn key(&self) -> Option<&str> {
        self.metadata.as_ref()?.get(crate::request::KEY_IN_METADATA).map(String::as_str)
    }

    /// Whether this link is what `request` would have created.
    pub fn matches(&self, request: &LinkRequest) -> bool {
        if self.deleted {
            return false;
        }
        match request {
            LinkRequest::Classic(r) => {
                // Metadata counts when the server carries it back; when it does not, content alone decides.
                self.metadata.as_ref().is_none_or(|m| r.metadata.is_empty() || *m == r.metadata)
                    && self.amount == r.amount
                    && self.currency.eq_ignore_ascii_case(&r.currency)
                    && self.title == r.title
                    && self.description == r.description
                    && self.multiple == r.multiple
            }
            LinkRequest::Plus(r) => {
                self.amount == r.amount
                    && r.currency.as_ref().is_none_or(|c| self.currency.eq_ignore_ascii_case(c))
                    && self.title == r.name
                    && self.multiple == r.multiple_usage
                    && self.team_template == Some((r.team_id, r.template_id))
            }
        }
    }
}

/// One page of a link list.
#[derive(Debug, Clone)]
pub struct LinkPage {
    /// The links on this page.
    pub links: Vec<RemoteLink>,
    /// Links matching the query in all pages.
    pub total: usize,
}

/// Reads a list object of links. Every item must be readable: reconciliation that skipped one could miss
/// the very link it looks for, and send a second (docs/reference.md, "Exactly once").
pub fn link_page(api: ApiKind, v: &Value) -> Result<LinkPage, Unreadable> {
    let data = v.get("data").and_then(Value::as_array).ok_or_else(|| unreadable("data list"))?;
    let links = data
        .iter()
        .enumerate()
        .map(|(i, item)| RemoteLink::read(api, item).map_err(|e| unreadable(format!("{} of list item {i}", e.missing))))
        .collect::<Result<Vec<_>, _>>()?;
    let total =
        v.get("total").and_then(Value::as_u64).map_or(links.len(), |t| usize::try_from(t).unwrap_or(usize::MAX));
    Ok(LinkPage { links, total })
}

/// One charge of a link, as far as payment goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// `chrg_…`, when the answer gives it: what an event's charge is matched against.
    pub id: Option<String>,
    /// `status: successful` (older answers without a status: `paid: true`).
    pub successful: bool,
    /// Minor units charged.
    pub amount: u64,
    /// Minor units refunded (`refunded_amount`, or `refunded` in older answers).
    pub refunded: u64,
    /// When (`created_at`, or `created`).
    pub at: Option<String>,
}

/// A list of charges: the ones on this page, and how many there are in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Charges {
    /// The charges read.
    pub charges: Vec<Charge>,
    /// `total`: all of the link's charges, on every page.
    pub total: u64,
}

fn charge(v: &Value) -> Result<Charge, Unreadable> {
    let successful = match text(v, "status") {
        Some(status) => status == "successful",
        None => flag(v, "paid"),
    };
    Ok(Charge {
        id: text(v, "id"),
        successful,
        amount: v.get("amount").and_then(Value::as_u64).ok_or_else(|| unreadable("charge amount"))?,
        refunded: whole(v, "refunded_amount").or_else(|| whole(v, "refunded")).unwrap_or(0),
        at: text(v, "created_at").or_else(|| text(v, "created")),
    })
}

/// Reads a list object of charges (a link's embedded `charges`, or a page of `GET /links/{id}/charges`).
pub fn charges(v: &Value) -> Result<Charges, Unreadable> {
    let data = v.get("data").and_then(Value::as_array).ok_or_else(|| unreadable("charges data list"))?;
    let charges = data.iter().map(charge).collect::<Result<Vec<_>, _>>()?;
    let total = v.get("total").and_then(Value::as_u64).unwrap_or(charges.len() as u64);
    Ok(Charges { charges, total })
}

/// The payment state of a classic link from all of its charges: only successful charges count, and
/// refunded money is taken off what was paid.
fn paid(used: Option<bool>, currency: String, charges: &[Charge]) -> Payment {
    let paid: Vec<&Charge> = charges.iter().filter(|c| c.successful).collect();
    let gross: u64 = paid.iter().map(|c| c.amount).sum();
    let refunded: u64 = paid.iter().map(|c| c.refunded.min(c.amount)).sum();
    Payment {
        used,
        charges: paid.len() as u64,
        paid_amount: gross - refunded,
        refunded_amount: refunded,
        refunded_charges: paid.iter().filter(|c| c.refunded >= c.amount).count() as u64,
        currency,
        last_paid_at: paid.iter().filter_map(|c| c.at.clone()).max(),
        link_status: None,
    }
}

/// One link as far as payment goes, from a page of the list endpoint or a read by id.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// Its id (Links+ integer ids as text).
    pub id: String,
    /// Classic: its charges, the embedded first page and any read since; Links+: none.
    pub charges: Charges,
    /// What `[lifecycle]` judges by: when it was made, whether it is multiple-use, whether it is deleted.
    pub life: Life,
    of_link: OfLink,
}

/// What a classic link says of its own life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Life {
    /// `created_at` (older versions: `created`), in the server's time; `None` when absent or unreadable.
    pub created: Option<std::time::SystemTime>,
    /// `multiple`, when the answer says.
    pub multiple: Option<bool>,
    /// `deleted: true`, or a `deleted_at` time.
    pub deleted: bool,
}

impl Life {
    fn read(v: &Value) -> Life {
        let created = text(v, "created_at").or_else(|| text(v, "created"));
        Life {
            created: created.and_then(|t| humantime::parse_rfc3339_weak(&t).ok()),
            multiple: v.get("multiple").and_then(Value::as_bool),
            deleted: flag(v, "deleted") || v.get("deleted_at").is_some_and(Value::is_string),
        }
    }
}

/// What a payment state takes from the link itself.
#[derive(Debug, Clone, PartialEq)]
enum OfLink {
    Classic { used: Option<bool>, currency: String },
    Plus(Payment),
}

impl Listed {
    /// A link as an answer holds it (`GET /links/{id}`, or an item of a list page) under the id it has:
    /// classic links must embed their charges and name their currency.
    pub fn read(api: ApiKind, id: String, v: &Value) -> Result<Listed, Unreadable> {
        let life = Life::read(v);
        let (charges, of_link) = match api {
            ApiKind::Links => {
                let charges = charges(v.get("charges").ok_or_else(|| unreadable(format!("charges of {id}")))?)?;
                let currency = text(v, "currency").ok_or_else(|| unreadable(format!("currency of {id}")))?;
                let used = v.get("used").and_then(Value::as_bool);
                (charges, OfLink::Classic { used, currency: currency.to_ascii_lowercase() })
            }
            ApiKind::LinksPlus => (Charges::default(), OfLink::Plus(plus_payment(v))),
        };
        Ok(Listed { id, charges, life, of_link })
    }

    /// Whether the embedded charges are all of them (else their pages are read from `charges.len()`).
    pub fn complete(&self) -> bool {
        self.charges.charges.len() as u64 >= self.charges.total
    }

    /// The payment state from the charges read so far (all of them once [`Listed::complete`]).
    pub fn payment(&self) -> Payment {
        match &self.of_link {
            OfLink::Classic { used, currency } => paid(*used, currency.clone(), &self.charges.charges),
            OfLink::Plus(payment) => payment.clone(),
        }
    }
}

/// Reads a page of the list endpoint for `refresh`: every item's id and, classic, its embedded charges. An
/// item without them makes the page unreadable (its links are then read one by one).
pub fn payment_page(api: ApiKind, v: &Value) -> Result<(Vec<Listed>, usize), Unreadable> {
    let data = v.get("data").and_then(Value::as_array).ok_or_else(|| unreadable("data list"))?;
    let listed = data
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let id = match item.get("id") {
                Some(Value::String(id)) => id.clone(),
                Some(Value::Number(id)) if api == ApiKind::LinksPlus => id.to_string(),
                _ => return Err(unreadable(format!("id of list item {i}"))),
            };
            Listed::read(api, id, item)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let total =
        v.get("total").and_then(Value::as_u64).map_or(listed.len(), |t| usize::try_from(t).unwrap_or(usize::MAX));
    Ok((listed, total))
}

/// The payment state of a Links+ link (`status`, or `state` as third-party code reads it).
pub fn plus_payment(link: &Value) -> Payment {
    Payment {
        used: None,
        charges: whole(link, "payments").unwrap_or(0),
        paid_amount: whole(link, "paid_amount").unwrap_or(0),
        refunded_amount: 0,
        refunded_charges: 0,
        currency: text(link, "currency").unwrap_or_default().to_ascii_lowercase(),
        last_paid_at: None,
        link_status: text(link, "status").or_else(|| text(link, "state")),
    }
}

/// The Omise error object's code and message, when the body is one.
pub fn error_object(v: Option<&Value>) -> Option<(String, String)> {
    let v = v?;
    if v.get("object").and_then(Value::as_str) != Some("error") {
        return None;
    }
    Some((text(v, "code")?, text(v, "message").unwrap_or_default()))
}

/// A Links+ template: id, name and currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateInfo {
    /// Template id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its currency (links made from it default to it).
    pub currency: String,
}

/// Reads `GET /external/{team_id}/templates`: a list of templates, every one readable.
pub fn templates(v: &Value) -> Result<Vec<TemplateInfo>, Unreadable> {
    let data = v.get("data").and_then(Value::as_array).ok_or_else(|| unreadable("data list"))?;
    data.iter()
        .enumerate()
        .map(|(i, t)| {
            Ok(TemplateInfo {
                id: whole(t, "id").ok_or_else(|| unreadable(format!("id of template {i}")))?,
                name: text(t, "name").unwrap_or_default(),
                currency: text(t, "currency").unwrap_or_default().to_ascii_lowercase(),
            })
        })
        .collect()
}

/// A Links+ template's team (`GET /external/templates/{id}`).
pub fn template_team(v: &Value) -> Result<u64, Unreadable> {
    whole(v, "team_id").ok_or_else(|| unreadable("team_id"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn links_plus_reads_either_spelling_and_either_id() {
        let documented = json!({"id": 7, "name": "VIP", "amount": 100000, "currency": "thb", "status": "active",
            "payment_url": "https://pay.example/7", "multiple_usage": true, "template_id": 123, "team_id": 456});
        let variant = json!({"id": "7", "name": "VIP", "amount": "100000", "currency": "THB", "state": "active",
            "transaction_url": "https://pay.example/7", "multiple_usage": true, "template_id": "123", "team_id": 456});
        let (a, b) =
            (RemoteLink::read(ApiKind::LinksPlus, &documented), RemoteLink::read(ApiKind::LinksPlus, &variant));
        assert_eq!(a, b);
        assert_eq!(plus_payment(&variant).link_status.as_deref(), Some("active"));
        let neither = json!({"id": 7, "amount": 1, "team_id": 1, "template_id": 1, "url": "https://pay.example/7"});
        assert_eq!(
            RemoteLink::read(ApiKind::LinksPlus, &neither).unwrap_err().missing,
            "payment_url (or transaction_url)"
        );
        let float_id = json!({"id": 7.5, "payment_url": "u", "amount": 1, "team_id": 1, "template_id": 1});
        assert_eq!(RemoteLink::read(ApiKind::LinksPlus, &float_id).unwrap_err().missing, "id");
    }

    #[test]
    fn a_list_with_one_unreadable_item_is_unreadable() {
        let page = json!({"object": "list", "total": 2, "data": [
            {"id": "link_1", "payment_uri": "u", "amount": 1, "currency": "thb"},
            {"id": "link_2", "amount": 1, "currency": "thb"}]});
        assert_eq!(link_page(ApiKind::Links, &page).unwrap_err().missing, "payment_uri of list item 1");
    }

    #[test]
    fn only_successful_charges_pay_and_refunds_come_off() {
        let mut link = json!({"currency": "THB", "used": false});
        let list = json!({"total": 3, "data": [
            {"amount": 1000, "status": "successful", "refunded_amount": 400, "created_at": "2026-01-02T00:00:00Z"},
            {"amount": 1000, "status": "failed"},
            {"amount": 500, "paid": true, "refunded": 0, "created": "2016-10-18T06:56:51Z"}]});
        link["charges"] = list;
        let payment = Listed::read(ApiKind::Links, "link_1".into(), &link).unwrap().payment();
        assert_eq!((payment.charges, payment.paid_amount, payment.refunded_amount), (2, 1100, 400));
        assert_eq!((payment.currency.as_str(), payment.last_paid_at.as_deref()), ("thb", Some("2026-01-02T00:00:00Z")));
    }

    #[test]
    fn a_link_says_when_it_was_made_whether_it_is_multiple_and_deleted() {
        let current = json!({"created_at": "2019-05-29T08:25:16Z", "multiple": true, "deleted": false});
        let life = Life::read(&current);
        assert_eq!(life.created, Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_559_118_316)));
        assert_eq!((life.multiple, life.deleted), (Some(true), false));
        let recorded = json!({"created_at": "2025-01-02T03:04:05Z", "deleted_at": "2025-02-01T00:00:00Z"});
        assert!(Life::read(&recorded).deleted);
        let legacy = json!({"created": "2016-10-18T06:56:51Z"});
        assert!(Life::read(&legacy).created.is_some());
        assert_eq!(Life::read(&json!({"created_at": "soon"})).created, None);
    }
}
