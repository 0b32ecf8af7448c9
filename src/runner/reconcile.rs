//! Reconciliation: looking on the server for the link a request of unknown outcome may have made, and
//! adopting it for its key. Never sends a create, and never adopts a link another key has claimed.

use std::time::{Duration, SystemTime};

use crate::api::RemoteLink;
use crate::ledger::Event;
use crate::plan::PlannedRow;
use crate::request::LinkRequest;
use crate::terms::OpenIntent;

use super::shared::{Halt, Shared};

/// How far before an intent's time reconciliation looks: the `Date` it was reckoned from says whole seconds,
/// and a request can wait in the server's queue.
pub const CLOCK_SKEW: Duration = Duration::from_mins(2);

/// Lists the links made since `intent` (less the clock skew) and adopts the first unclaimed one that
/// matches its request (ledger `adopted`). `Ok(true)` when one was adopted, `Ok(false)` when none matches.
///
/// The content shard's write lock is held throughout: no create of the same content is in flight, so the
/// link found cannot be one another key is about to record.
pub(super) async fn reconcile(shared: &Shared, row: &PlannedRow, intent: &OpenIntent) -> Result<bool, Halt> {
    let _exclusive = shared.content_lock(&intent.request).write().await;
    // The intent's time is the server's (`clock`); should the server's own clock have gone back since,
    // the link carries the earlier time, so the window opens at the earlier of the two.
    let earliest = shared.client.clock().now().map_or(intent.at, |now| now.min(intent.at));
    let since = earliest.checked_sub(CLOCK_SKEW).unwrap_or(SystemTime::UNIX_EPOCH);
    let team = match &intent.request {
        LinkRequest::Plus(r) => Some(r.team_id),
        LinkRequest::Classic(_) => None,
    };
    let mut pager = crate::api::Pager::default();
    while let Some(offset) = pager.next() {
        let turn = shared.turn().await.ok_or(Halt::Stopped)?;
        let page = shared.sent(turn, shared.client.list(since, offset, team)).await?;
        let found: Option<RemoteLink> = {
            let index = shared.index();
            page.links.iter().find(|l| l.matches(&intent.request) && !index.is_claimed(&l.id)).cloned()
        };
        if let Some(link) = found {
            crate::told::row::adopted(crate::told::Row { line: row.line, key: &row.key }, &link.id);
            shared
                .record(Event::Adopted {
                    key: row.key.clone(),
                    link_id: link.id,
                    payment_uri: link.payment_uri,
                    fingerprint: intent.fingerprint,
                    at: crate::ledger::Time::now(),
                })
                .await?;
            return Ok(true);
        }
        pager.read(page.links.len(), page.total);
    }
    Ok(false)
}
