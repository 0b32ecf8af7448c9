//! What the output says of a row: its status, its link, and the code and words of why it has none.

use super::codes;
use super::row::Disposition;
use crate::ledger::{KeyState, LinkRecord};
use crate::plan::RowError;
use crate::terms::{AnswerTo, Status};

/// What the output says of one row: its status, its link (when it has one) and why it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The status column.
    pub status: Status,
    /// The row's link, when it has one.
    pub link: Option<LinkRecord>,
    /// The error code column.
    pub error_code: String,
    /// The error message column.
    pub error_message: String,
}

impl Report {
    fn plain(status: Status, link: Option<LinkRecord>) -> Report {
        Report { status, link, error_code: String::new(), error_message: String::new() }
    }
}

/// The output of a rejected row.
pub fn rejected(error: &RowError) -> Report {
    Report {
        status: Status::Rejected,
        link: None,
        error_code: format!("{}{}", codes::INVALID_PREFIX, error.field),
        error_message: error.reason.clone(),
    }
}

/// The output of a planned row. `run_start`: the ledger line the reported run began at (a link recorded
/// after it is `created`, before it `existing`; `None` reports every link as created). `link_id` and
/// `changes` say, for a conflict, which link it has and what changed (read from the ledger by the caller).
pub fn report(
    disposition: &Disposition,
    state: Option<&KeyState>,
    run_start: Option<u64>,
    (api, link_id): (crate::terms::ApiKind, &str),
    changes: &str,
) -> Report {
    match disposition {
        Disposition::Existing(link) => {
            let fresh = run_start.is_none_or(|start| link.line() > start);
            Report::plain(if fresh { Status::Created } else { Status::Existing }, Some(*link))
        }
        Disposition::Conflict(link) => {
            let (error_code, why) = match state.and_then(KeyState::replace_refused) {
                Some(reason) => (codes::CONFLICT_PAID, reason.to_owned()),
                None if api == crate::terms::ApiKind::Links => {
                    (codes::CONFLICT, "not re-created (--replace-changed replaces an unpaid link)".to_owned())
                }
                // Links+ can neither end nor change a link: the ways out are the row's.
                None => (
                    codes::CONFLICT,
                    "not re-created (Payment Links+ cannot end or change a link: give the changed row a key of its \
                     own for a new link, or put the row back as it was)"
                        .to_owned(),
                ),
            };
            Report {
                status: Status::Conflict,
                link: Some(*link),
                error_code: error_code.into(),
                error_message: format!("row changed after link {link_id} was made ({changes}); {why}"),
            }
        }
        Disposition::Retired(link) => Report::plain(Status::Retired, Some(*link)),
        Disposition::Unsettled => Report {
            status: Status::Failed,
            link: None,
            error_code: codes::UNREADABLE_ANSWER.into(),
            error_message: state.and_then(KeyState::unsettled).map(unsettled_words).unwrap_or_default(),
        },
        Disposition::Uncertain(_) => Report {
            status: Status::Failed,
            link: None,
            error_code: codes::UNCERTAIN.into(),
            error_message: "the outcome of the last request is unknown; run again to reconcile".into(),
        },
        Disposition::New => match state.and_then(KeyState::failed) {
            Some((code, message)) => {
                Report { status: Status::Failed, link: None, error_code: code.clone(), error_message: message.clone() }
            }
            None => Report::plain(Status::Pending, None),
        },
    }
}

/// Why a row waits to be settled by hand, in the words its output row carries.
pub fn unsettled_words(unread: &crate::terms::Unread) -> String {
    let crate::terms::Unread { answer_to, status, missing, candidates } = unread;
    let settle = "the row is not sent again: settle it with `linkbatch settle`";
    if let Some(n) = candidates {
        format!("`linkbatch recover` found {n} links that could each be this row's; {settle}")
    } else if *answer_to == crate::terms::AnswerTo::Recover {
        format!("`linkbatch recover` found {missing}; {settle}")
    } else {
        format!(
            "the server answered the create with HTTP {status} and no readable {missing} (kept in the ledger); the \
             link may exist, so the row is not sent again: settle it with `linkbatch settle`"
        )
    }
}

