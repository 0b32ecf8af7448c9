//! The classic Links API's links in the sandbox: create, retrieve, list and delete, shaped as Omise answers.
//! Pure data and validation, like the rest of the store: no I/O, no clock of its own.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::{
    ApiFault, ClassicLink, EMBEDDED_CHARGES, ListQuery, MAX_DESCRIPTION, MAX_TITLE, Profile, Store, boolean,
    charges_json, classic_payment_uri, currency, currency_shape, integer, iso, require_all, text,
};

/// `metadata` as a JSON object, or `metadata[name]` form fields; values are text.
fn metadata(fields: &Map<String, Value>) -> Result<Map<String, Value>, ApiFault> {
    let mut found = Map::new();
    if let Some(object) = fields.get("metadata") {
        let Value::Object(object) = object else {
            return Err(ApiFault::bad_request("metadata must be an object"));
        };
        found.extend(object.clone());
    }
    for (name, value) in fields {
        if let Some(key) = name.strip_prefix("metadata[").and_then(|k| k.strip_suffix(']')) {
            found.insert(key.to_owned(), value.clone());
        }
    }
    Ok(found)
}

impl Store {
    /// A link object in `profile`'s shape (the recordings in `tests/fixtures/omise/`).
    pub(super) fn classic_json(&self, live: bool, link: &ClassicLink, profile: Profile, now: SystemTime) -> Value {
        let location = format!("/links/{}", link.id);
        let used = !link.multiple && !link.charges.is_empty();
        let mut body = json!({
            "object": "link",
            "id": link.id,
            "livemode": live,
            "location": location,
            "amount": link.amount,
            "currency": currency_shape(link.currency, profile),
            "used": used,
            "multiple": link.multiple,
            "title": link.title,
            "description": link.description,
            "charges": charges_json(&link.id, &link.charges, profile, (0, EMBEDDED_CHARGES), now),
            "payment_uri": classic_payment_uri(&self.base_url, &link.id),
        });
        if profile != Profile::Legacy {
            // The Links guide's metadata (the Links guide); the older version answers without it.
            body["metadata"] = Value::Object(link.metadata.clone());
        }
        match profile {
            Profile::Legacy => body["created"] = Value::String(iso(link.created)),
            Profile::Current | Profile::PlusVariant => {
                body["deleted"] = json!(link.deleted);
                body["created_at"] = Value::String(iso(link.created));
            }
            Profile::Recorded2025 => {
                body["deleted"] = json!(link.deleted);
                body["created_at"] = Value::String(iso(link.created));
                body["used_at"] = json!(link.charges.first().filter(|_| used).map(|c| iso(c.created)));
                body["deleted_at"] = json!(link.deleted_at.map(iso));
            }
        }
        body
    }

