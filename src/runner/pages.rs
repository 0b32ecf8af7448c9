//! `refresh` by pages: the job's links read from the list endpoint, a hundred a request, before any link is
//! read by id. A link a page gives is recorded as `refreshed` exactly as a read by id would record it, so
//! the row pass that follows skips it, and a refresh stopped halfway resumes the same way. What the pages
//! did not cover is read by id as before. Decides nothing of its own (which rows want reading is
//! `decide::task`); sends only reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::api::ApiError;
use crate::api::shape::Listed;
use crate::ledger::Event;
use crate::row_key::RowKey;
use crate::terms::Payment;
use crate::told;

use super::shared::{Shared, with_retries};

/// Links are listed from this long before the job's first create: the server's clock may run behind ours.
const CLOCK_SKEW: Duration = Duration::from_mins(10);

/// The links that want reading, by id with their rows' keys; one group per Links+ team (classic: one).
pub type Wanted = BTreeMap<Option<u64>, HashMap<String, RowKey>>;

/// Reads the payment state of every link the pages give, of those the survey found wanting a read
/// (`wanted`); true when some are left for the reads by id.
pub(super) async fn refresh_by_pages(shared: &Arc<Shared>, wanted: Wanted) -> bool {
    let first = shared.index().sent().min();
    let since = first.and_then(|at| at.system().checked_sub(CLOCK_SKEW)).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut left = false;
    for (team, mut links) in wanted {
        let listed = links.len();
        read_pages(shared, since, team, &mut links).await;
        told::pages::listed(listed, links.len());
        left |= !links.is_empty();
    }
    left
}

/// Pages through the list, recording each wanted link it finds and taking it out of `links`. It pages on
/// only while a page may still find more than one wanted link (pages read below links still wanted): an
/// account full of other links costs at most as many pages as reading the job's links by id would.
async fn read_pages(shared: &Shared, since: SystemTime, team: Option<u64>, links: &mut HashMap<String, RowKey>) {
    let (mut pager, mut pages) = (crate::api::Pager::default(), 0);
    while let Some(offset) = pager.next().filter(|_| !links.is_empty() && pages < links.len()) {
        let (listed, total) = match with_retries(shared, || shared.client.payment_page(since, offset, team)).await {
            Ok(Some(page)) => page,
            Ok(None) => return,
            Err(e) => {
                told::pages::list_failed(&e);
                return;
            }
        };
        pages += 1;
        pager.read(listed.len(), total);
        for item in listed {
            let Some(key) = links.remove(&item.id) else { continue };
            let link_id = item.id.clone();
            let payment = match completed(shared, item).await {
                Ok(Some(payment)) => payment,
                Ok(None) => return,
                // Not read here: the row pass reads the link by id.
                Err(e) => {
                    told::pages::charges_unread(&link_id, &e);
                    continue;
                }
            };
            let event = Event::Refreshed { key, link_id, payment, at: crate::ledger::Time::now() };
            if shared.record(event).await.is_err() {
                return;
            }
            shared.progress.created();
        }
    }
}

/// A link's payment state read by id (`refresh --by-id`, the links the pages missed, the old link of
/// `--replace-changed`), its charge pages each under the limits. `Ok(None)` once the run stops.
pub(super) async fn read_by_id(shared: &Shared, id: &str) -> Result<Option<Payment>, ApiError> {
    let Some(link) = with_retries(shared, || shared.client.link(id)).await? else { return Ok(None) };
    completed(shared, link).await
}

/// A link's payment state, its charge pages read first when the embedded list is full (each a request with
/// its own turn). `Ok(None)` once the run stops.
pub(super) async fn completed(shared: &Shared, mut link: Listed) -> Result<Option<Payment>, ApiError> {
    // The id is borrowed by every page's request while the pages are added to the link.
    let owned = link.id.clone();
    let id = owned.as_str();
    let page = |from| with_retries(shared, move || shared.client.charges(id, from));
    Ok(crate::api::all_charges(&mut link, page).await?.then(|| link.payment()))
}
