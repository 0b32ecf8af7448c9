//! Where a row stands before anything is sent (`disposition`), what a run was asked to do (`Work`), and
//! the task a row gives it (`task`): one rule for the run, `validate`, `status` and the output.

use crate::ledger::{KeyState, LinkRecord};
use crate::plan::PlannedRow;
use crate::request::LinkRequest;
use crate::terms::OpenIntent;

/// Where one row stands before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Nothing to do: its link exists and the row is unchanged.
    Existing(LinkRecord),
    /// Its link exists but the row changed since.
    Conflict(LinkRecord),
    /// An earlier request's outcome is unknown: reconcile first.
    Uncertain(OpenIntent),
    /// The server answered its create in a shape linkbatch cannot read: the link may exist, so the row is
    /// never sent again until the user settles it (`linkbatch settle`).
    Unsettled,
    /// Its link was ended by `[lifecycle]` (expired or sold out): never sent again.
    Retired(LinkRecord),
    /// Never sent, or failed before: send.
    New,
}

/// What the ledger makes of a planned row (`state`: the ledger's record of its key). One rule, used by the
/// run, `validate`, `status` and the output.
pub fn disposition(row: &PlannedRow, state: Option<&KeyState>) -> Disposition {
    let Some(state) = state else {
        return Disposition::New;
    };
    let retired = state.retired().map(|(reason, _)| reason);
    // A pruned row back in the input gets a new link: its old one stands for nothing now.
    if let Some(link) = state.link.filter(|_| retired != Some(crate::terms::RetireReason::Pruned)) {
        if retired.is_some() {
            return Disposition::Retired(link);
        }
        if link.fingerprint == row.fingerprint() {
            return Disposition::Existing(link);
        }
        return Disposition::Conflict(link);
    }
    if state.unsettled().is_some() {
        return Disposition::Unsettled;
    }
    match state.open_since() {
        Some(at) => {
            // An intent found in the file carries its own request; one this run wrote was this row's.
            let (request, fingerprint) =
                state.open_request().cloned().unwrap_or_else(|| (row.request.clone(), row.fingerprint()));
            Disposition::Uncertain(OpenIntent { at: at.system(), request, fingerprint })
        }
        None => Disposition::New,
    }
}

/// What a run does with the rows, as its command line asked: one value, built once in `cli`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// `run`: create links for new rows. `update` (`--update-changed`): a row whose description or metadata
    /// changed gets its link changed in place; `replace` (`--replace-changed`): a changed row's unpaid link is
    /// deleted and made again (classic API only); `retire` (`--retire`): `[lifecycle]` ends what it ends
    /// first.
    Create {
        /// `--update-changed`.
        update: bool,
        /// `--replace-changed`.
        replace: bool,
        /// `--retire`.
        retire: bool,
    },
    /// `retire`: read the ledger's live links and end those `[lifecycle]` ends; nothing is created.
    Retire,
    /// `refresh`: read each created link's payment state; `by_id` (`--by-id`): every link by id, none from
    /// the list pages.
    Refresh {
        /// `--by-id`.
        by_id: bool,
        /// `--events`: only the links the Events API names since the last refresh.
        events: bool,
    },
}

impl Default for Work {
    fn default() -> Self {
        Work::Create { update: false, replace: false, retire: false }
    }
}

impl Work {
    /// `refresh`.
    pub fn is_refresh(self) -> bool {
        matches!(self, Work::Refresh { .. })
    }

    /// `run --update-changed`.
    pub fn updates(self) -> bool {
        matches!(self, Work::Create { update: true, .. })
    }

    /// `run --replace-changed`.
    pub fn replaces(self) -> bool {
        matches!(self, Work::Create { replace: true, .. })
    }

    /// `retire`, or `run --retire`.
    pub fn retires(self) -> bool {
        matches!(self, Work::Retire | Work::Create { retire: true, .. })
    }

