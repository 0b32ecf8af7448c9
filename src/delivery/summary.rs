//! What a delivery pass did, in counts, and the line and exit code that say it.

use crate::outcome::Outcome;

/// Messages by how their pass ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliverSummary {
    /// Taken by the server.
    pub delivered: u64,
    /// End of data sent, no reply: not sent again on linkbatch's own judgement.
    pub uncertain: u64,
    /// Refused for good (5xx).
    pub failed: u64,
    /// The message could not be written (an address, a line break in a header, a missing value).
    pub rejected: u64,
    /// 4xx replies (or cut connections) until the attempts ran out: the next run tries again.
    pub deferred: u64,
    /// Not reached: the run was stopped.
    pub left: u64,
    /// A stop was asked.
    pub interrupted: bool,
    /// Rows an earlier run left `uncertain` (sent again only with `--resend-uncertain`).
    pub earlier_uncertain: u64,
    /// Rows whose message an earlier run saw refused.
    pub earlier_failed: u64,
}

impl DeliverSummary {
    /// `deliver: 12 delivered, 1 uncertain, 1 failed, 2 rejected, 0 deferred`.
    pub fn line(&self) -> String {
        let mut line = format!(
            "deliver: {} delivered, {} uncertain, {} failed, {} rejected, {} deferred",
            self.delivered, self.uncertain, self.failed, self.rejected, self.deferred
        );
        if self.left > 0 {
            line = format!("{line}, {} not reached", self.left);
        }
        if self.earlier_uncertain + self.earlier_failed > 0 {
            line = format!(
                "{line}; from earlier runs: {} uncertain, {} failed (deliver --resend-uncertain sends the uncertain again)",
                self.earlier_uncertain, self.earlier_failed
            );
        }
        line
    }

    /// 0 when every message due went; 1 when some row's did not; 130 when stopped.
    pub fn outcome(&self) -> Outcome {
        if self.interrupted {
            Outcome::Interrupted
        } else if self.uncertain
            + self.failed
            + self.rejected
            + self.deferred
            + self.earlier_uncertain
            + self.earlier_failed
            > 0
        {
            Outcome::Incomplete
        } else {
            Outcome::Complete
        }
    }
}
