//! What the run tells its user as it goes: every line the runner and the waits log, and every error they
//! return, worded here and nowhere else. The runner calls these with the facts; it writes no sentence.
//! Nothing here decides or sends: a function here only says.

use std::time::Duration;

/// The server went away: every request waits for it, one probe at a time.
pub fn outage_began(reason: &str, limit: Duration) {
    tracing::warn!(
        "the server cannot be reached ({reason}): every worker waits for it, one probe at a time, for at most {} \
         ([retry] outage)",
        humantime::format_duration(limit)
    );
}

/// The server answers again.
pub fn outage_ended(away: Duration) {
    tracing::warn!("the server answers again, after {:.1}s away", away.as_secs_f64());
}

/// A row's place in what is said of it: its input line and key.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// The input line.
    pub line: u64,
    /// The row's key.
    pub key: &'a crate::row_key::RowKey,
}

/// A row's create, update or replace, as it goes.
pub mod row {
    use super::Row;
    use crate::api::ApiError;

    /// A conflict whose earlier request cannot be read back: what changed, said in general.
    pub const UNKNOWN_CHANGE: &str = "the link's parameters";

    /// The link changed in place.
    pub fn updated(row: Row<'_>, link: &str) {
        tracing::info!(line = row.line, key = %row.key, link, "changed the link in place (description, metadata)");
    }

    /// The in-place change failed.
    pub fn not_updated(row: Row<'_>, link: &str, error: &ApiError) {
        tracing::warn!(line = row.line, key = %row.key, link, "could not change the link in place: {error}");
    }

    /// The attempts ran out with the request's outcome unknown.
    pub fn left_open(row: Row<'_>, attempts: u32, reason: &str) {
        tracing::warn!(line = row.line, key = %row.key, "giving up after {attempts} attempts: {reason}");
    }

    /// A list for an uncertain request failed.
    pub fn not_reconciled(row: Row<'_>, error: &ApiError) {
        tracing::warn!(line = row.line, key = %row.key, "could not reconcile yet: {error}");
    }

    /// An answer that cannot be read stops the run: `reason` is `decide::unreadable_stop`'s.
    pub fn unreadable(row: Row<'_>, reason: &str) {
        tracing::error!(line = row.line, key = %row.key, "{reason}");
    }

    /// A create that failed and goes on.
    pub fn create_failed(row: Row<'_>, error: &ApiError) {
        match error {
            ApiError::Retryable { reason, .. } => {
                tracing::debug!(line = row.line, key = %row.key, "retrying: {reason}");
            }
            ApiError::Uncertain { reason } => {
                tracing::info!(line = row.line, key = %row.key, "outcome unknown ({reason}); reconciling before any retry");
            }
            ApiError::Unreachable { reason } => {
                tracing::debug!(line = row.line, key = %row.key, "not sent: the server cannot be reached ({reason})");
            }
            ApiError::Permanent { .. }
            | ApiError::Fatal { .. }
            | ApiError::Unreadable { .. }
            | ApiError::Untrusted { .. } => {}
        }
    }

    /// Said once a run: links come back without their metadata.
    pub fn metadata_unheld() {
        tracing::warn!(
            "the server answers links without their metadata (the API reference shows none): links are matched by \
             content, and a webhook handler cannot rely on metadata"
        );
    }

    /// The changed row's old link could not be replaced.
    pub fn not_replaced(row: Row<'_>, link: &str, error: &impl std::fmt::Display) {
        tracing::warn!(line = row.line, key = %row.key, link, "could not replace the link: {error}");
    }

    /// The old link may not be replaced: `reason` is `decide::replace`'s.
    pub fn replace_refused(row: Row<'_>, reason: &str) {
        tracing::warn!(line = row.line, key = %row.key, "{reason}");
    }

    /// The changed row's old link is deleted.
    pub fn old_link_deleted(row: Row<'_>, link: &str) {
        tracing::info!(line = row.line, key = %row.key, link, "deleted the changed row's old link");
    }

