//! `[lifecycle]` checked: the rules that end a job's links (docs/reference.md, "A link's life"), refused on
//! Links+, which has no API to end a link.

use std::time::Duration;

use super::{PlanError, template};
use crate::job::LifecycleSpec;
use crate::template::Template;
use crate::terms::ApiKind;

/// The longest `expire_after` (ten years): anything longer is a typo.
const LONGEST: Duration = Duration::from_hours(10 * 366 * 24);

/// When the job's links end.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    /// No successful payment this long after the link was made (in the server's time): `expired`.
    pub expire_after: Option<Duration>,
    /// A multiple-use link's places, a template rendered per row: `sold_out` once taken.
    pub capacity: Option<Template>,
    /// A link whose row left the input: `pruned`.
    pub prune: bool,
}

impl Lifecycle {
    /// `[lifecycle]` as written, for a job on `api`.
    pub fn new(spec: &LifecycleSpec, api: ApiKind) -> Result<Lifecycle, PlanError> {
        if api != ApiKind::Links {
            return Err(PlanError::Lifecycle(
                "[lifecycle] needs the classic Links API: Payment Links+ has no API to end a link, so its links \
                 can only be closed in the dashboard. Remove [lifecycle] from this job"
                    .into(),
            ));
        }
        let expire_after = spec
            .expire_after
            .as_deref()
            .map(|text| super::build::duration("[lifecycle] expire_after", text, Duration::from_secs(1), LONGEST))
            .transpose()?;
        let capacity = spec.capacity.as_deref().map(|text| template("[lifecycle] capacity", text)).transpose()?;
        if expire_after.is_none() && capacity.is_none() && !spec.prune {
            return Err(PlanError::Lifecycle(
                "[lifecycle] names no rule: set expire_after, capacity or prune = true (or remove the section)".into(),
            ));
        }
        Ok(Lifecycle { expire_after, capacity, prune: spec.prune })
    }
}

/// A row's capacity as its template renders it: a whole number of payments.
pub(super) fn capacity(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    trimmed.parse().map_err(|_| format!("capacity `{trimmed}` is not a whole number of payments"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(expire_after: Option<&str>, capacity: Option<&str>, prune: bool) -> LifecycleSpec {
        LifecycleSpec { expire_after: expire_after.map(Into::into), capacity: capacity.map(Into::into), prune }
    }

    #[test]
    fn each_rule_reads_as_written() {
        let rules = Lifecycle::new(&spec(Some("30d"), Some("{capacity}"), true), ApiKind::Links).unwrap();
        assert_eq!(rules.expire_after, Some(Duration::from_hours(30 * 24)));
        assert_eq!(rules.capacity.unwrap().placeholders().collect::<Vec<_>>(), ["capacity"]);
        assert!(rules.prune);
    }

    #[test]
    fn links_plus_is_refused_with_the_reason() {
        let refused = Lifecycle::new(&spec(Some("30d"), None, false), ApiKind::LinksPlus).unwrap_err();
        assert!(refused.to_string().starts_with("[lifecycle] needs the classic Links API: Payment Links+ has no API"));
    }

    #[test]
    fn a_section_without_a_rule_or_with_a_bad_duration_is_refused() {
        let none = Lifecycle::new(&spec(None, None, false), ApiKind::Links).unwrap_err();
        assert!(none.to_string().starts_with("[lifecycle] names no rule"), "{none}");
        let bad = Lifecycle::new(&spec(Some("a month"), None, false), ApiKind::Links).unwrap_err();
        assert!(bad.to_string().starts_with("[lifecycle] expire_after"), "{bad}");
    }

    #[test]
    fn a_capacity_is_a_whole_number() {
        assert_eq!(capacity(" 130 "), Ok(130));
        assert_eq!(capacity("12.5"), Err("capacity `12.5` is not a whole number of payments".into()));
        assert_eq!(capacity("-1"), Err("capacity `-1` is not a whole number of payments".into()));
    }
}
