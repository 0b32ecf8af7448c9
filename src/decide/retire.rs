//! `[lifecycle]`'s rules (docs/reference.md, "A link's life"): whether a link is retired, and what follows a
//! delete's answer. A paid single-use link is never retired; a delete whose answer was lost is confirmed
//! by a read, never assumed and never simply sent again.

use std::time::Duration;

use super::replace::is_paid;
use crate::api::ApiError;
use crate::plan::Lifecycle;
use crate::terms::{Payment, RetireReason};

/// What the rules look at for one link.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// Its payment state, as just read.
    pub payment: &'a Payment,
    /// A multiple-use link.
    pub multiple: bool,
    /// How long ago it was made, in the server's time (`None`: the answer did not say).
    pub age: Option<Duration>,
    /// Its row, as the input has it now.
    pub row: RowNow,
}

/// A link's row in the input, as `retire` found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowNow {
    /// In the input, with its `capacity` when the job has one.
    Present(Option<u64>),
    /// No longer in the input.
    Gone,
}

/// Why `rules` end the link `seen`, if they do.
pub fn retire(rules: &Lifecycle, seen: Seen<'_>) -> Option<RetireReason> {
    if !seen.multiple && is_paid(seen.payment) {
        return None;
    }
    let capacity = match seen.row {
        RowNow::Present(capacity) => capacity.filter(|_| seen.multiple && rules.capacity.is_some()),
        RowNow::Gone => None,
    };
    if capacity.is_some_and(|places| seen.payment.standing() >= places) {
        return Some(RetireReason::SoldOut);
    }
    if rules.prune && seen.row == RowNow::Gone {
        return Some(RetireReason::Pruned);
    }
    let old = rules.expire_after.zip(seen.age).is_some_and(|(limit, age)| age >= limit);
    (old && !is_paid(seen.payment)).then_some(RetireReason::Expired)
}

/// What follows a `DELETE /links/{id}`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterDelete {
    /// The link is gone (a 404 too: it was gone already): record `retired`.
    Retired,
    /// The delete may or may not have happened: read the link before anything else.
    Confirm,
    /// Nothing was done (a 429, a server away): wait, then send the delete again.
    Again,
    /// Refused for good, or the run stops (a refused key or certificate): the link stays as it was.
    GiveUp,
}

/// After a delete's answer (`Client::delete` counts a 404 as done).
pub fn after_delete(answer: &Result<(), ApiError>) -> AfterDelete {
    match answer {
        Ok(()) => AfterDelete::Retired,
        Err(ApiError::Uncertain { .. }) => AfterDelete::Confirm,
        Err(ApiError::Retryable { .. } | ApiError::Unreachable { .. }) => AfterDelete::Again,
        Err(
            ApiError::Permanent { .. }
            | ApiError::Fatal { .. }
            | ApiError::Untrusted { .. }
            | ApiError::Unreadable { .. },
        ) => AfterDelete::GiveUp,
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::decide::fixtures::E;
    use RowNow::{Gone, Present};

    const DAY: u64 = 24 * 3600;

    fn rules(expire_days: Option<u64>, capacity: bool, prune: bool) -> Lifecycle {
        Lifecycle {
            expire_after: expire_days.map(|d| Duration::from_secs(d * DAY)),
            capacity: capacity.then(|| crate::template::Template::parse("{capacity}").unwrap()),
            prune,
        }
    }

    fn paid(charges: u64, refunded_charges: u64) -> Payment {
        Payment { charges, refunded_charges, currency: "thb".into(), ..Payment::default() }
    }

    /// `(expire_after days, capacity, prune)`, then the link: charges (refunded in full), multiple, age in
    /// days, its row (`None`: left the input) and the row's capacity.
    #[rstest]
    #[case::unpaid_and_old_expires((Some(30), false, false), (0, 0), false, Some(31), Present(None), Some(RetireReason::Expired))]
    #[case::unpaid_and_young_stays((Some(30), false, false), (0, 0), false, Some(29), Present(None), None)]
    #[case::exactly_the_age_expires((Some(30), false, false), (0, 0), false, Some(30), Present(None), Some(RetireReason::Expired))]
    #[case::unknown_age_never_expires((Some(30), false, false), (0, 0), false, None, Present(None), None)]
    #[case::paid_single_use_never_expires((Some(30), false, true), (1, 0), false, Some(400), Gone, None)]
    #[case::refunded_single_use_is_still_paid((Some(30), false, true), (1, 1), false, Some(400), Gone, None)]
    #[case::paid_multiple_does_not_expire((Some(30), false, false), (2, 0), true, Some(400), Present(None), None)]
    #[case::sold_out_at_capacity((None, true, false), (30, 0), true, Some(1), Present(Some(30)), Some(RetireReason::SoldOut))]
    #[case::refunds_free_places((None, true, false), (30, 2), true, Some(1), Present(Some(30)), None)]
    #[case::below_capacity_stays((None, true, false), (29, 0), true, Some(1), Present(Some(30)), None)]
    #[case::capacity_is_for_multiple_use((None, true, false), (0, 0), false, Some(1), Present(Some(0)), None)]
    #[case::pruned_when_gone((None, false, true), (0, 0), false, Some(1), Gone, Some(RetireReason::Pruned))]
    #[case::multiple_pruned_though_paid((None, false, true), (5, 0), true, Some(1), Gone, Some(RetireReason::Pruned))]
    #[case::not_pruned_without_the_rule((Some(30), false, false), (0, 0), false, Some(1), Gone, None)]
    #[case::in_the_input_stays((None, false, true), (0, 0), false, Some(1), Present(None), None)]
    fn the_rules(
        #[case] (expire, capacity, prune): (Option<u64>, bool, bool),
        #[case] (charges, refunded): (u64, u64),
        #[case] multiple: bool,
        #[case] age_days: Option<u64>,
        #[case] row: RowNow,
        #[case] expected: Option<RetireReason>,
    ) {
        let payment = paid(charges, refunded);
        let age = age_days.map(|d| Duration::from_secs(d * DAY));
        let seen = Seen { payment: &payment, multiple, age, row };
        assert_eq!(retire(&rules(expire, capacity, prune), seen), expected);
    }

    #[rstest]
    #[case::lost_answer_is_confirmed(E::Uncertain, AfterDelete::Confirm)]
    #[case::busy_is_sent_again(E::RateLimited(1), AfterDelete::Again)]
    #[case::away_is_sent_again(E::Unreachable, AfterDelete::Again)]
    #[case::refused_gives_up(E::Permanent, AfterDelete::GiveUp)]
    #[case::refused_key_gives_up(E::Fatal, AfterDelete::GiveUp)]
    #[case::refused_certificate_gives_up(E::Untrusted, AfterDelete::GiveUp)]
    fn after_a_delete(#[case] error: E, #[case] expected: AfterDelete) {
        assert_eq!(after_delete(&Err(error.error())), expected);
    }

    #[test]
    fn a_delete_answered_is_done() {
        assert_eq!(after_delete(&Ok(())), AfterDelete::Retired);
    }
}