    /// A refresh of one link failed.
    pub fn not_refreshed(row: Row<'_>, link: &str, error: &impl std::fmt::Display) {
        tracing::warn!(line = row.line, key = %row.key, link, "could not refresh: {error}");
    }

    /// The row failed for good.
    pub fn failed(row: Row<'_>, code: &str, message: &str) {
        tracing::warn!(line = row.line, key = %row.key, code, "failed: {message}");
    }

    /// An uncertain request's link was found and adopted.
    pub fn adopted(row: Row<'_>, link: &str) {
        tracing::info!(line = row.line, key = %row.key, link, "adopted the link an uncertain request made");
    }

    /// An answer kept unread by an earlier run yields its link now.
    pub fn adopted_kept(key: &crate::row_key::RowKey, link: &str) {
        tracing::info!(key = %key, link, "the answer kept in the ledger can be read now: adopted its link");
    }
}

/// `retire` and `run --retire`.
pub mod retire {
    use crate::row_key::RowKey;

    /// Rows without a key: pruning would end links of rows that are still there.
    pub fn prune_skipped() {
        tracing::warn!("some input rows have no readable key: nothing is pruned this time (fix those rows first)");
    }

    /// A delete answered, though the link still stands when read.
    pub const NOT_DELETED: &str = "not deleted";

    /// A link that could not be retired this time.
    pub fn not_retired(key: &RowKey, link: &str, error: &impl std::fmt::Display) {
        tracing::warn!(key = %key, link, "could not retire the link: {error}");
    }

    /// A live link the ledger names no key for.
    pub fn keyless(link: &str) {
        tracing::warn!(link, "the ledger names no key for this link: it is left as it is");
    }

    /// A link gone from the server without a delete of linkbatch's.
    pub fn deleted_outside(key: &RowKey, link: &str) {
        tracing::warn!(
            key = %key,
            link,
            "the link was deleted outside linkbatch: the row keeps its status; `linkbatch recover` or \
             `--replace-changed` can give it a new link"
        );
    }

    /// A link that could not be read.
    pub fn unread(key: &RowKey, link: &str, error: &impl std::fmt::Display) {
        tracing::warn!(key = %key, link, "could not read the link: {error}");
    }

    /// A link retired.
    pub fn retired(key: &RowKey, link: &str, reason: &str) {
        tracing::info!(key = %key, link, reason, "retired the link");
    }
}

/// Reading links: the list's pages, then one by one.
pub mod pages {
    /// The list's pages failed; the rest go one by one.
    pub fn list_failed(error: &impl std::fmt::Display) {
        tracing::warn!("could not read the list of links ({error}): the rest are read one by one");
    }

    /// What the pages found.
    pub fn listed(listed: usize, by_id: usize) {
        tracing::info!(listed, by_id, "links read from the list pages; the rest are read one by one");
    }

    /// A link's charges could not be read from the list.
    pub fn charges_unread(link: &str, error: &impl std::fmt::Display) {
        tracing::warn!(link, "could not read the link's charges from the list ({error})");
    }
}

/// `refresh --events`.
pub mod events {
    /// The whole refresh runs instead: there is no cursor yet, or it stands at `stale`, past the 30 days.
    pub fn full(stale: Option<crate::ledger::Time>) {
        let why = match stale {
            None => "no refresh --events has run on this ledger yet".to_owned(),
            Some(at) => format!("the last one read up to {at}, past the 30 days events are kept"),
        };
        tracing::warn!("refresh --events reads every link this time ({why}); the next one reads only what happened");
    }

    /// What the events named.
    pub fn named(links: usize) {
        tracing::info!(links, "the events since the last refresh name these of the job's links; reading them");
    }
}

/// The run as a whole: its start, its pace, its stops.
pub mod run {
    use crate::rate::Rate;

    /// The run starts: the job, and its rows as the survey counted them (rows, new, existing, uncertain,
    /// conflict, rejected).
    pub fn starting(job: &str, [rows, new, existing, uncertain, conflict, rejected]: [u64; 6]) {
        tracing::info!(job, rows, new, existing, uncertain, conflict, rejected, "starting");
    }