    /// `PATCH /links/{id}` as the Links guide has it (the Links guide): `description` and `metadata` change; any other
    /// field is a 400.
    pub(crate) fn update_classic(
        &mut self,
        key: &str,
        id: &str,
        fields: &Map<String, Value>,
        now: SystemTime,
    ) -> Result<Value, ApiFault> {
        let other: Vec<&str> = fields
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "description" && *k != "metadata" && !k.starts_with("metadata["))
            .collect();
        if !other.is_empty() {
            return Err(ApiFault::bad_request(format!(
                "only description and metadata can be changed, not {}",
                other.join(", ")
            )));
        }
        let description = text(fields, "description")?;
        if description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
            return Err(ApiFault::bad_request(format!(
                "description is too long (maximum is {MAX_DESCRIPTION} characters)"
            )));
        }
        let metadata = metadata(fields)?;
        let index = *self.account(key).by_id.get(id).ok_or_else(|| ApiFault::not_found("link"))?;
        let answer = self.change_classic(key, index, now, |link| {
            if link.deleted {
                return Err(ApiFault::not_found("link"));
            }
            if let Some(description) = description {
                link.description = description;
            }
            link.metadata.extend(metadata);
            Ok(())
        })?;
        self.counters.updates += 1;
        Ok(answer)
    }

    /// Changes the key's classic link at `index` with `change`, and answers it as it now is.
    fn change_classic(
        &mut self,
        key: &str,
        index: usize,
        now: SystemTime,
        change: impl FnOnce(&mut ClassicLink) -> Result<(), ApiFault>,
    ) -> Result<Value, ApiFault> {
        let profile = self.profile;
        let account = self.account(key);
        let live = account.live;
        change(&mut account.links[index])?;
        let link = account.links[index].clone();
        Ok(self.classic_json(live, &link, profile, now))
    }

    /// `GET /links/{id}/charges`: a page of the link's charges.
    pub(crate) fn link_charges(
        &mut self,
        key: &str,
        id: &str,
        query: &ListQuery,
        now: SystemTime,
    ) -> Result<Value, ApiFault> {
        let profile = self.profile;
        let account = self.account(key);
        let link = account.by_id.get(id).map(|&i| &account.links[i]).ok_or_else(|| ApiFault::not_found("link"))?;
        Ok(charges_json(&link.id, &link.charges, profile, (query.offset, query.limit), now))
    }

    /// `POST /__sandbox/links/{id}/refund`: the latest charge not yet refunded is refunded in full.
    pub(crate) fn refund(&mut self, id: &str, now: SystemTime) -> Result<Value, ApiFault> {
        let (key, index) = self
            .accounts
            .iter()
            .find_map(|(key, account)| account.by_id.get(id).map(|&i| (key.clone(), i)))
            .ok_or_else(|| ApiFault::not_found("link"))?;
        let answer = self.change_classic(&key, index, now, |link| {
            let charge = link
                .charges
                .iter_mut()
                .rev()
                .find(|c| c.refunded == 0)
                .ok_or_else(|| ApiFault::new(400, "failed_refund", "the link has no charge left to refund"))?;
            charge.refunded = charge.amount;
            Ok(())
        })?;
        self.counters.refunds += 1;
        Ok(answer)
    }

    /// `POST /links`: validates every field, then stores the link.
    pub(crate) fn create_classic(
        &mut self,
        key: &str,
        fields: &Map<String, Value>,
        profile: Profile,
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
        self.check_cap(key)?;
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
            delete_requests: 0,
            deleted_at: None,
            charges: Vec::new(),
            created: now,
            metadata: metadata(fields)?,
        };
        let body = self.classic_json(live, &link, profile, now);
        let account = self.account(key);
        account.by_id.insert(id, account.links.len());
        account.links.push(link);
        self.counters.creates += 1;
        self.emit(key, "link.create", body.clone(), now);
        Ok(body)
    }

    /// `GET /links/{id}`.
    pub(crate) fn get_classic(
        &mut self,
        key: &str,
        id: &str,
        profile: Profile,
        now: SystemTime,
    ) -> Result<Value, ApiFault> {
        let account = self.account(key);
        let live = account.live;
        let link =
            account.by_id.get(id).map(|&i| account.links[i].clone()).ok_or_else(|| ApiFault::not_found("link"))?;
        Ok(self.classic_json(live, &link, profile, now))
    }

    /// `DELETE /links/{id}`: marks the link deleted; it leaves the list and can no longer be paid. Older
    /// versions answer `{object, id, livemode, deleted}`; newer ones the whole link.
    pub(crate) fn delete_classic(
        &mut self,
        key: &str,
        id: &str,
        profile: Profile,
        now: SystemTime,
    ) -> Result<Value, ApiFault> {
        let account = self.account(key);
        let index = *account.by_id.get(id).ok_or_else(|| ApiFault::not_found("link"))?;
        account.links[index].delete_requests += 1;
        if account.links[index].deleted {
            return Err(ApiFault::not_found("link"));
        }
        account.links[index].deleted = true;
        account.links[index].deleted_at = Some(now);
        let live = account.live;
        if profile == Profile::Legacy {
            return Ok(json!({"object": "link", "id": id, "livemode": live, "deleted": true}));
        }
        let link = account.links[index].clone();
        Ok(self.classic_json(live, &link, profile, now))
    }

    /// `GET /links`: the Omise list object over the key's links that are not deleted.
    pub(crate) fn list_classic(&mut self, key: &str, query: &ListQuery, profile: Profile, now: SystemTime) -> Value {
        let account = self.account(key);
        let live = account.live;
        let links: Vec<ClassicLink> = account.links.iter().filter(|l| !l.deleted).cloned().collect();
        let (total, page) = query.page(links.iter(), |l| l.created);
        let data = page.into_iter().map(|l| self.classic_json(live, l, profile, now)).collect();
        query.envelope("/links", total, data, now)
    }
}
