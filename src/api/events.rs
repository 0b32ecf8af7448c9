//! Omise's Event object, as `GET /events` lists it and a webhook posts it: what linkbatch reads of one.
//! A webhook is a hint, never the truth: what an event says of a charge only tells which link to read
//! again from the API; nothing in it is recorded as a payment.

use serde_json::Value;

use super::shape::Unreadable;

/// What an event says, as far as linkbatch acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    /// `evnt_…`: acted on once, however often it is posted.
    pub id: String,
    /// `charge.create`, `charge.complete`, `link.create`, …
    pub key: String,
    /// For a `charge.*` event whose charge was made through a link: the charge.
    pub charge: Option<ChargeHint>,
}

/// A charge an event names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeHint {
    /// `chrg_…`.
    pub id: String,
    /// The link it was made through.
    pub link: String,
    /// Whether the event says it succeeded (`status: successful`).
    pub successful: bool,
}

/// A page of `GET /events`: each event's hint and time, and how many events match in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// The events on this page, oldest first, each with its `created_at` (older versions: `created`).
    pub events: Vec<(Hint, Option<std::time::SystemTime>)>,
    /// `total`.
    pub total: usize,
}

/// Reads a list of events; an event on it that cannot be read makes the page unreadable (never skipped).
pub fn page(v: &Value) -> Result<Page, Unreadable> {
    let data =
        v.get("data").and_then(Value::as_array).ok_or_else(|| Unreadable { missing: "events data list".into() })?;
    let mut events = Vec::with_capacity(data.len());
    for event in data {
        let at = event.get("created_at").or_else(|| event.get("created")).and_then(Value::as_str);
        events.push((hint(event)?, at.and_then(|t| humantime::parse_rfc3339_weak(t).ok())));
    }
    let total =
        v.get("total").and_then(Value::as_u64).map_or(events.len(), |t| usize::try_from(t).unwrap_or(usize::MAX));
    Ok(Page { events, total })
}

/// Reads an event object; an event with no id or key cannot be acted on once, and is unreadable.
pub fn hint(v: &Value) -> Result<Hint, Unreadable> {
    let text = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
    let unreadable = |missing: &str| Unreadable { missing: missing.to_owned() };
    if v.get("object").and_then(Value::as_str) != Some("event") {
        return Err(unreadable("object: event"));
    }
    let id = text(v, "id").filter(|id| !id.is_empty()).ok_or_else(|| unreadable("event id"))?;
    let key = text(v, "key").ok_or_else(|| unreadable("event key"))?;
    let data = v.get("data").unwrap_or(&Value::Null);
    let charge = if key.starts_with("charge.") && data.get("object").and_then(Value::as_str) == Some("charge") {
        // The charge object's `link`; the Links guide shows it as the charge's source instead.
        let source = data.get("source").filter(|s| s.get("type").and_then(Value::as_str) == Some("link"));
        let link = text(data, "link").or_else(|| source.and_then(|s| text(s, "id"))).filter(|l| !l.is_empty());
        match (text(data, "id"), link) {
            (Some(id), Some(link)) => {
                Some(ChargeHint { id, link, successful: text(data, "status").as_deref() == Some("successful") })
            }
            _ => None,
        }
    } else {
        None
    };
    Ok(Hint { id, key, charge })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_charge_made_through_a_link_names_it() {
        let event = json!({"object": "event", "id": "evnt_test_1", "key": "charge.complete", "data": {
            "object": "charge", "id": "chrg_test_1", "status": "successful", "link": "link_test_1"}});
        let charge = ChargeHint { id: "chrg_test_1".into(), link: "link_test_1".into(), successful: true };
        assert_eq!(hint(&event).unwrap().charge, Some(charge));
    }

    #[test]
    fn a_link_as_the_charges_source_names_it_too() {
        let event = json!({"object": "event", "id": "evnt_test_1", "key": "charge.complete", "data": {
            "object": "charge", "id": "chrg_test_1", "status": "successful", "source": {"type": "link", "id": "link_test_9"}}});
        assert_eq!(hint(&event).unwrap().charge.map(|c| c.link), Some("link_test_9".to_owned()));
    }

    #[test]
    fn other_events_name_no_charge_and_a_bodyless_one_is_unreadable() {
        let card = json!({"object": "event", "id": "evnt_2", "key": "charge.create",
            "data": {"object": "charge", "id": "chrg_2", "status": "pending", "link": null}});
        assert_eq!(hint(&card).unwrap().charge, None, "a charge made without a link");
        let link = json!({"object": "event", "id": "evnt_3", "key": "link.create", "data": {"object": "link"}});
        assert_eq!(hint(&link).unwrap(), Hint { id: "evnt_3".into(), key: "link.create".into(), charge: None });
        assert_eq!(hint(&json!({"object": "event", "key": "charge.create"})).unwrap_err().missing, "event id");
        assert_eq!(hint(&json!({"id": "x"})).unwrap_err().missing, "object: event");
    }
}
