//! The classic Links API's links in the sandbox: create, retrieve, list and delete, shaped as Omise answers.
//! Pure data and validation, like the rest of the store: no I/O, no clock of its own.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::{
    ApiFault, ClassicLink, ListQuery, MAX_DESCRIPTION, MAX_TITLE, Store, boolean, charges_json, classic_payment_uri,
    currency, integer, iso, require_all, text,
};

impl Store {
    pub(super) fn classic_json(&self, live: bool, link: &ClassicLink, legacy_created: bool, now: SystemTime) -> Value {
        let location = format!("/links/{}", link.id);
        let mut body = json!({
            "object": "link",
            "id": link.id,
            "livemode": live,
            "location": location,
            "amount": link.amount,
            "currency": link.currency,
            "used": !link.multiple && !link.charges.is_empty(),
            "multiple": link.multiple,
            "title": link.title,
            "description": link.description,
            "charges": charges_json(&location, &link.charges, now),
            "payment_uri": classic_payment_uri(&self.base_url, &link.id),
            "deleted": link.deleted,
        });
        let created_field = if legacy_created { "created" } else { "created_at" };
        body[created_field] = Value::String(iso(link.created));
        body
    }

    /// `POST /links`: validates every field, then stores the link.
    pub(crate) fn create_classic(
        &mut self,
        key: &str,
        fields: &Map<String, Value>,
        legacy: bool,
        now: SystemTime,
    ) -> Result<Value, ApiFault> {
        let amount = integer(fields, "amount", "invalid_amount")?;
        let currency_code = text(fields, "currency")?;
        let title = text(fields, "title")?;
        let description = text(fields, "description")?;
        let mut missing = Vec::new();
        for (name, present) in [
            ("amount", amount.is_some()),
            ("currency", currency_code.is_some()),
            ("title", title.is_some()),
            ("description", description.is_some()),
        ] {
            if !present {
                missing.push(name);
            }
        }
        require_all(missing)?;
        // Proven just above: each of these is Some.
        let (amount, title, description) =
            (amount.unwrap_or(0), title.unwrap_or_default(), description.unwrap_or_default());
        let currency = currency(&currency_code.unwrap_or_default())?;
        if title.chars().count() > MAX_TITLE {
            return Err(ApiFault::bad_request(format!("title is too long (maximum is {MAX_TITLE} characters)")));
        }
        if description.chars().count() > MAX_DESCRIPTION {
            return Err(ApiFault::bad_request(format!(
                "description is too long (maximum is {MAX_DESCRIPTION} characters)"
            )));
        }
        let multiple = boolean(fields, "multiple")?;
        let live = self.account(key).live;
        let id = loop {
            let id = self.new_id("link", live);
            if !self.account(key).by_id.contains_key(&id) {
                break id;
            }
        };
        let link = ClassicLink {
            id: id.clone(),
            amount,
            currency,
            title,
            description,
            multiple,
            deleted: false,
            charges: Vec::new(),
            created: now,
        };
        let body = self.classic_json(live, &link, legacy, now);
        let account = self.account(key);
        account.by_id.insert(id, account.links.len());
        account.links.push(link);
        self.counters.creates += 1;
        Ok(body)
    }

    /// `GET /links/{id}`.
    pub(crate) fn get_classic(
        &mut self,
        key: &str,
        id: &str,
        legacy: bool,
        now: SystemTime,
    ) -> Result<Value, ApiFault> {
        let account = self.account(key);
        let live = account.live;
        let link =
            account.by_id.get(id).map(|&i| account.links[i].clone()).ok_or_else(|| ApiFault::not_found("link"))?;
        Ok(self.classic_json(live, &link, legacy, now))
    }

    /// `DELETE /links/{id}`: marks the link deleted; it leaves the list and can no longer be paid.
    pub(crate) fn delete_classic(
        &mut self,
        key: &str,
        id: &str,
        legacy: bool,
        now: SystemTime,
    ) -> Result<Value, ApiFault> {
        let account = self.account(key);
        let index = *account.by_id.get(id).ok_or_else(|| ApiFault::not_found("link"))?;
        if account.links[index].deleted {
            return Err(ApiFault::not_found("link"));
        }
        account.links[index].deleted = true;
        let live = account.live;
        let link = account.links[index].clone();
        Ok(self.classic_json(live, &link, legacy, now))
    }

    /// `GET /links`: the Omise list object over the key's links that are not deleted.
    pub(crate) fn list_classic(&mut self, key: &str, query: &ListQuery, legacy: bool, now: SystemTime) -> Value {
        let account = self.account(key);
        let live = account.live;
        let links: Vec<ClassicLink> = account.links.iter().filter(|l| !l.deleted).cloned().collect();
        let (total, page) = query.page(links.iter(), |l| l.created);
        let data = page.into_iter().map(|l| self.classic_json(live, l, legacy, now)).collect();
        query.envelope("/links", total, data, now)
    }
}
