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
use crate::decide::{self, Task, Work};
use crate::ledger::Event;
use crate::request::LinkRequest;
use crate::row_key::RowKey;
use crate::terms::Payment;

use super::shared::{Shared, with_retries};
use crate::rows::for_each_row;

/// Links are listed from this long before the job's first create: the server's clock may run behind ours.
const CLOCK_SKEW: Duration = Duration::from_mins(10);

/// The links that want reading, by id with their rows' keys; one group per Links+ team (classic: one).
type Wanted = BTreeMap<Option<u64>, HashMap<String, RowKey>>;

/// Reads the payment state of every link the pages give, for the rows `refresh` would read.
pub(super) async fn refresh_by_pages(shared: &Arc<Shared>, refresh_since: u64) -> anyhow::Result<()> {
    let wanted = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || wanted(&shared, refresh_since)).await??
    };
    let first = shared.index().sent().min();
    let since = first.and_then(|at| at.system().checked_sub(CLOCK_SKEW)).unwrap_or(SystemTime::UNIX_EPOCH);
    for (team, mut links) in wanted {
        let listed = links.len();
        read_pages(shared, since, team, &mut links).await;
        tracing::info!(listed, by_id = links.len(), "links read from the list pages; the rest are read one by one");
    }
    Ok(())
}

fn wanted(shared: &Shared, refresh_since: u64) -> anyhow::Result<Wanted> {
    let mut reader = shared.plan.reader()?;
    let mut wanted = Wanted::new();
    for_each_row(&shared.plan, &mut reader, None, |row| {
        let Ok(row) = row else { return true };
        let index = shared.index();
        let task = decide::task(Work::Refresh { by_id: false }, row, index.get(&row.key.id()), refresh_since, None);
        if let Some(Task::Refresh(link)) = task {
            let team = match &row.request {
                LinkRequest::Plus(request) => Some(request.team_id),
                LinkRequest::Classic(_) => None,
            };
            wanted.entry(team).or_default().insert(index.link_id(&link).to_owned(), row.key.clone());
        }
        !shared.stop.is_stopped()
    });
    Ok(wanted)
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
                tracing::warn!("could not read the list of links ({e}): the rest are read one by one");
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
                    tracing::warn!(link = %link_id, "could not read the link's charges from the list ({e})");
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
