//! The rates a run starts from: the job's, or those an earlier run learned from a 429 under the same job
//! rates.

use crate::ledger::LearnedRates;
use crate::rate::Rate;

/// The rates a run starts from: the job's, unless an earlier run learned tighter ones under the same job
/// rates (the ledger's latest `learned`). `--limit` or a job whose rates changed starts from the given
/// rates again. Returns them, and whether they are learned ones.
pub fn starting_rates(given: &[Rate], from_flags: bool, learned: Option<&LearnedRates>) -> (Vec<Rate>, bool) {
    let learned = learned
        .filter(|_| !from_flags)
        .filter(|learned| learned.job_rates == given && learned.rates.len() == given.len());
    match learned {
        Some(learned) => (learned.rates.clone(), true),
        None => (given.to_vec(), false),
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn rates(rates: &[&str]) -> Vec<Rate> {
        rates.iter().map(|r| r.parse().unwrap()).collect()
    }

    fn learned(under: &[&str], kept: &[&str]) -> LearnedRates {
        LearnedRates { job_rates: rates(under), rates: rates(kept) }
    }

    #[rstest]
    #[case::nothing_learned(&["20/s", "1000/h"], false, None, &["20/s", "1000/h"], false)]
    #[case::learned_under_the_same_rates(&["20/s", "1000/h"], false, Some(learned(&["20/s", "1000/h"], &["10/s", "1000/h"])), &["10/s", "1000/h"], true)]
    #[case::the_same_rates_written_another_way(&["20/1s", "1000/60min"], false, Some(learned(&["20/s", "1000/h"], &["10/s", "1000/h"])), &["10/s", "1000/h"], true)]
    #[case::a_limit_flag_resets_it(&["20/s", "1000/h"], true, Some(learned(&["20/s", "1000/h"], &["10/s", "1000/h"])), &["20/s", "1000/h"], false)]
    #[case::changed_job_rates_reset_it(&["30/s", "1000/h"], false, Some(learned(&["20/s", "1000/h"], &["10/s", "1000/h"])), &["30/s", "1000/h"], false)]
    #[case::a_record_of_other_windows_is_not_used(&["20/s"], false, Some(learned(&["20/s"], &["10/s", "5/min"])), &["20/s"], false)]
    fn a_run_starts_from_learned_rates_only_under_the_same_job_rates(
        #[case] given: &[&str],
        #[case] from_flags: bool,
        #[case] record: Option<LearnedRates>,
        #[case] expected: &[&str],
        #[case] is_learned: bool,
    ) {
        let (started, from_ledger) = starting_rates(&rates(given), from_flags, record.as_ref());
        assert_eq!((started, from_ledger), (rates(expected), is_learned));
    }
}
