//! Payment Links+ in the sandbox: teams, templates, and links created, retrieved and listed as Omise's
//! Payment Links+ documentation describes them (docs/reference.md, "What Omise documents"). Pure data and validation, like the rest of the store: no I/O, no clock of its own.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::sandbox::rules::{MAX_PLUS_NAME, MIN_PLUS_AMOUNT, webhook_accepted};

use super::{
    ApiFault, ListQuery, PlusLink, Profile, Store, Team, Template, boolean, currency, integer, iso, require_all, text,
};

impl Store {
    fn team(&self, team_id: u64) -> Result<&Team, ApiFault> {
        self.teams.iter().find(|t| t.id == team_id).ok_or_else(|| ApiFault::not_found(&format!("team {team_id}")))
    }

    fn template(&self, template_id: u64) -> Result<(&Team, &Template), ApiFault> {
        self.teams
            .iter()
            .find_map(|team| team.templates.iter().find(|t| t.id == template_id).map(|t| (team, t)))
            .ok_or_else(|| ApiFault::not_found(&format!("template {template_id}")))
    }

    fn template_json(team: &Team, template: &Template) -> Value {
        json!({
            "id": template.id,
            "name": template.name,
            "team_id": team.id,
            "currency": template.currency,
        })
    }

    /// A Links+ link as Omise's documentation shows it, or (`Profile::PlusVariant`) as third-party code reads it:
    /// `transaction_url` and `state`, the id as a string.
    pub(super) fn plus_json(&self, link: &PlusLink) -> Value {
        let used = !link.multiple_usage && !link.charges.is_empty();
        let variant = self.profile == Profile::PlusVariant;
        let (url, status) = if variant { ("transaction_url", "state") } else { ("payment_url", "status") };
        let mut body = json!({
            "id": if variant { json!(link.id.to_string()) } else { json!(link.id) },
            "name": link.name,
            "amount": link.amount,
            "currency": link.currency,
            status: if used { "paid" } else { "active" },
            url: format!("{}/pay/plus/{}", self.base_url, link.id),
            "multiple_usage": link.multiple_usage,
            "created_at": iso(link.created),
            "template_id": link.template_id,
            "team_id": link.team_id,
            "payments": link.charges.len(),
            "paid_amount": link.charges.iter().map(|c| c.amount).sum::<u64>(),
        });
        if let Some(hook) = &link.custom_webhook {
            body["custom_webhook"] = Value::String(hook.clone());
        }
        body
    }

    /// `POST /external/links`.
    pub(crate) fn create_plus(
        &mut self,
        key: &str,
        fields: &Map<String, Value>,
        now: SystemTime,
    ) -> Result<Value, ApiFault> {
        let template_id = integer(fields, "template_id", "bad_request")?;
        let team_id = integer(fields, "team_id", "bad_request")?;
        let name = text(fields, "name")?;
        let amount = integer(fields, "amount", "invalid_amount")?;
        let mut missing = Vec::new();
        for (field, present) in [
            ("template_id", template_id.is_some()),
            ("team_id", team_id.is_some()),
            ("name", name.is_some()),
            ("amount", amount.is_some()),
        ] {
            if !present {
                missing.push(field);
            }
        }
        require_all(missing)?;
        // Proven just above: each of these is Some.
        let (template_id, team_id, name, amount) =
            (template_id.unwrap_or(0), team_id.unwrap_or(0), name.unwrap_or_default(), amount.unwrap_or(0));
        if name.chars().count() > MAX_PLUS_NAME {
            return Err(ApiFault::bad_request(format!("name is too long (maximum is {MAX_PLUS_NAME} characters)")));
        }
        if amount < MIN_PLUS_AMOUNT {
            return Err(ApiFault::new(400, "invalid_amount", format!("amount must be at least {MIN_PLUS_AMOUNT}")));
        }
        let custom_webhook = text(fields, "custom_webhook")?;
        if let Some(hook) = &custom_webhook
            && !webhook_accepted(hook)
        {
            return Err(ApiFault::bad_request(format!("custom_webhook `{hook}` must be an https:// URL with a host")));
        }
        self.check_cap(key)?;
        self.team(team_id)?;
        let (owner, template) = self.template(template_id)?;
        if owner.id != team_id {
            return Err(ApiFault::not_found(&format!("template {template_id} in team {team_id}")));
        }
        let currency = currency(&text(fields, "currency")?.unwrap_or_else(|| template.currency.clone()))?;
        let multiple_usage = boolean(fields, "multiple_usage")?;
        let id = self.next_plus_id;
        self.next_plus_id += 1;
        let link = PlusLink {
            id,
            team_id,
            template_id,
            name,
            amount,
            currency,
            multiple_usage,
            custom_webhook,
            charges: Vec::new(),
            created: now,
        };
        let body = self.plus_json(&link);
        self.account(key).plus.push(link);
        self.counters.creates += 1;
        Ok(body)
    }

    pub(super) fn plus_link(&mut self, key: &str, id: &str) -> Result<&mut PlusLink, ApiFault> {
        let id: u64 = id.parse().map_err(|_| ApiFault::not_found("link"))?;
        self.account(key).plus.iter_mut().find(|l| l.id == id).ok_or_else(|| ApiFault::not_found("link"))
    }

    /// `GET /external/links/{id}`.
    pub(crate) fn get_plus(&mut self, key: &str, id: &str) -> Result<Value, ApiFault> {
        let link = self.plus_link(key, id)?.clone();
        Ok(self.plus_json(&link))
    }

    /// `GET /external/{team_id}/links`.
    pub(crate) fn list_plus(
        &mut self,
        key: &str,
        team_id: &str,
        query: &ListQuery,
        now: SystemTime,
    ) -> Result<Value, ApiFault> {
        let team_id: u64 = team_id.parse().map_err(|_| ApiFault::not_found("team"))?;
        self.team(team_id)?;
        let links: Vec<PlusLink> = self.account(key).plus.iter().filter(|l| l.team_id == team_id).cloned().collect();
        let (total, page) = query.page(links.iter(), |l| l.created);
        let data = page.into_iter().map(|l| self.plus_json(l)).collect();
        Ok(query.envelope(&format!("/external/{team_id}/links"), total, data, now))
    }

    /// `GET /external/templates/{id}`.
    pub(crate) fn get_template(&self, id: &str) -> Result<Value, ApiFault> {
        let id: u64 = id.parse().map_err(|_| ApiFault::not_found("template"))?;
        let (team, template) = self.template(id)?;
        Ok(Self::template_json(team, template))
    }

    /// `GET /external/{team_id}/templates`.
    pub(crate) fn list_templates(&self, team_id: &str) -> Result<Value, ApiFault> {
        let team_id: u64 = team_id.parse().map_err(|_| ApiFault::not_found("team"))?;
        let team = self.team(team_id)?;
        let data: Vec<Value> = team.templates.iter().map(|t| Self::template_json(team, t)).collect();
        Ok(json!({ "object": "list", "total": data.len(), "data": data }))
    }
}
