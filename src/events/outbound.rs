//! The outbound pipeline's events: a referral version published or parked, a publish
//! retried, a worklist polled, a code-table look-up missed.

use std::time::Duration;

use super::metrics::{MessageTypeLabels, Metrics, ServiceLabels, TableLabels, WorklistLabels};
use super::{Event, InternalEvent};
use crate::ids::{ControlId, Ubrn, Version};

/// One message of a referral version confirmed by the broker and recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub ubrn: Ubrn,
    pub version: Version,
    pub control_id: ControlId,
    /// e.g. `REF^I12`.
    pub message_type: String,
}

impl InternalEvent for Published {
    fn emit(&self, m: &Metrics) {
        // At debug, one per message: the trend recorder says each minute's counts at info.
        tracing::debug!(
            ubrn = %self.ubrn,
            version = %self.version,
            control_id = %self.control_id,
            message_type = %self.message_type,
            "message published"
        );
        m.messages_published
            .get_or_create(&MessageTypeLabels {
                message_type: self.message_type.clone(),
            })
            .inc();
        m.trend_to_pas.inc();
    }

    fn observed(&self) -> Option<Event> {
        Some(Event::Published(self.clone()))
    }
}

/// Every message of a referral version published, confirmed and recorded: `took` runs from
/// the first publish to the end of the store's group commit (the pipeline's publish
/// latency, which retention pruning must not stretch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionPublished {
    pub messages: usize,
    pub took: Duration,
}

impl InternalEvent for VersionPublished {
    fn emit(&self, m: &Metrics) {
        m.version_publish_duration.observe(self.took.as_secs_f64());
    }

    fn observed(&self) -> Option<Event> {
        Some(Event::VersionPublished(self.clone()))
    }
}

/// A referral version parked with its reason (it waits for a replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub ubrn: Ubrn,
    /// 0 when the referral could not even be read.
    pub version: Version,
    pub reason: String,
}

impl InternalEvent for Parked {
    fn emit(&self, m: &Metrics) {
        tracing::warn!(ubrn = %self.ubrn, version = %self.version, reason = %self.reason, "referral parked");
        m.referrals_parked.inc();
    }

    fn observed(&self) -> Option<Event> {
        Some(Event::Parked(self.clone()))
    }
}

/// A publish got no confirm and is retried after `retry_in`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRetry {
    pub ubrn: Ubrn,
    pub control_id: ControlId,
    pub error: String,
    pub retry_in: Duration,
}

impl InternalEvent for PublishRetry {
    fn emit(&self, m: &Metrics) {
        tracing::debug!(
            ubrn = %self.ubrn,
            control_id = %self.control_id,
            error = %self.error,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "publish not confirmed, retrying"
        );
        m.broker_outage.log(
            m.broker_outage
                .failure(self.control_id.as_str(), &self.error),
        );
        m.publish_retries.inc();
    }

    fn observed(&self) -> Option<Event> {
        Some(Event::PublishRetry(self.clone()))
    }
}

/// How a worklist poll ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollResult {
    Ok,
    /// The A008 call (or the A004 look-up before it) failed.
    Failed,
    /// Not made: the app-restricted daily budget is used up.
    BudgetExhausted,
    /// e-RS refused the list for good (a 4xx other than 401, 403 and 429).
    Refused,
}

impl PollResult {
    pub fn as_str(self) -> &'static str {
        match self {
            PollResult::Ok => "ok",
            PollResult::Failed => "failed",
            PollResult::BudgetExhausted => "budget_exhausted",
            PollResult::Refused => "refused",
        }
    }
}

/// One worklist poll (A008) of one service and list.
#[derive(Debug, Clone)]
pub struct WorklistPolled {
    pub service: String,
    pub list: &'static str,
    pub result: PollResult,
    /// Entries read (0 unless `Ok`).
    pub items: usize,
    /// Referrals to check (new versions and UBRNs that left the list).
    pub to_check: usize,
    /// Why it failed, for `Failed`.
    pub error: Option<String>,
}

impl InternalEvent for WorklistPolled {
    fn emit(&self, m: &Metrics) {
        match self.result {
            PollResult::Ok => tracing::debug!(
                service = %self.service,
                list = self.list,
                items = self.items,
                to_check = self.to_check,
                "worklist polled"
            ),
            PollResult::Failed => tracing::warn!(
                service = %self.service,
                list = self.list,
                error = self.error.as_deref().unwrap_or(""),
                "worklist poll failed"
            ),
            PollResult::BudgetExhausted => tracing::warn!(
                service = %self.service,
                list = self.list,
                "worklist budget for today used up, skipping poll"
            ),
            PollResult::Refused => tracing::error!(
                service = %self.service,
                list = self.list,
                error = self.error.as_deref().unwrap_or(""),
                retry_in_secs = 3600,
                "e-rs refuses this worklist: fix the [[poll]] entry (service, list, specialty \
                 or clinician); the other lists go on, this one is asked again in an hour"
            ),
        }
        if self.result == PollResult::Ok {
            m.last_successful_poll.set(chrono::Utc::now().timestamp());
        }
        m.worklist_polls
            .get_or_create(&WorklistLabels {
                service: self.service.clone(),
                list: self.list,
                result: self.result.as_str(),
            })
            .inc();
    }
}

/// A mapping's code-table look-up found no entry (the mapping's default was used).
#[derive(Debug, Clone)]
pub struct LookupMissed {
    pub table: String,
    /// The code that has no entry (an e-RS reference code, not patient data).
    pub code: String,
}

impl InternalEvent for LookupMissed {
    fn emit(&self, m: &Metrics) {
        // Once per (table, code) in this process: the list of codes to add is in the store
        // (`status`, the dashboard); a log line per referral would bury it.
        let first = m
            .lookup_misses_logged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((self.table.clone(), self.code.clone()));
        if first {
            tracing::warn!(
                table = %self.table,
                code = %self.code,
                "code table has no entry for this code: add it to mappings/tables (logged once per code)"
            );
        } else {
            tracing::debug!(table = %self.table, code = %self.code, "code table look-up missed");
        }
        m.lookup_misses
            .get_or_create(&TableLabels {
                table: self.table.clone(),
            })
            .inc();
        let now = chrono::Utc::now().timestamp_millis();
        let mut pending = m
            .lookup_misses_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let e = pending
            .entry((self.table.clone(), self.code.clone()))
            .or_insert((0, now, now));
        e.0 += 1;
        e.2 = now;
    }
}

/// The app-restricted worklist budget of a service after a call was taken (or refused).
#[derive(Debug, Clone)]
pub struct WorklistBudget {
    pub service: String,
    pub left: i64,
}

impl InternalEvent for WorklistBudget {
    fn emit(&self, m: &Metrics) {
        tracing::debug!(service = %self.service, left = self.left, "worklist budget");
        m.worklist_budget_left
            .get_or_create(&ServiceLabels {
                service: self.service.clone(),
            })
            .set(self.left.max(0));
    }
}
