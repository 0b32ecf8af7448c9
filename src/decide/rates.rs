//! The rates a run starts from: the job's, or those an earlier run learned from a 429 under the same job
//! rates.

/// The rates a run starts from: the job's, unless an earlier run learned tighter ones under the same job
/// rates (the ledger's latest `learned`). `--limit` or a job whose rates changed starts from the given
/// rates again. Returns them, and whether they are learned ones.
pub fn starting_rates(
    given: &[crate::rate::Rate],
    from_flags: bool,
    learned: Option<&(Vec<String>, Vec<String>)>,
) -> (Vec<crate::rate::Rate>, bool) {
    let as_written: Vec<String> = given.iter().map(ToString::to_string).collect();
    let learned = learned
        .filter(|_| !from_flags)
        .filter(|(under, _)| *under == as_written)
        .and_then(|(_, rates)| rates.iter().map(|r| r.parse().ok()).collect::<Option<Vec<_>>>())
        .filter(|rates| rates.len() == given.len());
    match learned {
        Some(rates) => (rates, true),
        None => (given.to_vec(), false),
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn learned(under: &[&str], rates: &[&str]) -> (Vec<String>, Vec<String>) {
        (under.iter().map(|&r| r.to_owned()).collect(), rates.iter().map(|&r| r.to_owned()).collect())
    }

    #[rstest]
    #[case::nothing_learned(&["20/s", "1000/h"], false, None, &["20/s", "1000/h"], false)]
    #[case::learned_under_the_same_rates(&["20/s", "1000/h"], false, Some(learned(&["20/s", "1000/h"], &["10/s", "1000/h"])), &["10/s", "1000/h"], true)]
    #[case::a_limit_flag_resets_it(&["20/s", "1000/h"], true, Some(learned(&["20/s", "1000/h"], &["10/s", "1000/h"])), &["20/s", "1000/h"], false)]
    #[case::changed_job_rates_reset_it(&["30/s", "1000/h"], false, Some(learned(&["20/s", "1000/h"], &["10/s", "1000/h"])), &["30/s", "1000/h"], false)]
    #[case::an_unreadable_record_is_not_used(&["20/s"], false, Some(learned(&["20/s"], &["ten/s"])), &["20/s"], false)]
    fn a_run_starts_from_learned_rates_only_under_the_same_job_rates(
        #[case] given: &[&str],
        #[case] from_flags: bool,
        #[case] record: Option<(Vec<String>, Vec<String>)>,
        #[case] expected: &[&str],
        #[case] is_learned: bool,
    ) {
        let given: Vec<crate::rate::Rate> = given.iter().map(|r| r.parse().unwrap()).collect();
        let (rates, from_ledger) = starting_rates(&given, from_flags, record.as_ref());
        let rates: Vec<String> = rates.iter().map(ToString::to_string).collect();
        assert_eq!(
            (rates.iter().map(String::as_str).collect::<Vec<_>>(), from_ledger),
            (expected.to_vec(), is_learned)
        );
    }
}
