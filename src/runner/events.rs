//! `refresh --events`: the Events API read from the ledger's cursor (`events_read`), and by id only the
//! job's links its charge events name, so a refresh costs what happened since the last one, not the job's
//! size. The first time, or once the cursor is older than the API is taken to keep events, the whole refresh
//! runs instead, said, and sets the cursor at its start. The cursor moves only once every link named is
//! recorded. Decides nothing of its own: which links are the job's is the survey's.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::api::Pager;
use crate::ledger::{Event, Time};
use crate::row_key::RowKey;
use crate::told;

use super::pages::{Wanted, read_by_id};
use super::shared::{Shared, with_retries};

/// How long the Events API keeps events: Omise does not publish it, so 30 days is assumed; a cursor older
/// than that is not trusted to find every event, and the whole refresh runs.
const KEPT: Duration = Duration::from_hours(30 * 24);

/// Reads what happened since the cursor and records it; `Some(start)` when there is no usable cursor and the
/// whole refresh must run (`start`, the server's time now, is the cursor to record once it has).
pub(super) async fn refresh(shared: &Shared, wanted: &Wanted) -> anyhow::Result<Option<SystemTime>> {
    let now = shared.server_now().await;
    let cursor = shared.index().events_read.clone();
    let Some((from, seen)) = cursor else {
        told::events::full(None);
        return Ok(Some(now));
    };
    let from = from.system();
    if now.duration_since(from).unwrap_or_default() > KEPT {
        told::events::full(Some(Time::from(from)));
        return Ok(Some(now));
    }
    let Some((named, newest)) = read_events(shared, from, &seen, wanted).await? else { return Ok(None) };
    told::events::named(named.len());
    for (link, key) in named {
        let Some(payment) = read_by_id(shared, &link).await? else { return Ok(None) };
        let event = Event::Refreshed { key, link_id: link, payment, at: Time::now() };
        if shared.record(event).await.is_err() {
            return Ok(None);
        }
    }
    if let Some((at, ids)) = newest {
        shared.record(Event::EventsRead { from: Time::from(at), seen: ids, at: Time::now() }).await?;
    }
    Ok(None)
}

/// Every event from `from` on (those in `seen` already read): the job's links their charges name, and the
/// newest time read with the events at it. `None` once the run stops.
async fn read_events(
    shared: &Shared,
    from: SystemTime,
    seen: &[String],
    wanted: &Wanted,
) -> anyhow::Result<Option<(BTreeMap<String, RowKey>, Option<(SystemTime, Vec<String>)>)>> {
    let (mut named, mut newest) = (BTreeMap::new(), None::<(SystemTime, Vec<String>)>);
    let mut pager = Pager::default();
    while let Some(offset) = pager.next() {
        let Some(page) = with_retries(shared, || shared.client.events(from, offset)).await? else { return Ok(None) };
        pager.read(page.events.len(), page.total);
        for (hint, at) in page.events {
            let at = at.unwrap_or(from);
            if at <= from && seen.contains(&hint.id) {
                continue;
            }
            if let Some(charge) = &hint.charge
                && let Some(key) = wanted.values().find_map(|links| links.get(&charge.link))
            {
                named.insert(charge.link.clone(), key.clone());
            }
            match &mut newest {
                Some((time, ids)) if *time == at => ids.push(hint.id),
                Some((time, _)) if *time > at => {}
                _ => newest = Some((at, vec![hint.id])),
            }
        }
    }
    // Events read again at the cursor's own second keep the ones read before.
    if let Some((time, ids)) = &mut newest
        && *time == from
    {
        ids.extend(seen.iter().cloned());
    }
    Ok(Some((named, newest)))
}

/// After a whole refresh that `refresh --events` ran: the cursor at its start.
pub(super) async fn mark(shared: &Shared, start: SystemTime) {
    let _ = shared.record(Event::EventsRead { from: Time::from(start), seen: Vec::new(), at: Time::now() }).await;
}
