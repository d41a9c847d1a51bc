//! The inbound pipeline's events: one per PAS message handled (its kind and what became of
//! it), each reply sent to the PAS, and each message dead-lettered.

use std::time::Duration;

use super::metrics::{InboundLabels, Metrics, ReplyLabels};
use super::{Event, InternalEvent};
use crate::ids::{ControlId, Ubrn};

/// One PAS message handled: read, stored, decided and (where e-RS must hear of it) acted
/// on, or dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundHandled {
    /// The PAS's MSH-10; `None` when the message could not be read.
    pub control_id: Option<ControlId>,
    pub ubrn: Option<Ubrn>,
    /// `rri`, `ack` or `unreadable`.
    pub kind: &'static str,
    /// `done`, `no_action`, `needs_action`, `retry`, `duplicate`, `id_reused` or
    /// `dead_lettered`.
    pub outcome: &'static str,
    /// From receipt (or the retry's start) to the outcome recorded.
    pub took: Duration,
}

impl InternalEvent for InboundHandled {
    fn emit(&self, m: &Metrics) {
        // At debug: the pipeline logs each outcome that matters with its reason (applied,
        // needs action, retry scheduled, dead-lettered); this line would repeat it.
        tracing::debug!(
            control_id = self.control_id.as_ref().map(ControlId::as_str),
            ubrn = self.ubrn.as_ref().map(Ubrn::as_str),
            kind = self.kind,
            outcome = self.outcome,
            took_ms = self.took.as_millis() as u64,
            "pas message handled"
        );
        m.inbound_messages
            .get_or_create(&InboundLabels {
                kind: self.kind,
                outcome: self.outcome,
            })
            .inc();
        m.inbound_duration.observe(self.took.as_secs_f64());
        m.trend_from_pas.inc();
        if self.outcome == "dead_lettered" {
            m.dead_lettered.inc();
        }
        if self.outcome == "needs_action" {
            m.trend_needs_action.inc();
        }
    }

    fn observed(&self) -> Option<Event> {
        Some(Event::InboundHandled(self.clone()))
    }
}

/// The bridge's ACK to a PAS message, published with a confirm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplySent {
    /// The PAS message answered.
    pub control_id: ControlId,
    /// MSA-1: `AA`, `AE` or `AR`.
    pub code: &'static str,
}

impl InternalEvent for ReplySent {
    fn emit(&self, m: &Metrics) {
        tracing::debug!(control_id = %self.control_id, code = self.code, "reply sent to the pas");
        m.replies_sent
            .get_or_create(&ReplyLabels { code: self.code })
            .inc();
    }
}

/// An alert opened or resolved (once per transition: docs/monitoring.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertChanged {
    pub alert: String,
    /// `open` or `resolved`.
    pub state: &'static str,
    pub detail: String,
}

impl InternalEvent for AlertChanged {
    fn emit(&self, m: &Metrics) {
        if self.state == "open" {
            tracing::error!(alert = %self.alert, detail = %self.detail, "alert opened");
            m.alerts_opened.inc();
            m.alerts_open.inc();
        } else {
            tracing::info!(alert = %self.alert, "alert resolved");
            m.alerts_open.dec();
        }
    }

    fn observed(&self) -> Option<Event> {
        Some(Event::Alert(self.clone()))
    }
}

/// One POST of an alert transition to the webhook, delivered or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertWebhookPosted {
    pub alert: String,
    pub state: &'static str,
    pub attempt: u32,
    /// The HTTP status, when the webhook answered.
    pub status: Option<u16>,
    pub delivered: bool,
}

impl InternalEvent for AlertWebhookPosted {
    fn emit(&self, m: &Metrics) {
        let result = if self.delivered {
            tracing::debug!(alert = %self.alert, state = self.state, attempt = self.attempt, "alert webhook delivered");
            "delivered"
        } else {
            tracing::warn!(alert = %self.alert, state = self.state, attempt = self.attempt, status = ?self.status, "alert webhook failed");
            "failed"
        };
        m.alert_webhook_posts
            .get_or_create(&super::metrics::WebhookLabels { result })
            .inc();
    }

    fn observed(&self) -> Option<Event> {
        Some(Event::AlertWebhook(self.clone()))
    }
}

/// One evaluation of the alert conditions finished (observers wait for it on a paused clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertsEvaluated {
    pub firing: usize,
}

impl InternalEvent for AlertsEvaluated {
    fn emit(&self, m: &Metrics) {
        tracing::debug!(firing = self.firing, "alert conditions evaluated");
        m.alert_evaluations.inc();
    }

    fn observed(&self) -> Option<Event> {
        Some(Event::AlertsEvaluated(self.clone()))
    }
}

/// The store's counts of what needs attention, read by the alert evaluation (so a scrape of
/// `/metrics` never queries the store): sets the gauges.
#[derive(Debug, Clone)]
pub struct FactsRead {
    pub facts: crate::store::StoreFacts,
    pub now_ms: i64,
}

impl InternalEvent for FactsRead {
    fn emit(&self, m: &Metrics) {
        let f = &self.facts;
        m.needs_action_open.set(f.needs_action_open);
        m.parked_open.set(f.parked_open);
        m.alerts_open.set(f.alerts_open);
        m.oldest_awaiting_decision.set(
            f.oldest_awaiting_decision_ms
                .map_or(0, |t| (self.now_ms - t).max(0) / 1000),
        );
    }
}

/// The broker's depth of each of the bridge's queues, read by the alert evaluation: sets
/// the queue gauges (a queue that could not be read keeps its last figures).
#[derive(Debug, Clone)]
pub struct QueueDepthsRead {
    pub depths: Vec<crate::transport::QueueDepth>,
}

impl InternalEvent for QueueDepthsRead {
    fn emit(&self, m: &Metrics) {
        for d in &self.depths {
            let labels = super::labels::QueueLabels {
                role: d.role,
                queue: d.queue.clone(),
            };
            if let (Some(n), Some(c)) = (d.messages, d.consumers) {
                m.queue_messages.get_or_create(&labels).set(n.into());
                m.queue_consumers.get_or_create(&labels).set(c.into());
            }
        }
    }
}

/// What this process's probe found for each alert condition it could read (every instance
/// probes; one acts): sets `ers_bridge_alert_condition`, which the Prometheus rules in
/// `deploy/alerts.yml` read, so they fire on exactly the built-in alerts' conditions.
#[derive(Debug, Clone)]
pub struct ConditionsProbed {
    pub states: Vec<(&'static str, bool)>,
}

impl InternalEvent for ConditionsProbed {
    fn emit(&self, m: &Metrics) {
        for (condition, firing) in &self.states {
            m.alert_condition
                .get_or_create(&super::labels::ConditionLabels { condition })
                .set(i64::from(*firing));
        }
    }
}
