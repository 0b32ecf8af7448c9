//! One input record turned into a [`PlannedRow`] (key, request, extra cells), or a [`RowError`] naming the
//! line and field; and the [`KeyGuard`] that finds repeated keys. Never touches the ledger or the network.

use std::collections::{BTreeMap, HashSet};

use super::{
    AmountReadings, FieldSource, LinkTemplates, MAX_DESCRIPTION, MAX_PLUS_NAME, MAX_TITLE, MIN_PLUS_AMOUNT, Plan,
    check_webhook,
};
use crate::digest::{BuildDigestHasher, Digest};
use crate::input::Record;
use crate::money::{AmountUnit, Currency, parse_amount};
use crate::request::{ClassicRequest, KEY_IN_METADATA, LinkRequest, PlusRequest};
use crate::row_key::RowKey;
use crate::template::Template;

/// A row ready to send.
#[derive(Debug, Clone)]
pub struct PlannedRow {
    /// Input line.
    pub line: u64,
    /// The row key (and its identity in the ledger index).
    pub key: RowKey,
    /// What to create.
    pub request: LinkRequest,
    /// `request.fingerprint()`, computed the first time it is asked for: on the thread that compares it with
    /// the ledger, not on the one planning rows (a resume is paced by whichever thread is busier).
    fingerprint: std::sync::OnceLock<Digest>,
    /// Values of the output's extra columns.
    pub extra: Vec<String>,
    /// Values of the columns `[deliver]`'s templates name ([`Plan::mail_value`] reads them).
    pub mail: Vec<String>,
    /// `[lifecycle] capacity`, rendered: the multiple-use link's places.
    pub capacity: Option<u64>,
}

impl PlannedRow {
    /// A row with its key and request (its fingerprint is computed when first asked for).
    pub fn new(line: u64, key: String, request: LinkRequest, extra: Vec<String>) -> PlannedRow {
        let key = RowKey::new(key);
        PlannedRow {
            line,
            key,
            request,
            fingerprint: std::sync::OnceLock::new(),
            extra,
            mail: Vec::new(),
            capacity: None,
        }
    }

    /// The request's fingerprint ([`LinkRequest::fingerprint`]), computed once.
    pub fn fingerprint(&self) -> Digest {
        *self.fingerprint.get_or_init(|| self.request.fingerprint())
    }
}

/// A row that cannot be sent, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Input line.
    pub line: u64,
    /// The key, when it could be rendered.
    pub key: Option<String>,
    /// The field at fault (`amount`, `title`, `input`…).
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
    /// Values of the output's extra columns, when the row could be read.
    pub extra: Vec<String>,
}

/// One record being rendered: its cells and the run's variables, the key once known, and the row's extra
/// cells (kept in every error, so a rejected row still shows them).
struct Cells<'a> {
    plan: &'a Plan,
    record: &'a Record,
    key: Option<&'a str>,
    extra: &'a [String],
}

impl<'a> Cells<'a> {
    fn lookup(&self, name: &str) -> Option<&'a str> {
        let (plan, record) = (self.plan, self.record);
        match plan.columns.iter().position(|c| c == name) {
            Some(i) => record.cells[i].as_deref().filter(|v| !v.trim().is_empty()),
            None => plan.vars.get(name).map(String::as_str),
        }
    }

    fn fail(&self, field: &'static str, reason: String) -> RowError {
        let key = self.key.map(str::to_owned);
        RowError { line: self.record.line, key, field, reason, extra: self.extra.to_vec() }
    }

    /// Renders `t` into `out` (cleared first).
    fn render_into(&self, field: &'static str, t: &Template, out: &mut String) -> Result<(), RowError> {
        t.render_into(|name| self.lookup(name), out)
            .map_err(|name| self.fail(field, format!("no value for `{name}` (empty or missing)")))
    }

    fn render(&self, field: &'static str, t: &Template) -> Result<String, RowError> {
        let mut text = String::new();
        self.render_into(field, t, &mut text).map(|()| text)
    }

    fn currency(&self, t: &Template, code: &mut String) -> Result<Currency, RowError> {
        self.render_into("currency", t, code)?;
        Currency::find(code)
            .ok_or_else(|| self.fail("currency", format!("currency `{code}` is not supported ({})", Currency::list())))
    }

    fn amount(&self, currency: Currency, text: &mut String) -> Result<u64, RowError> {
        self.render_into("amount", &self.plan.amount, text)?;
        parse_amount(text, self.plan.amount_unit, currency).map_err(|e| {
            let at = self.place_of(&self.plan.amount).map(|cell| format!(" ({cell})")).unwrap_or_default();
            self.fail("amount", format!("{e}{at}"))
        })
    }

    /// The spreadsheet cell a field comes from (`Products!C7`), when it is one column's cell as it stands.
    fn place_of(&self, template: &Template) -> Option<String> {
        let places = self.plan.places.as_ref()?;
        let mut names = template.placeholders();
        let (Some(column), None) = (names.next(), names.next()) else { return None };
        (template.to_string() == format!("{{{column}}}")).then(|| places.of(column, self.record.line))?
    }

    fn boolean(&self, field: &'static str, source: &FieldSource<bool>) -> Result<bool, RowError> {
        let t = match source {
            FieldSource::Fixed(b) => return Ok(*b),
            FieldSource::Template(t) => t,
        };
        let text = self.render(field, t)?;
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(true),
            "false" | "no" | "0" => Ok(false),
            _ => Err(self.fail(field, format!("`{text}` is not true or false"))),
        }
    }

    fn integer(&self, field: &'static str, source: &FieldSource<u64>) -> Result<u64, RowError> {
        let t = match source {
            FieldSource::Fixed(n) => return Ok(*n),
            FieldSource::Template(t) => t,
        };
        let text = self.render(field, t)?;
        text.trim().parse().map_err(|_| self.fail(field, format!("`{text}` is not a whole number")))
    }

    /// `[link.metadata]` rendered, and the row's key as `linkbatch_key` when the job asks.
    fn metadata(&self, templates: &[(String, Template)], with_key: bool) -> Result<BTreeMap<String, String>, RowError> {
        let mut metadata = BTreeMap::new();
        for (name, t) in templates {
            metadata.insert(name.clone(), self.render("metadata", t)?);
        }
        if let Some(key) = self.key.filter(|_| with_key) {
            metadata.insert(KEY_IN_METADATA.to_owned(), key.to_owned());
        }
        Ok(metadata)
    }

    /// Renders text of at most `max` characters into `text` (a spare row's string).
    fn bounded(&self, field: &'static str, t: &Template, max: usize, mut text: String) -> Result<String, RowError> {
        self.render_into(field, t, &mut text)?;
        // No more bytes than the limit: no more characters either, and nothing to count.
        let length = if text.len() <= max { 0 } else { text.chars().count() };
        if length > max {
            return Err(self.fail(field, format!("{field} is {length} characters, at most {max} are allowed")));
        }
        Ok(text)
    }
}