/// Why the run stopped at an answer it cannot read (docs/reference.md, "Fail closed"): the row, what the
/// server said, that nothing was sent again, and the way out.
pub fn unreadable_stop(line: u64, key: &str, answer_to: AnswerTo, status: u16, missing: &str) -> String {
    let way_out = if answer_to == AnswerTo::Create {
        "The link may exist: look for it in the dashboard, then `linkbatch settle JOB --key KEY --link-id ID \
         --payment-uri URI`, or `--no-link` if none was made"
    } else {
        "The row stays uncertain: run again once the server answers as documented, or settle it by hand \
         (`linkbatch settle`)"
    };
    format!(
        "line {line} (key `{key}`): the server answered the {} with HTTP {status} and no readable {missing}. \
         Nothing was sent again and the answer is in the ledger. {way_out}",
        answer_to.name()
    )
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::decide::disposition;
    use crate::decide::fixtures::{Ev, index, row, state};

    #[rstest]
    #[case::created_by_this_run(&[Ev::Intent(1), Ev::Created("a")], Some(1), Status::Created, "")]
    #[case::created_by_an_earlier_run(&[Ev::Intent(1), Ev::Created("a")], Some(5), Status::Existing, "")]
    #[case::every_link_created_without_a_run(&[Ev::Intent(1), Ev::Created("a")], None, Status::Created, "")]
    #[case::conflict(&[Ev::Intent(1), Ev::Created("b")], Some(1), Status::Conflict, codes::CONFLICT)]
    #[case::conflict_kept_paid(&[Ev::Created("b"), Ev::Refused], Some(1), Status::Conflict, codes::CONFLICT_PAID)]
    #[case::uncertain(&[Ev::Intent(1)], Some(1), Status::Failed, codes::UNCERTAIN)]
    #[case::failed(&[Ev::Intent(1), Ev::Failed], Some(1), Status::Failed, "invalid_amount")]
    #[case::pending(&[], Some(1), Status::Pending, "")]
    #[case::unsettled(&[Ev::Intent(1), Ev::Unread], Some(1), Status::Failed, codes::UNREADABLE_ANSWER)]
    fn output_of_a_row(
        #[case] events: &[Ev],
        #[case] run_start: Option<u64>,
        #[case] status: Status,
        #[case] code: &str,
    ) {
        let index = index(events);
        let row = row("a");
        let disposition = disposition(&row, state(&index));
        let link = (crate::terms::ApiKind::Links, "link_test_1");
        let out = report(&disposition, state(&index), run_start, link, "title \"b\" -> \"a\"");
        assert_eq!((out.status, out.error_code.as_str()), (status, code));
        assert_eq!(out.link.is_some(), matches!(status, Status::Created | Status::Existing | Status::Conflict));
        assert_eq!(out.error_message.is_empty(), code.is_empty(), "{}", out.error_message);
        if status == Status::Conflict {
            assert!(out.error_message.starts_with("row changed after link link_test_1 was made (title"));
        }
    }

    #[test]
    fn a_rejected_row_names_its_field() {
        let error = RowError { line: 7, key: None, field: "amount", reason: "not a number".into(), extra: Vec::new() };
        let out = rejected(&error);
        assert_eq!(
            (out.status, out.error_code.as_str(), out.error_message.as_str()),
            (Status::Rejected, "invalid_amount", "not a number")
        );
    }

    /// A row `recover` could not match reads the same whether its ledger is from before the `unmatched`
    /// event (`ledger::versions` reads both forms into these).
    #[test]
    fn an_unmatched_row_reads_the_same_in_old_and_new_ledgers() {
        use crate::terms::Unread;
        let old = Unread {
            answer_to: AnswerTo::Recover,
            status: 0,
            missing: "3 links that could each be this row's".into(),
            candidates: None,
        };
        let unmatched = Unread { answer_to: AnswerTo::Recover, status: 0, missing: String::new(), candidates: Some(3) };
        assert_eq!(unsettled_words(&old), unsettled_words(&unmatched));
    }
}
