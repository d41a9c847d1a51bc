//! The bridge's internal events: one small struct per thing that happens (a message
//! published, a referral parked, a publish retried, an e-RS call finished, a worklist
//! polled, a broker connection opened …). Each struct's [`InternalEvent::emit`] writes its
//! log line and updates its counters in one place, the shape of vector's
//! `internal_events`; nothing else in the crate increments a metric or logs the event.
//!
//! [`Events`] is the cheap-to-clone hub every part of the bridge is handed: it holds the
//! [`Metrics`] (prometheus-client families, encoded by [`Events::encode`] for `/metrics`)
//! and a broadcast of the [`Event`]s observers care about (tests, the monitor). Events that
//! happen many times per referral (e-RS calls, broker connects) are counted, not broadcast.
//!
//! Labels are low-cardinality by construction: message type, operation, status class,
//! service and list (both from the configuration), table name, result. A UBRN, NHS number
//! or control id may be a log field (UBRNs and control ids at info, never patient data),
//! never a metric label.
//!
//! - `outbound.rs`: the outbound pipeline's events (published, parked, publish retry,
//!   worklist polled, lookup missed).
//! - `clients.rs`: the e-RS client's and the broker publisher's events.
//! - `inbound.rs`: the inbound pipeline's events (a PAS message handled, a reply sent)
//!   and the alert transitions.
//! - `cluster.rs`: this process in the cluster (heartbeat, a lease lost).
//! - `metrics.rs`: the metric families and their names.
//! - `outage.rs`: one log line per outage (start, a reminder a minute, end), not one per
//!   failed attempt.

mod clients;
mod cluster;
mod inbound;
mod labels;
mod metrics;
mod outage;
mod outbound;

use std::sync::Arc;

use tokio::sync::broadcast;

pub use clients::{
    BrokerConnectFailed, BrokerConnected, ErsAuthRefused, ErsCallFinished, MessageConfirmed,
    PublishAttemptFailed,
};
pub use cluster::{ClusterBeat, LeaseLost};
pub use inbound::{
    AlertChanged, AlertWebhookPosted, AlertsEvaluated, ConditionsProbed, FactsRead, InboundHandled,
    QueueDepthsRead, ReplySent,
};
pub use metrics::{Metrics, StatusClass};
pub use outage::{Outage, OutageLog};
pub use outbound::{
    LookupMissed, Parked, PollResult, PublishRetry, Published, VersionPublished, WorklistBudget,
    WorklistPolled,
};

/// One internal event: its log line and its counters.
pub trait InternalEvent {
    /// Logs the event and updates its metrics.
    fn emit(&self, metrics: &Metrics);

    /// The observer event to broadcast, for the few events observers follow.
    fn observed(&self) -> Option<Event> {
        None
    }
}

/// What observers (tests, the monitor) can subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Published(Published),
    VersionPublished(VersionPublished),
    Parked(Parked),
    PublishRetry(PublishRetry),
    InboundHandled(InboundHandled),
    Alert(AlertChanged),
    AlertWebhook(AlertWebhookPosted),
    AlertsEvaluated(AlertsEvaluated),
}

/// The hub: metrics plus the observer broadcast. Cheap to clone; every clone is the same
/// hub.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

struct Inner {
    metrics: Metrics,
    tx: broadcast::Sender<Event>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    /// A new hub with fresh metrics (a lagging subscriber loses the oldest of 1,024).
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                metrics: Metrics::new(),
                tx: broadcast::channel(1024).0,
            }),
        }
    }

    /// Logs and counts the event, and broadcasts it when observers follow its kind.
    pub fn emit(&self, event: impl InternalEvent) {
        event.emit(&self.inner.metrics);
        if self.inner.tx.receiver_count() > 0 {
            if let Some(e) = event.observed() {
                let _ = self.inner.tx.send(e);
            }
        }
    }

    /// Observer events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.tx.subscribe()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The metrics in the OpenMetrics text format (what `/metrics` serves).
    pub fn encode(&self) -> String {
        self.inner.metrics.encode()
    }
}

#[cfg(test)]
mod tests;