/// The strings of a row done with, to be filled again rather than allocated anew.
#[derive(Default)]
struct Spare {
    title: String,
    description: String,
    currency: String,
}

impl Plan {
    /// Turns one record into a request, or says which field is wrong.
    pub fn row(&self, record: &Record) -> Result<PlannedRow, RowError> {
        self.row_reusing(record, None)
    }

    /// The first readable record's amount read in both units, for a job that does not say which
    /// (`PlanError::AmountUnit`); `None` when no record, amount or currency can be read.
    pub(super) fn amount_readings(&self, reader: &mut crate::input::InputReader) -> Option<AmountReadings> {
        let record = reader.next_record()?.ok()?;
        let cells = Cells { plan: self, record: &record, key: None, extra: &[] };
        let currency = match &self.link {
            LinkTemplates::Classic { currency, .. } => Some(currency),
            LinkTemplates::Plus { currency, .. } => currency.as_ref(),
        }?;
        let currency = cells.currency(currency, &mut String::new()).ok()?;
        let text = cells.render("amount", &self.amount).ok()?;
        let minor = parse_amount(&text, AmountUnit::Minor, currency).ok().map(|a| currency.display(a));
        let major = parse_amount(&text, AmountUnit::Major, currency).ok().map(|a| currency.display(a));
        let unreadable = || "not an amount".to_owned();
        Some(AmountReadings {
            line: record.line,
            minor: minor.unwrap_or_else(unreadable),
            major: major.unwrap_or_else(unreadable),
            text,
        })
    }

    /// A row the input could read only in part (`reason`): named by its key when the key's columns were
    /// read, with the copied columns that were.
    pub fn partly_read(&self, record: &Record, reason: String) -> RowError {
        let extra: Vec<String> =
            self.extra_positions.iter().map(|&i| record.cells[i].clone().unwrap_or_default()).collect();
        let mut key = String::new();
        let rendered = Cells { plan: self, record, key: None, extra: &extra }.render_into("key", &self.key, &mut key);
        RowError { line: record.line, key: rendered.ok().map(|()| key), field: "input", reason, extra }
    }

    /// [`Plan::row`], filling the strings of a row done with (`spare`) rather than allocating new ones.
    pub fn row_reusing(&self, record: &Record, spare: Option<PlannedRow>) -> Result<PlannedRow, RowError> {
        let (mut key, mut extra, spare) = match spare {
            Some(PlannedRow { key, extra, request, .. }) => (key.into_string(), extra, Spare::from(request)),
            None => (String::new(), Vec::new(), Spare::default()),
        };
        extra.resize_with(self.extra_positions.len(), String::new);
        for (cell, &i) in extra.iter_mut().zip(&self.extra_positions) {
            cell.clear();
            cell.push_str(record.cells[i].as_deref().unwrap_or_default());
        }
        let mut cells = Cells { plan: self, record, key: None, extra: &extra };
        cells.render_into("key", &self.key, &mut key)?;
        cells.key = Some(&key);
        let request = match &self.link {
            LinkTemplates::Classic { .. } => self.classic(&cells, spare)?,
            LinkTemplates::Plus { .. } => self.plus(&cells, spare)?,
        };
        let capacity = match self.lifecycle.as_ref().and_then(|l| l.capacity.as_ref()) {
            Some(t) => {
                Some(super::lifecycle::capacity(&cells.render("capacity", t)?).map_err(|e| cells.fail("capacity", e))?)
            }
            None => None,
        };
        let key = RowKey::new(key);
        let mail = self.mail_columns.iter().map(|&(_, i)| record.cells[i].clone().unwrap_or_default()).collect();
        let fingerprint = std::sync::OnceLock::new();
        Ok(PlannedRow { line: record.line, key, request, fingerprint, extra, mail, capacity })
    }

