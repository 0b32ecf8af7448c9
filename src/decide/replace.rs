//! The paid rule, and whether `--replace-changed` may delete a changed row's old link.

use crate::terms::Payment;

/// The paid rule, for `--replace-changed` and the refresh totals alike: at least one successful charge, or
/// a single-use link the server marks used. A Links+ status other than `active` is not payment by itself
/// (an expired or disabled link was never paid); it is reported in its own column.
pub fn is_paid(payment: &Payment) -> bool {
    payment.charges > 0 || payment.used == Some(true)
}

/// `--replace-changed`, once the old link's payment state is read (`None`: the link is gone already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replace {
    /// Record `replace_intent`, delete the old link, record `deleted`; the row is then new.
    Delete,
    /// The link was paid: keep it, record why.
    Refuse(String),
}

/// Whether the changed row's old link `old` may be deleted.
pub fn replace(old: &str, payment: Option<&Payment>) -> Replace {
    match payment.filter(|p| is_paid(p)) {
        Some(p) => Replace::Refuse(format!(
            "link {old} has been paid ({} charge{}, {}); it was not replaced: give the changed row a key of its \
             own for a new link, or put the row back as it was",
            p.charges,
            if p.charges == 1 { "" } else { "s" },
            crate::money::display(p.paid_amount, &p.currency)
        )),
        None => Replace::Delete,
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn payment(charges: u64, used: Option<bool>, status: Option<&str>) -> Payment {
        Payment {
            used,
            charges,
            paid_amount: charges * 1000,
            refunded_amount: 0,
            refunded_charges: 0,
            currency: "thb".into(),
            last_paid_at: None,
            link_status: status.map(str::to_owned),
        }
    }

    #[rstest]
    #[case::never_charged(payment(0, Some(false), None), false)]
    #[case::one_charge(payment(1, Some(false), None), true)]
    #[case::used_single_use(payment(0, Some(true), None), true)]
    #[case::plus_unpaid(payment(0, None, Some("active")), false)]
    #[case::plus_paid(payment(2, None, Some("paid")), true)]
    #[case::plus_expired_is_not_paid(payment(0, None, Some("expired")), false)]
    fn the_paid_rule(#[case] payment: Payment, #[case] paid: bool) {
        assert_eq!(is_paid(&payment), paid);
        // One rule for both uses: a paid link is never replaced, an unpaid one is.
        let decision = replace("link_1", Some(&payment));
        assert_eq!(decision == Replace::Delete, !paid, "{decision:?}");
    }

    #[test]
    fn a_link_gone_already_is_deleted_again_harmlessly() {
        assert_eq!(replace("link_1", None), Replace::Delete);
        assert_eq!(
            replace("link_1", Some(&payment(2, None, None))),
            Replace::Refuse(
                "link link_1 has been paid (2 charges, 20.00 THB); it was not replaced: give the changed row a key \
                 of its own for a new link, or put the row back as it was"
                    .into()
            )
        );
    }
}