    /// Rates as a user writes them: `10/s 1000/h`.
    pub fn rates_text(rates: &[Rate]) -> String {
        rates.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
    }

    /// The run starts from a rate an earlier run learned.
    pub fn keeping_learned(rates: &[Rate], job: &[Rate]) {
        tracing::warn!(
            "keeping to {}, learned from a 429 on an earlier run (the job says {}; --limit starts afresh)",
            rates_text(rates),
            rates_text(job)
        );
    }

    /// Said once: the server sends no `Date`.
    pub fn clockless() {
        tracing::warn!(
            "the server's answers carry no Date: requests are recorded in the host's time, and an uncertain request \
             is found only if the host's clock agrees with the server's"
        );
    }

    /// A 429 that no window explains.
    pub fn margin(extra: std::time::Duration) {
        tracing::info!(
            "a 429 no window explains: the server saw requests closer together than they left; every window keeps \
             {extra:?} more margin from now on"
        );
    }

    /// A 429 although every window was kept: the server's window is tighter.
    pub fn learned(was: &Rate, now: &Rate, rates: &[Rate]) {
        tracing::warn!(
            "a 429 although every window was kept: the server holds {was} as {now}; keeping to {} from now on",
            rates_text(rates)
        );
    }

    /// The breaker caps the creates in flight below the concurrency.
    pub fn breaker_caps(breaker: u32, concurrency: usize) {
        tracing::warn!(
            "at most {breaker} creates are in flight at once ([retry] breaker = {breaker}), though concurrency is \
             {concurrency}: so that no more than {breaker} refusals of one kind reach the server. Raise [retry] \
             breaker to send more at once"
        );
    }

    /// The clock could not be read before the run (the first answer will say it).
    pub fn clock_unread(error: &impl std::fmt::Display) {
        tracing::debug!("could not read the server's clock yet: {error}");
    }

    /// Flags the job's API cannot carry out.
    pub fn unapplied(replace: bool, update: bool) {
        if replace {
            tracing::warn!(
                "--replace-changed needs the classic API (Links+ has no delete): conflicts are reported, not replaced"
            );
        }
        if update {
            tracing::warn!(
                "--update-changed needs the classic API (Links+ has no update): conflicts are reported, not changed"
            );
        }
    }

    /// A refresh resumed.
    pub fn refresh_resumed(line: u64) {
        tracing::info!("resuming the refresh interrupted at ledger line {line}");
    }

    /// The output draft could not be kept.
    pub fn draft_dropped(error: &impl std::fmt::Display) {
        tracing::debug!("dropped the output draft: {error}");
    }

    /// A step not taken because the run is stopping.
    pub const STOPPING: &str = "the run is stopping";

    /// Why the input is not the file the survey read, when it cannot even be read.
    pub const UNREADABLE_INPUT: &str = "it can no longer be read";

    /// A refusal the run stops for: the server's code and message.
    pub fn refusal(code: &str, message: &str) -> String {
        format!("{code}: {message}")
    }

    /// The input changed under the run: the reason it stops with.
    pub fn input_changed(input: &std::path::Path, why: &str) -> String {
        format!(
            "the input {} changed while the run read it ({why}): nothing more was sent, and the output was not \
             written (it would name the new file's rows). Every link made is in the ledger; the next run starts from \
             the file as it is then",
            input.display()
        )
    }

    /// An error met after the run was aborted comes second to the abort's reason.
    pub fn then_output(reason: Option<&String>, error: &anyhow::Error) -> String {
        match reason {
            Some(reason) => format!("{reason}; then the output could not be written either: {error:#}"),
            None => format!("{error:#}"),
        }
    }

    /// The output file could not be written.
    pub fn output_unwritable(path: &std::path::Path, error: &impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!("cannot write output {}: {error}", path.display())
    }