    /// `refresh --by-id`.
    pub fn by_id(self) -> bool {
        matches!(self, Work::Refresh { by_id: true, .. })
    }

    /// `refresh --events`.
    pub fn by_events(self) -> bool {
        matches!(self, Work::Refresh { events: true, .. })
    }

    /// The work as `api` can do it: Links+ has no delete, so nothing is replaced there.
    pub fn for_api(self, api: crate::terms::ApiKind) -> Work {
        match self {
            // Payment Links+ documents no way to change or end a link.
            Work::Create { retire, .. } if api != crate::terms::ApiKind::Links => {
                Work::Create { update: false, replace: false, retire }
            }
            work => work,
        }
    }
}

/// What a worker is given for one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Create its link: `open` is an earlier request whose outcome is unknown, `replace` an unpaid link of
    /// the row's earlier version to delete first.
    Create {
        /// The request to reconcile before any send.
        open: Option<OpenIntent>,
        /// The link to delete first.
        replace: Option<LinkRecord>,
    },
    /// Read its link's payment state.
    Refresh(LinkRecord),
    /// Change its link in place (`--update-changed`): only its description or metadata changed.
    Update(LinkRecord),
}

/// Whether a row changed only where a link can be changed in place (the Links guide: description and metadata; not
/// amount, currency, title or multiple).
pub fn updatable(before: &LinkRequest, now: &LinkRequest) -> bool {
    match (before, now) {
        (LinkRequest::Classic(b), LinkRequest::Classic(n)) => {
            (b.amount, &b.currency, &b.title, b.multiple) == (n.amount, &n.currency, &n.title, n.multiple)
                && (b.description != n.description || b.metadata != n.metadata)
        }
        _ => false,
    }
}

