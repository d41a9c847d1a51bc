//! The seam between the pipelines and the wire to the PAS. The pipelines hand a
//! [`PasLink`] an [`Hl7Out`] and get back a [`Delivery`] (delivered, or refused by the PAS
//! with its reason) or a [`TransportError`] (the outcome is unknown: send the same bytes
//! again); they never see a routing key, an AMQP property or an MLLP frame. The inbound
//! side's listeners turn what arrives into an [`crate::hl7::Hl7In`], hand it to
//! [`crate::pipeline::inbound::Inbound::process`] and put the reply it returns on their own
//! wire ([`amqp_in`] for the PAS's queue).
//!
//! Only this module and the wire modules it wraps (`amqp/`) know which transport a
//! deployment uses; `tests/architecture` keeps the pipelines free of `crate::amqp`.

pub mod amqp_in;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// One of the bridge's queues as the broker sees it (the dashboard's Queues panel).
pub use crate::amqp::QueueDepth;
use crate::amqp::{AmqpError, DeliveryProperties, OutboundMessage, Publisher, RetryPolicy};
use crate::backoff::Backoff;
use crate::hl7::Hl7Out;
use crate::mllp::{Acked, MllpError, MllpSender};

/// What became of a message handed to the PAS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The PAS side took it (the broker confirmed it; over MLLP, the PAS's AA/CA):
    /// `destination` says where it went (a routing key, a peer address), for the store.
    Delivered { destination: String },
    /// The PAS answered that it will not take it (over MLLP, an AE/AR with its reason).
    /// A broker never refuses a routable message, so AMQP never gives this.
    Refused { reason: String },
}

/// Why a message may not have reached the PAS: the outcome is unknown, and the same bytes
/// under the same MSH-10 are sent again (the PAS de-duplicates on MSH-10).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    #[error(transparent)]
    Mllp(#[from] MllpError),
    /// The bridge is stopping: given up before the message was delivered.
    #[error("stopped before the message was delivered")]
    ShuttingDown,
}

impl TransportError {
    /// The fix when the broker refused the bridge's login or vhost
    /// ([`AmqpError::refusal`]).
    pub fn refusal(&self) -> Option<&'static str> {
        match self {
            TransportError::Amqp(e) => e.refusal(),
            _ => None,
        }
    }

    /// Whether trying again may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            TransportError::Amqp(e) => e.is_retryable(),
            TransportError::Mllp(e) => e.is_retryable(),
            TransportError::ShuttingDown => true,
        }
    }
}

/// An HL7 message from the PAS: its bytes exactly as received (MSH-18 decides the charset)
/// and what the transport knows of its delivery.
#[derive(Debug, Clone, Default)]
pub struct Hl7In {
    pub bytes: Vec<u8>,
    pub received: Received,
}

impl Hl7In {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            bytes: bytes.into(),
            received: Received::default(),
        }
    }
}

/// What a transport knows of a delivery; opaque to the pipelines, which only pass it back
/// for a dead letter.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// The transport's own id of the delivery when it has one (the AMQP message id): kept
    /// with a dead letter.
    pub delivery_id: Option<String>,
    /// The AMQP properties the PAS sent, which a dead letter keeps.
    pub(crate) amqp: Option<DeliveryProperties>,
}

/// The way to the PAS this deployment uses (`[transport] to_pas`; AMQP by default).
#[derive(Debug, Clone)]
pub enum PasLink {
    /// RabbitMQ: messages on the outbound exchange under `<tenant>.<MSH-9.1>.<MSH-9.2>`.
    Amqp {
        publisher: Arc<Publisher>,
        tenant: String,
        /// Where a message that cannot be read goes, with its reason.
        dead_letter_exchange: String,
    },
    /// MLLP: one connection to the PAS's listener, each message acknowledged on it.
    Mllp(Arc<MllpSender>),
}

impl PasLink {
    pub fn amqp(
        publisher: Arc<Publisher>,
        tenant: impl Into<String>,
        dead_letter_exchange: impl Into<String>,
    ) -> Self {
        PasLink::Amqp {
            publisher,
            tenant: tenant.into(),
            dead_letter_exchange: dead_letter_exchange.into(),
        }
    }

    /// Hands on a message from the PAS that cannot be read, with its reason (`kind`, and
    /// `detail` of at most 500 characters): on the broker, to the dead-letter exchange under
    /// the properties it came with. The bridge keeps it in the store too (the caller).
    pub async fn dead_letter(
        &self,
        input: &Hl7In,
        (kind, detail): (&str, &str),
    ) -> Result<(), TransportError> {
        match self {
            PasLink::Amqp {
                publisher,
                dead_letter_exchange,
                ..
            } => {
                let out = OutboundMessage::dead_letter(
                    dead_letter_exchange,
                    input.bytes.clone(),
                    (kind, detail),
                    input.received.amqp.clone(),
                );
                Ok(publisher.publish(&out).await?)
            }
            // Answered on its connection (an AR) and kept in the store by the caller.
            PasLink::Mllp(_) => Ok(()),
        }
    }

