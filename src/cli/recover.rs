//! `linkbatch recover JOB`: a lost ledger rebuilt from the links the server holds, matched to the rows by
//! `decide::recover`. Sends no create; writes a new ledger only where none is (a damaged one is moved aside by
//! the user, never overwritten).

use std::time::SystemTime;

use super::run::{connect, planned, retried};
use super::{Ended, RunArgs, usage};
use crate::api::{Client, RemoteLink};
use crate::decide::{self, Recovered};

use crate::ledger::{Event, Ledger, Time};
use crate::outcome::Outcome;
use crate::plan::{Plan, PlannedRow};
use crate::request::LinkRequest;

/// Rebuilds the job's ledger from the server, and reports what it could not match.
pub(super) async fn recover(args: RunArgs) -> Ended {
    let (plan, _sandbox) = planned(&args).await?;
    if std::fs::metadata(plan.ledger_path()).is_ok_and(|m| m.len() > 0) {
        return Err(usage(format!(
            "a ledger is at {}: recover writes a new one and never over an old one. Move it aside first",
            plan.ledger_path().display()
        )));
    }
    let (client, header) = connect(&plan, &args).await?;
    let rows = planned_rows(&plan)?;
    let links = all_links(&plan, &client, &rows).await?;
    let found = decide::recover(&rows.iter().map(|r| (r.key.as_str(), &r.request)).collect::<Vec<_>>(), &links);
    let (ledger, index, _) = Ledger::open(plan.ledger_path(), &header)?;
    let book = crate::ledger::Book::new(ledger, index);
    let counts = write_recovered(&book, &rows, &links, &found).await.map_err(Outcome::from)?;
    println!(
        "{}: {} rows; {} recovered ({} by the key in their metadata, {} by content), {} ambiguous (settle them with \
         `linkbatch settle`), {} with no link on the server (the next run sends them); ledger {}",
        plan.name(),
        rows.len(),
        counts.by_key + counts.by_content,
        counts.by_key,
        counts.by_content,
        counts.ambiguous,
        counts.none,
        plan.ledger_path().display()
    );
    Ok(Outcome::complete_if(counts.ambiguous == 0))
}

fn planned_rows(plan: &Plan) -> Result<Vec<PlannedRow>, Outcome> {
    let mut reader = plan.reader()?;
    let mut rows = Vec::new();
    crate::rows::for_each_row(plan, &mut reader, None, |row| {
        if let Ok(row) = row {
            rows.push(row.clone());
        }
        true
    });
    Ok(rows)
}

/// Every link the key's account holds (classic), or the rows' teams hold (Links+), oldest first.
async fn all_links(plan: &Plan, client: &Client, rows: &[PlannedRow]) -> Result<Vec<RemoteLink>, Outcome> {
    let mut teams: Vec<Option<u64>> = rows
        .iter()
        .filter_map(|r| match &r.request {
            LinkRequest::Plus(p) => Some(Some(p.team_id)),
            LinkRequest::Classic(_) => None,
        })
        .collect();
    teams.sort_unstable();
    teams.dedup();
    if teams.is_empty() {
        teams.push(None);
    }
    let mut links = Vec::new();
    for team in teams {
        let mut pager = crate::api::Pager::default();
        while let Some(offset) = pager.next() {
            let page = retried(plan.endpoint(), || client.list(SystemTime::UNIX_EPOCH, offset, team))
                .await
                .map_err(|e| Outcome::aborted(anyhow::anyhow!("listing the links: {e}; no ledger was written")))?;
            pager.read(page.links.len(), page.total);
            links.extend(page.links);
        }
    }
    Ok(links)
}

#[derive(Default)]
struct Counts {
    by_key: usize,
    by_content: usize,
    ambiguous: usize,
    none: usize,
}

async fn write_recovered(
    book: &crate::ledger::Book,
    rows: &[PlannedRow],
    links: &[RemoteLink],
    found: &[Recovered],
) -> Result<Counts, crate::ledger::LedgerError> {
    let mut counts = Counts::default();
    book.record(Event::Run { at: Time::now(), version: format!("{} recover", env!("CARGO_PKG_VERSION")) }).await?;
    for (row, found) in rows.iter().zip(found) {
        let (key, fingerprint) = (row.key.clone(), row.fingerprint());
        let event = match found {
            Recovered::Link { link, by_key } => {
                *(if *by_key { &mut counts.by_key } else { &mut counts.by_content }) += 1;
                let link = &links[*link];
                Event::Adopted {
                    key,
                    link_id: link.id.clone(),
                    payment_uri: link.payment_uri.clone(),
                    fingerprint,
                    at: Time::now(),
                }
            }
            Recovered::Ambiguous(n) => {
                counts.ambiguous += 1;
                tracing::warn!(line = row.line, key = %row.key, "{n} links could be this row's: settle it by hand");
                Event::Unmatched { key, fingerprint, candidates: *n as u64, at: Time::now() }
            }
            Recovered::None => {
                counts.none += 1;
                continue;
            }
        };
        book.record(event).await?;
    }
    Ok(counts)
}