/// The task a row gives a run doing `work` (as its API can: [`Work::for_api`]), if any. `refresh_since`: the
/// ledger line of the refresh being done (a reading after it is fresh). `before`: with `--update-changed`,
/// the request a conflicting row's link was made with.
pub fn task(
    work: Work,
    row: &PlannedRow,
    state: Option<&KeyState>,
    refresh_since: u64,
    before: Option<&LinkRequest>,
) -> Option<Task> {
    if work == Work::Retire {
        return None;
    }
    if work.is_refresh() {
        // Every row with a link is read, unless this refresh (or the one it resumes) already did.
        let fresh = state.and_then(KeyState::payment).is_some_and(|(_, line)| *line > refresh_since);
        return state.filter(|s| s.retired().is_none()).and_then(|s| s.link).filter(|_| !fresh).map(Task::Refresh);
    }
    match disposition(row, state) {
        Disposition::New => Some(Task::Create { open: None, replace: None }),
        Disposition::Uncertain(open) => Some(Task::Create { open: Some(open), replace: None }),
        Disposition::Conflict(link) if before.is_some_and(|b| updatable(b, &row.request)) => Some(Task::Update(link)),
        Disposition::Conflict(link) if work.replaces() && state.is_some_and(|s| s.replace_refused().is_none()) => {
            Some(Task::Create { open: None, replace: Some(link) })
        }
        Disposition::Existing(_) | Disposition::Conflict(_) | Disposition::Unsettled | Disposition::Retired(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::decide::fixtures::{Ev, at, index, request, row, state};
    use crate::terms::RetireReason as Reason;

    #[derive(Debug, PartialEq, Eq)]
    enum Is {
        New,
        Existing,
        Conflict,
        UncertainSince(u64),
        Unsettled,
        Retired,
    }

    #[rstest]
    #[case::never_seen(&[], Is::New)]
    #[case::created_unchanged(&[Ev::Intent(1), Ev::Created("a")], Is::Existing)]
    #[case::created_then_changed(&[Ev::Intent(1), Ev::Created("b")], Is::Conflict)]
    #[case::intent_with_no_outcome(&[Ev::Intent(1)], Is::UncertainSince(1))]
    #[case::two_open_intents_from_the_earliest(&[Ev::Intent(5), Ev::Intent(3)], Is::UncertainSince(3))]
    #[case::failed_is_sent_again(&[Ev::Intent(1), Ev::Failed], Is::New)]
    #[case::failed_then_sent_again_uncertain(&[Ev::Intent(1), Ev::Failed, Ev::Intent(4)], Is::UncertainSince(4))]
    #[case::deleted_is_new_again(&[Ev::Intent(1), Ev::Created("b"), Ev::Deleted], Is::New)]
    #[case::deleted_then_uncertain(&[Ev::Intent(1), Ev::Created("b"), Ev::Deleted, Ev::Intent(7)], Is::UncertainSince(7))]
    #[case::unreadable_create_waits_to_be_settled(&[Ev::Intent(1), Ev::Unread], Is::Unsettled)]
    #[case::unreadable_list_stays_uncertain(&[Ev::Intent(1), Ev::UnreadList], Is::UncertainSince(1))]
    #[case::settled_with_its_link(&[Ev::Intent(1), Ev::Unread, Ev::Settled(true)], Is::Existing)]
    #[case::settled_as_never_made(&[Ev::Intent(1), Ev::Unread, Ev::Settled(false)], Is::New)]
    #[case::recreated_after_delete(&[Ev::Created("b"), Ev::Deleted, Ev::Intent(7), Ev::Created("a")], Is::Existing)]
    #[case::retiring_still_has_its_link(&[Ev::Created("a"), Ev::Retiring(Reason::Expired)], Is::Existing)]
    #[case::expired_is_retired(&[Ev::Created("a"), Ev::Retiring(Reason::Expired), Ev::Retired(Reason::Expired)], Is::Retired)]
    #[case::sold_out_even_if_changed(&[Ev::Created("b"), Ev::Retired(Reason::SoldOut)], Is::Retired)]
    #[case::pruned_and_back_is_new(&[Ev::Created("a"), Ev::Retired(Reason::Pruned)], Is::New)]
    #[case::pruned_back_then_uncertain(&[Ev::Created("a"), Ev::Retired(Reason::Pruned), Ev::Intent(7)], Is::UncertainSince(7))]
    #[case::pruned_back_and_made_again(&[Ev::Created("a"), Ev::Retired(Reason::Pruned), Ev::Intent(7), Ev::Created("a")], Is::Existing)]
    fn disposition_from_the_ledger(#[case] events: &[Ev], #[case] expected: Is) {
        let index = index(events);
        let found = match disposition(&row("a"), state(&index)) {
            Disposition::New => Is::New,
            Disposition::Existing(_) => Is::Existing,
            Disposition::Conflict(_) => Is::Conflict,
            Disposition::Unsettled => Is::Unsettled,
            Disposition::Retired(_) => Is::Retired,
            Disposition::Uncertain(open) => {
                // An intent this run wrote (none read from the file) is the row's own request.
                assert_eq!((open.request, open.fingerprint), (request("a"), request("a").fingerprint()));
                Is::UncertainSince(open.at.duration_since(at(0)).unwrap().as_secs())
            }
        };
        assert_eq!(found, expected);
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Gives {
        Nothing,
        Create,
        Reconcile,
        Replace,
        Refresh,
    }

    const CREATE: Work = Work::Create { update: false, replace: false, retire: false };
    const REPLACE: Work = Work::Create { update: false, replace: true, retire: false };
    const REFRESH: Work = Work::Refresh { by_id: false, events: false };

    #[rstest]
    #[case::new_row_is_created(REPLACE, &[], Gives::Create)]
    #[case::failed_row_is_created_again(CREATE, &[Ev::Intent(1), Ev::Failed], Gives::Create)]
    #[case::uncertain_row_is_reconciled(CREATE, &[Ev::Intent(1)], Gives::Reconcile)]
    #[case::existing_row_is_left(CREATE, &[Ev::Created("a")], Gives::Nothing)]
    #[case::conflict_is_left_by_run(CREATE, &[Ev::Created("b")], Gives::Nothing)]
    #[case::conflict_is_left_without_delete(REPLACE.for_api(crate::terms::ApiKind::LinksPlus), &[Ev::Created("b")], Gives::Nothing)]
    #[case::conflict_is_replaced(REPLACE, &[Ev::Created("b")], Gives::Replace)]
    #[case::paid_conflict_is_kept(REPLACE, &[Ev::Created("b"), Ev::Refused], Gives::Nothing)]
    #[case::replacing_still_creates_new(REPLACE, &[], Gives::Create)]
    #[case::unsettled_row_is_never_sent(REPLACE, &[Ev::Intent(1), Ev::Unread], Gives::Nothing)]
    #[case::refresh_reads_a_link(REFRESH, &[Ev::Created("a")], Gives::Refresh)]
    #[case::refresh_reads_a_conflicting_link(REFRESH, &[Ev::Created("b")], Gives::Refresh)]
    #[case::refresh_skips_rows_without_link(REFRESH, &[Ev::Intent(1)], Gives::Nothing)]
    #[case::refresh_skips_a_fresh_reading(REFRESH, &[Ev::Created("a"), Ev::Paid(1)], Gives::Nothing)]
    fn task_for_a_row(#[case] work: Work, #[case] events: &[Ev], #[case] expected: Gives) {
        let index = index(events);
        // Refresh since line 2: a reading after the row's events is fresh, one before it is not.
        let gives = match task(work, &row("a"), state(&index), 2, None) {
            None => Gives::Nothing,
            Some(Task::Create { open: None, replace: None }) => Gives::Create,
            Some(Task::Create { open: Some(_), replace: None }) => Gives::Reconcile,
            Some(Task::Create { open: None, replace: Some(_) }) => Gives::Replace,
            Some(Task::Create { .. }) => panic!("reconcile and replace at once"),
            Some(Task::Refresh(_)) => Gives::Refresh,
            Some(Task::Update(_)) => panic!("no update without --update-changed"),
        };
        assert_eq!(gives, expected);
    }

    #[test]
    fn refresh_reads_again_a_reading_older_than_this_refresh() {
        let index = index(&[Ev::Created("a"), Ev::Paid(1)]);
        assert!(matches!(task(REFRESH, &row("a"), state(&index), 99, None), Some(Task::Refresh(_))));
    }

    #[test]
    fn only_a_description_or_metadata_change_is_updated_in_place() {
        let before = request("a");
        let with = |f: &dyn Fn(&mut crate::request::ClassicRequest)| {
            let LinkRequest::Classic(mut r) = before.clone() else { unreachable!("a classic request") };
            f(&mut r);
            LinkRequest::Classic(r)
        };
        assert!(updatable(&before, &with(&|r| r.description = "new".into())));
        assert!(updatable(&before, &with(&|r| _ = r.metadata.insert("invoice".into(), "9".into()))));
        assert!(!updatable(&before, &with(&|r| r.amount += 1)), "an amount change stays a conflict");
        assert!(!updatable(&before, &with(&|r| r.title = "b".into())));
        assert!(!updatable(&before, &before), "nothing changed: nothing to update");
        // The row's link was made from `before`; the row now has a new description.
        let index = index(&[Ev::Created("b")]);
        let row = PlannedRow::new(2, "k".into(), with(&|r| r.description = "new".into()), Vec::new());
        assert!(matches!(task(CREATE, &row, state(&index), 0, Some(&before)), Some(Task::Update(_))));
        assert_eq!(task(CREATE, &row, state(&index), 0, None), None, "without the flag: a conflict");
        let retitled = with(&|r| r.title = "z".into());
        assert_eq!(task(CREATE, &row, state(&index), 0, Some(&retitled)), None, "a title change is left");
    }
}