    // Text is rendered into strings already there: the spare row's for what the row keeps (a title), one
    // scratch buffer for what is only read (a currency code, an amount).

    fn classic(&self, cells: &Cells<'_>, spare: Spare) -> Result<LinkRequest, RowError> {
        let LinkTemplates::Classic { currency, title, description, multiple, metadata, key_in_metadata } = &self.link
        else {
            unreachable!("called for classic plans only")
        };
        let mut scratch = String::new();
        let currency = cells.currency(currency, &mut scratch)?;
        let mut currency_text = spare.currency;
        currency_text.clear();
        currency_text.push_str(currency.code);
        Ok(LinkRequest::Classic(ClassicRequest {
            amount: cells.amount(currency, &mut scratch)?,
            currency: currency_text,
            title: cells.bounded("title", title, MAX_TITLE, spare.title)?,
            description: cells.bounded("description", description, MAX_DESCRIPTION, spare.description)?,
            multiple: cells.boolean("multiple", multiple)?,
            metadata: cells.metadata(metadata, *key_in_metadata)?,
        }))
    }

    fn plus(&self, cells: &Cells<'_>, spare: Spare) -> Result<LinkRequest, RowError> {
        let LinkTemplates::Plus { team_id, template_id, name, currency, multiple_usage, custom_webhook } = &self.link
        else {
            unreachable!("called for Links+ plans only")
        };
        let mut scratch = String::new();
        let currency = currency.as_ref().map(|t| cells.currency(t, &mut scratch)).transpose()?;
        // Without a currency the template's applies; amounts are then read with two decimals unless they are
        // minor units, which need no exponent.
        let amount = match currency {
            Some(c) => cells.amount(c, &mut scratch)?,
            None if self.amount_unit == AmountUnit::Major => {
                let reason = "amount_unit = \"major\" needs a currency in the job to know the decimals";
                return Err(cells.fail("currency", reason.into()));
            }
            None => cells.amount(Currency { code: "", exponent: 0 }, &mut scratch)?,
        };
        if amount < MIN_PLUS_AMOUNT {
            let reason = format!("amount {amount} is below the Links+ minimum of {MIN_PLUS_AMOUNT} (smallest unit)");
            return Err(cells.fail("amount", reason));
        }
        let custom_webhook = match custom_webhook {
            Some(t) => {
                let hook = cells.render("custom_webhook", t)?;
                check_webhook(&hook).map_err(|reason| cells.fail("custom_webhook", reason))?;
                Some(hook)
            }
            None => None,
        };
        Ok(LinkRequest::Plus(PlusRequest {
            template_id: cells.integer("template_id", template_id)?,
            team_id: cells.integer("team_id", team_id)?,
            name: cells.bounded("name", name, MAX_PLUS_NAME, spare.title)?,
            amount,
            currency: currency.map(|c| c.code.to_owned()),
            multiple_usage: cells.boolean("multiple_usage", multiple_usage)?,
            custom_webhook,
        }))
    }
}

impl From<LinkRequest> for Spare {
    fn from(request: LinkRequest) -> Spare {
        match request {
            LinkRequest::Classic(r) => Spare { title: r.title, description: r.description, currency: r.currency },
            LinkRequest::Plus(r) => {
                Spare { title: r.name, description: String::new(), currency: r.currency.unwrap_or_default() }
            }
        }
    }
}

/// Finds rows sharing a key: the first keeps it, each later one is rejected. A key the ledger index knows
/// is marked in a bit per index slot, so a resumed million-row job needs no second set of its keys.
#[derive(Debug, Default)]
pub struct KeyGuard {
    slots: Vec<u64>,
    seen: HashSet<Digest, BuildDigestHasher>,
}

impl KeyGuard {
    /// A guard for rows looked up in an index of `slots` keys.
    pub fn new(slots: usize) -> KeyGuard {
        KeyGuard { slots: vec![0; slots.div_ceil(64)], seen: HashSet::default() }
    }

    /// Records a key (its [`RowKey::id`], and its index slot when the index has it); false when an
    /// earlier row already had it.
    pub fn first(&mut self, key: Digest, slot: Option<usize>) -> bool {
        match slot.and_then(|i| Some((self.slots.get_mut(i / 64)?, 1u64 << (i % 64)))) {
            Some((word, bit)) => {
                let first = *word & bit == 0;
                *word |= bit;
                first
            }
            None => self.seen.insert(key),
        }
    }
}
