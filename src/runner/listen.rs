//! `listen`'s side of the runner: an event's hint carried out. The link a charge event names is read again
//! from the API (through the job's throttle and outage gate, one read of a link at a time), the reading is
//! recorded as `heard` with the event's id, and `[lifecycle]` is applied to it at once. A hint the link's
//! last reading already answers (the same charge, in the same state) is folded into it: recorded, not read
//! again. Decides nothing of its own: which link ends is `decide::retire`'s, and what an event says is
//! only which link to read.

use std::collections::HashMap;
use std::sync::Arc;

use crate::api::ApiError;
use crate::api::events::Hint;
use crate::api::shape::Life;
use crate::ledger::{Event, Time};
use crate::terms::{Payment, Taken};

use super::retire::{Candidate, at_once, watched};
use super::shared::{Shared, with_retries};

/// Carries out the hints of one job's events.
pub struct Listener {
    shared: Arc<Shared>,
    links: HashMap<String, Watched>,
}

/// One of the job's live links, and what it last read of it.
struct Watched {
    candidate: Candidate,
    /// Held while the link is read: one read of a link at a time, and a later hint waits for it.
    last: tokio::sync::Mutex<Reading>,
}

/// A link's latest reading in this process.
#[derive(Default)]
struct Reading {
    /// Its charges by id, and whether each was successful.
    charges: HashMap<String, bool>,
    payment: Option<Payment>,
    /// Retired by `[lifecycle]` here: nothing more to read.
    ended: bool,
}

/// Why a hint was not taken: the sender is to post it again (5xx).
#[derive(Debug, thiserror::Error)]
pub enum Untaken {
    /// The link could not be read.
    #[error("{}", crate::told::listen::unread(.0))]
    Unread(ApiError),
    /// The ledger could not be written, or the listener is stopping.
    #[error("{}", crate::told::listen::UNRECORDED)]
    Unrecorded,
    /// The API does not show the event's charge on its link yet: the event is not taken as heard, so that its
    /// sender posts it again and the link is read again then.
    #[error("{}", crate::told::listen::NOT_YET)]
    NotYet,
}

impl Listener {
    /// A listener for the run state `shared` holds: the ledger's live links read with their rows (the
    /// input read once).
    pub(super) fn new(shared: Arc<Shared>) -> anyhow::Result<Listener> {
        let links = watched(&shared)?
            .into_iter()
            .map(|(id, candidate)| (id, Watched { candidate, last: tokio::sync::Mutex::default() }))
            .collect();
        Ok(Listener { shared, links })
    }

    /// The job's live links it listens for.
    pub fn links(&self) -> usize {
        self.links.len()
    }

    /// Requests sent so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Why the listener stopped on its own (a ledger it cannot write, a key refused), if it did.
    pub fn aborted(&self) -> Option<String> {
        self.shared.aborted()
    }

    /// Carries out one event's hint; `Ok` is answered 2xx only once what it read is on disk.
    pub async fn hint(&self, hint: &Hint) -> Result<Taken, Untaken> {
        if self.heard(&hint.id) {
            return Ok(Taken::Replayed);
        }
        let Some(charge) = &hint.charge else { return Ok(Taken::NotOurs) };
        let Some(watched) = self.links.get(&charge.link) else { return Ok(Taken::NotOurs) };
        let mut last = watched.last.lock().await;
        // The same event may have been posted twice at once: the first one to hold the link acts on it.
        if self.heard(&hint.id) || last.ended {
            return Ok(Taken::Replayed);
        }
        if self.shared.stop.is_stopped() {
            return Err(Untaken::Unrecorded);
        }
        let folded = last.payment.clone().filter(|_| last.charges.get(&charge.id) == Some(&charge.successful));
        let (payment, life) = if let Some(payment) = folded {
            (payment, None)
        } else {
            let (payment, life, charges) = self.read(&charge.link).await?;
            let shown = charges.contains_key(&charge.id);
            *last = Reading { charges, payment: Some(payment.clone()), ended: false };
            if !shown {
                return Err(Untaken::NotYet);
            }
            (payment, Some(life))
        };
        let candidate = &watched.candidate;
        let event = Event::Heard {
            event: hint.id.clone(),
            key: candidate.key.clone(),
            link_id: candidate.link_id.clone(),
            payment: payment.clone(),
            at: Time::now(),
        };
        self.shared.record(event).await.map_err(|_| Untaken::Unrecorded)?;
        let Some(life) = life else { return Ok(Taken::Folded) };
        let Some(rules) = self.shared.plan.lifecycle() else { return Ok(Taken::Read) };
        match at_once(&self.shared, rules, candidate, &payment, &life).await {
            Ok(Some(reason)) => {
                last.ended = true;
                Ok(Taken::Retired(reason))
            }
            // The reading is on disk: a link not retired yet is the next retire's (or the next hint's).
            Ok(None) | Err(_) => Ok(Taken::Read),
        }
    }

    fn heard(&self, event: &str) -> bool {
        self.shared.index().heard.contains(event)
    }

    /// The link from the API, its charge pages too when its embedded list is full.
    async fn read(&self, id: &str) -> Result<(Payment, Life, HashMap<String, bool>), Untaken> {
        let shared = &self.shared;
        let mut link = match with_retries(shared, || shared.client.link(id)).await {
            Ok(Some(link)) => link,
            Ok(None) => return Err(Untaken::Unrecorded),
            Err(e) => return Err(Untaken::Unread(e)),
        };
        let page = |from| with_retries(shared, move || shared.client.charges(id, from));
        match crate::api::all_charges(&mut link, page).await {
            Ok(true) => {}
            Ok(false) => return Err(Untaken::Unrecorded),
            Err(e) => return Err(Untaken::Unread(e)),
        }
        let charges =
            link.charges.charges.iter().filter_map(|c| Some((c.id.clone()?, c.successful))).collect::<HashMap<_, _>>();
        Ok((link.payment(), link.life.clone(), charges))
    }
}