    /// The run's error once aborted.
    pub fn aborted(reason: &str) -> anyhow::Error {
        anyhow::anyhow!("aborted: {reason}")
    }

    /// A worker still held the run's state after the run.
    pub fn worker_outlived() -> anyhow::Error {
        anyhow::anyhow!("a worker outlived the run")
    }

    /// The account's cap would be passed: the refusal, with its way out.
    pub fn over_cap(held: u64, cap: u64, freed: Option<u64>, elsewhere: u64) -> anyhow::Error {
        let freed = freed.map(|n| format!(" (after the {n} links [lifecycle] retires first)")).unwrap_or_default();
        let elsewhere = match elsewhere {
            0 => String::new(),
            n => format!(", {n} of them from rows not in this input"),
        };
        anyhow::anyhow!(
            "the job would hold {held} active links{freed}{elsewhere}, and the account holds at most {cap} \
             ([limits] active_links): {} would be refused. Retire links ([lifecycle] and `run --retire`), split \
             the job, make single-use links, or ask Omise support to raise the limit; nothing was sent",
            held - cap
        )
    }

    /// The pace the summary names when it was not the job's.
    pub fn pace(learned: &[crate::throttle::Learned], before: bool, kept: &[Rate], job: &[Rate]) -> Option<String> {
        let (kept, job) = (rates_text(kept), rates_text(job));
        if learned.is_empty() {
            return before
                .then(|| format!("kept to {kept}, learned on an earlier run (job: {job}; --limit starts afresh)"));
        }
        let windows: Vec<String> = learned.iter().map(|l| format!("{} as {}", l.was, l.now)).collect();
        Some(format!(
            "the server holds {} (429s although every window was kept): kept to {kept}, recorded in the ledger for \
             the next run (job: {job})",
            windows.join(", ")
        ))
    }
}

/// `listen`: what each post came to. Logs name the event and the link, never a body.
pub mod listen {
    use crate::terms::Taken;

    /// The listener is up.
    pub fn listening(addr: &std::net::SocketAddr, links: usize, signed: bool) {
        let check = if signed { "signatures verified" } else { "unsigned, loopback only" };
        tracing::info!("listening on {addr} for payments on {links} live links ({check})");
    }

    /// The closing line after a signal.
    pub fn stopped(requests: u64) -> String {
        format!(
            "listen: stopped after {}; every reading taken is in the ledger",
            crate::terms::count(requests, "request", "requests")
        )
    }

    /// The link an event named could not be read.
    pub fn unread(error: &impl std::fmt::Display) -> String {
        format!("the link could not be read: {error}")
    }

    /// The reading could not be recorded (the ledger, or a stop).
    pub const UNRECORDED: &str = "the reading could not be recorded";

    /// The API does not show the event's charge yet.
    pub const NOT_YET: &str = "the link's charges do not show the event's charge yet";

    /// A post refused before it was read as an event.
    pub fn refused(why: &impl std::fmt::Display) {
        tracing::warn!("refused a post (401): {why}");
    }

    /// A body that is not an event.
    pub fn not_an_event(why: &str) {
        tracing::warn!("refused a post (400): not an Omise event ({why})");
    }

    /// A post taken (answered 2xx): the event, its key and the link its charge names.
    pub fn taken(event: &str, key: &str, link: &str, taken: Taken) {
        match taken {
            Taken::Read => tracing::info!(event, key, link, "read the link again and recorded it"),
            Taken::Folded => tracing::info!(event, key, link, "recorded: the link's last reading holds this charge"),
            Taken::Retired(reason) => {
                tracing::info!(event, key, link, reason = reason.name(), "recorded, and retired the link");
            }
            Taken::Replayed => tracing::debug!(event, "acted on before"),
            Taken::NotOurs => tracing::debug!(event, key, "not a payment on this job's links"),
        }
    }

    /// A post answered 503, for its sender to post again.
    pub fn untaken(event: &str, key: &str, why: &impl std::fmt::Display) {
        tracing::warn!(event, key, "not recorded (503, the sender posts it again): {why}");
    }
}