    /// One attempt to deliver `out` (the inbound side's replies: a failure is recorded and
    /// the stored bytes are sent again later).
    pub async fn send(&self, out: &Hl7Out) -> Result<Delivery, TransportError> {
        match self {
            PasLink::Amqp {
                publisher, tenant, ..
            } => {
                let msg = OutboundMessage::hl7(tenant, out.clone());
                publisher.publish(&msg).await?;
                Ok(Delivery::Delivered {
                    destination: msg.routing_key,
                })
            }
            PasLink::Mllp(sender) => match sender.send(&out.bytes, &out.control_id).await? {
                Acked::Accepted => Ok(Delivery::Delivered {
                    destination: sender.destination(),
                }),
                Acked::Refused(reason) => Ok(Delivery::Refused { reason }),
            },
        }
    }

    /// Delivers `out`, trying again with `backoff` after every failure whose outcome is
    /// unknown (`on_retry` hears each, with the error's text and the wait), until it is delivered or refused, a permanent
    /// error, or `shutdown` completes ([`TransportError::ShuttingDown`]).
    pub async fn deliver<F, R>(
        &self,
        out: &Hl7Out,
        backoff: Backoff,
        shutdown: F,
        mut on_retry: R,
    ) -> Result<Delivery, TransportError>
    where
        F: Future<Output = ()>,
        R: FnMut(String, Duration),
    {
        match self {
            PasLink::Amqp {
                publisher, tenant, ..
            } => {
                let msg = OutboundMessage::hl7(tenant, out.clone());
                let policy = RetryPolicy {
                    backoff,
                    give_up_after: None,
                };
                let observe = |e: &AmqpError, wait: Duration| on_retry(e.to_string(), wait);
                match publisher
                    .publish_with_retry_observed(&msg, &policy, shutdown, observe)
                    .await
                {
                    Ok(_) => Ok(Delivery::Delivered {
                        destination: msg.routing_key,
                    }),
                    Err(AmqpError::GaveUp { .. }) => Err(TransportError::ShuttingDown),
                    Err(e) => Err(e.into()),
                }
            }
            PasLink::Mllp(sender) => {
                let mut shutdown = std::pin::pin!(shutdown);
                let mut attempt = 0u32;
                loop {
                    let sent = tokio::select! {
                        biased;
                        () = &mut shutdown => return Err(TransportError::ShuttingDown),
                        r = self.send(out) => r,
                    };
                    let error = match sent {
                        Err(e) if e.is_retryable() => e.to_string(),
                        // `on_refusal = "retry"`: an AE/AR waits and is sent again.
                        Ok(Delivery::Refused { reason }) if sender.retries_refusals() => {
                            format!("the PAS refused it: {reason}")
                        }
                        other => return other,
                    };
                    attempt += 1;
                    let wait = backoff.delay_random(attempt);
                    on_retry(error, wait);
                    tokio::select! {
                        () = &mut shutdown => return Err(TransportError::ShuttingDown),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// What the link is, for an operator: `the broker`, `the pas's mllp listener at …`.
    pub fn describe(&self) -> String {
        match self {
            PasLink::Amqp { .. } => "the broker".into(),
            PasLink::Mllp(sender) => format!("the pas's mllp listener ({})", sender.destination()),
        }
    }

    /// Whether the link is up now (for readiness and the broker-down alert).
    pub async fn is_connected(&self) -> bool {
        match self {
            PasLink::Amqp { publisher, .. } => publisher.is_connected().await,
            PasLink::Mllp(sender) => sender.is_connected(),
        }
    }

    /// Connects when not connected; the error names what failed.
    pub async fn ensure_connected(&self) -> Result<(), TransportError> {
        match self {
            PasLink::Amqp { publisher, .. } => Ok(publisher.ensure_connected().await?),
            PasLink::Mllp(sender) => Ok(sender.ensure_connected().await?),
        }
    }

    /// The depth of each `(role, queue)` on the broker (passive declares over the
    /// publisher's connection); empty without a broker (MLLP to the PAS).
    pub async fn queue_depths(&self, queues: &[(&'static str, String)]) -> Vec<QueueDepth> {
        match self {
            PasLink::Amqp { publisher, .. } => publisher.queue_depths(queues).await,
            PasLink::Mllp(_) => Vec::new(),
        }
    }

    /// The broker publisher, for what only a broker can do (a dead letter, a re-drive to
    /// the inbound queue).
    pub fn broker(&self) -> Option<&Arc<Publisher>> {
        match self {
            PasLink::Amqp { publisher, .. } => Some(publisher),
            PasLink::Mllp(_) => None,
        }
    }

    /// Closes the link at shutdown, after the last delivery.
    pub async fn close(&self) {
        match self {
            PasLink::Amqp { publisher, .. } => publisher.close().await,
            PasLink::Mllp(sender) => sender.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_outcome_is_sent_again_and_a_broken_topology_is_not() {
        let nacked = TransportError::Amqp(AmqpError::Nacked {
            message_id: "x".into(),
        });
        assert!(nacked.is_retryable(), "a nack is retried");
        assert!(TransportError::ShuttingDown.is_retryable());
        assert!(!TransportError::Amqp(AmqpError::ConfirmsNotEnabled).is_retryable());
    }
}
