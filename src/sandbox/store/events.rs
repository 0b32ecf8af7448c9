//! The sandbox's Events API: what happened to an account's links, as Omise lists it (`GET /events`,
//! `GET /events/{id}`) and posts it to webhooks. `link.create` for each classic link; `charge.create`, then
//! `charge.complete`, for each payment through `/__sandbox/links/{id}/pay`, the charge naming its link.
//! Event ids are numbered by the store, never drawn from its seeded source, so a seed's link ids stay the
//! same whether events are read or not. Pure data, like the rest of the store.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::{ApiFault, ListQuery, Profile, Store, iso};

/// One event as the account's list holds it.
#[derive(Debug, Clone)]
pub(super) struct Recorded {
    id: String,
    key: &'static str,
    created: SystemTime,
    live: bool,
    /// The object it is about, as it was then.
    data: Value,
}

impl Recorded {
    /// The event object in `profile`'s shape (older versions: `created`; later: `created_at`).
    fn json(&self, profile: Profile) -> Value {
        let mut event = json!({
            "object": "event",
            "id": self.id,
            "livemode": self.live,
            "location": format!("/events/{}", self.id),
            "key": self.key,
            "webhook_deliveries": [],
            "data": self.data,
        });
        let created = if profile == Profile::Legacy { "created" } else { "created_at" };
        event[created] = Value::String(iso(self.created));
        event
    }
}

impl Store {
    /// Records an event of `key`'s account and hands it to the webhooks, if any listen.
    pub(super) fn emit(&mut self, key: &str, kind: &'static str, data: Value, now: SystemTime) {
        self.next_event += 1;
        let live = self.account(key).live;
        let id = format!("evnt_{}{:019}", if live { "" } else { "test_" }, self.next_event);
        let event = Recorded { id, key: kind, created: now, live, data };
        if let Some(outbox) = &self.outbox {
            // A webhook sender that has gone (the sandbox shutting down) misses nothing a test can see.
            let _ = outbox.send(event.json(self.profile));
        }
        self.account(key).events.push(event);
    }

    /// `GET /events`: the account's events, oldest first unless asked otherwise.
    pub(crate) fn list_events(&mut self, key: &str, query: &ListQuery, profile: Profile, now: SystemTime) -> Value {
        let events = &self.account(key).events;
        let (total, page) = query.page(events.iter(), |e| e.created);
        let data = page.into_iter().map(|e| e.json(profile)).collect();
        query.envelope("/events", total, data, now)
    }

    /// `GET /events/{id}`.
    pub(crate) fn get_event(&mut self, key: &str, id: &str, profile: Profile) -> Result<Value, ApiFault> {
        let events = &self.account(key).events;
        events.iter().find(|e| e.id == id).map(|e| e.json(profile)).ok_or_else(|| ApiFault::not_found("event"))
    }

    /// Where each new event is sent as it happens (the webhook sender's queue).
    pub(crate) fn set_outbox(&mut self, outbox: tokio::sync::mpsc::UnboundedSender<Value>) {
        self.outbox = Some(outbox);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use serde_json::{Map, json};

    use super::*;

    #[test]
    fn a_link_and_its_payment_are_three_events_in_order_the_charge_naming_its_link() {
        let mut store = Store::new(Vec::new(), Vec::new(), rand::rngs::StdRng::seed_from_u64(1));
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_hours(500_000);
        let fields: Map<String, Value> = serde_json::from_value(
            json!({"amount": 1000, "currency": "thb", "title": "T", "description": "D", "multiple": true}),
        )
        .unwrap();
        let link = store.create_classic("skey_test_a", &fields, Profile::Current, now).unwrap();
        let id = link["id"].as_str().unwrap().to_owned();
        store.pay(&id, now).unwrap();
        let query = ListQuery::parse(&[]).unwrap();
        let list = store.list_events("skey_test_a", &query, Profile::Current, now);
        let keys: Vec<&str> = list["data"].as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["link.create", "charge.create", "charge.complete"]);
        assert_eq!(list["data"][2]["data"]["link"], json!(id));
        assert_eq!(list["data"][2]["data"]["status"], json!("successful"));
        let first = list["data"][0]["id"].as_str().unwrap();
        assert_eq!(store.get_event("skey_test_a", first, Profile::Current).unwrap()["key"], json!("link.create"));
        assert_eq!(
            store.get_event("skey_test_b", first, Profile::Current).unwrap_err().status,
            404,
            "another account's"
        );
    }
}
