//! Events of the two clients every direction shares: the e-RS client (one per call
//! attempt) and the broker publisher (connects, confirms, failed attempts).

use std::time::Duration;

use super::metrics::{ErsCallLabels, Metrics, OperationLabels, StatusClass};
use super::InternalEvent;

/// One e-RS call attempt finished (the client logs its own line with the correlation id).
#[derive(Debug, Clone)]
pub struct ErsCallFinished {
    /// The operation id, e.g. `A005`.
    pub operation: &'static str,
    /// The HTTP status, or `None` when no response came.
    pub status: Option<u16>,
    pub latency: Duration,
}

impl InternalEvent for ErsCallFinished {
    fn emit(&self, m: &Metrics) {
        let status_class = StatusClass::of(self.status);
        m.ers_calls
            .get_or_create(&ErsCallLabels {
                operation: self.operation,
                status_class,
            })
            .inc();
        m.ers_calls_by_class[status_class as usize].inc();
        m.ers_call_duration
            .get_or_create(&OperationLabels {
                operation: self.operation,
            })
            .observe(self.latency.as_secs_f64());
        match self.status {
            None | Some(500..=599) => m.ers_outage.log(m.ers_outage.failure(
                self.operation,
                &format!(
                    "{} {}",
                    self.operation,
                    self.status.map_or("no response".to_string(), |s| format!("http {s}"))
                ),
            )),
            Some(_) => m.ers_outage.log(m.ers_outage.success()),
        }
        if matches!(self.status, Some(200..=299)) {
            m.last_ers_success.set(chrono::Utc::now().timestamp());
        }
        match self.status {
            Some(429) => {
                m.ers_rate_limited.inc();
            }
            Some(401 | 403) => {
                m.ers_auth_failing.set(1);
            }
            Some(200..=299) => {
                m.ers_auth_failing.set(0);
            }
            _ => {}
        }
    }
}

/// The credentials were refused before an e-RS call could be made (the OAuth token
/// endpoint, the token file, the legacy session): e-RS authentication is failing, which
/// `/health/ready` and the `ers_auth_failing` alert report; logged once per outage.
#[derive(Debug, Clone)]
pub struct ErsAuthRefused {
    pub operation: &'static str,
}

impl InternalEvent for ErsAuthRefused {
    fn emit(&self, m: &Metrics) {
        m.ers_auth_failing.set(1);
        m.ers_outage.log(m.ers_outage.failure(
            self.operation,
            "the credentials were refused before the call",
        ));
    }
}

/// The publisher opened a broker connection (the first one or a reconnect).
#[derive(Debug, Clone)]
pub struct BrokerConnected {
    pub generation: u64,
}

impl InternalEvent for BrokerConnected {
    fn emit(&self, m: &Metrics) {
        tracing::info!(generation = self.generation, "broker connected");
        m.broker_connects.inc();
        m.broker_refused.set(0);
    }
}

/// A broker connection attempt failed.
#[derive(Debug, Clone)]
pub struct BrokerConnectFailed {
    pub error: String,
    /// The fix, when the broker refused the login or the virtual host
    /// ([`crate::amqp::AmqpError::refusal`]).
    pub refusal: Option<&'static str>,
}

impl InternalEvent for BrokerConnectFailed {
    fn emit(&self, m: &Metrics) {
        tracing::debug!(error = %self.error, "broker connection failed");
        m.broker_connect_failures.inc();
        m.broker_refused.set(i64::from(self.refusal.is_some()));
    }
}

/// The broker confirmed a message.
#[derive(Debug, Clone)]
pub struct MessageConfirmed {
    pub latency: Duration,
}

impl InternalEvent for MessageConfirmed {
    fn emit(&self, m: &Metrics) {
        m.broker_outage.log(m.broker_outage.success());
        m.messages_confirmed.inc();
        m.confirm_duration.observe(self.latency.as_secs_f64());
    }
}

/// One publish attempt failed (the caller decides whether to retry).
#[derive(Debug, Clone)]
pub struct PublishAttemptFailed;

impl InternalEvent for PublishAttemptFailed {
    fn emit(&self, m: &Metrics) {
        m.publish_attempts_failed.inc();
    }
}
