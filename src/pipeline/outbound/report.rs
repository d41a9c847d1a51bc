//! What the outbound pipeline reports: the outcome of one referral and the counts of one
//! pass. Observers follow [`crate::events`] instead.

use crate::ids::ControlId;

/// What happened to one referral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This version was handled before (or needs no message).
    Skipped,
    /// Published and recorded: the messages' control ids.
    Published(Vec<ControlId>),
    /// Parked with this reason.
    Parked(String),
    /// Waiting for attachments e-RS has not released yet; tried again on the next poll.
    Deferred,
    /// Another task was already handling this UBRN; nothing was done.
    InProgress,
}

/// Counts of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Worklist entries read (all lists).
    pub worklist_items: usize,
    /// Referral versions published in this pass.
    pub published: usize,
    /// Messages published in this pass.
    pub messages: usize,
    pub parked: usize,
    pub deferred: usize,
    /// Referrals that failed with a retryable error (tried again next pass).
    pub failed: usize,
    /// Worklist calls that failed (retryable: tried again next pass).
    pub worklist_errors: usize,
    /// Worklists e-RS refused for good (a 4xx other than 401, 403 and 429): reported once,
    /// alerted and left alone for an hour; a pass with only these is idle.
    pub worklist_refused: usize,
    /// Worklist calls not made because the app-restricted budget was used up.
    pub budget_exhausted: usize,
    /// Worklists not polled because another instance leads them (holds their lease).
    pub led_elsewhere: usize,
}

impl PassReport {
    /// True when the pass found nothing left to do.
    pub fn is_idle(&self) -> bool {
        self.published == 0
            && self.parked == 0
            && self.deferred == 0
            && self.failed == 0
            && self.worklist_errors == 0
    }

    pub(super) fn add(&mut self, o: &PassReport) {
        self.worklist_items += o.worklist_items;
        self.published += o.published;
        self.messages += o.messages;
        self.led_elsewhere += o.led_elsewhere;
        self.parked += o.parked;
        self.deferred += o.deferred;
        self.failed += o.failed;
        self.worklist_errors += o.worklist_errors;
        self.worklist_refused += o.worklist_refused;
        self.budget_exhausted += o.budget_exhausted;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_is_idle_only_when_nothing_happened_or_failed() {
        let mut r = PassReport {
            worklist_items: 10,
            budget_exhausted: 2,
            ..PassReport::default()
        };
        assert!(r.is_idle(), "reading seen items and skipping polls is idle");
        r.deferred = 1;
        assert!(!r.is_idle());
        let mut total = PassReport::default();
        total.add(&r);
        total.add(&r);
        assert_eq!(total.deferred, 2);
        assert_eq!(total.worklist_items, 20);
    }
}
