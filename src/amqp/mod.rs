//! RabbitMQ, through lapin: the only module that imports lapin.
//!
//! - [`topology`] declares the exchanges and quorum queues of DESIGN.md §3 (with the
//!   dead-letter exchange set, and the inbound queue's single active consumer when
//!   `single_active_consumer = true`) when `declare_topology = true`.
//! - [`publisher`] publishes HL7 messages with publisher confirms, the mandatory flag and
//!   persistent delivery. A publish succeeds only when the broker acks it *and* did not
//!   return it as unroutable; a nack, a return, a lost connection or a confirm timeout is
//!   an [`AmqpError`] and the caller retries — nothing is counted as sent without a confirm.
//!   On a lost connection the publisher reconnects on the next publish (one reconnect at
//!   a time) and re-applies confirm mode and the topology;
//!   [`Publisher::publish_with_retry`] retries with jittered exponential backoff
//!   ([`retry::RetryPolicy`]) until confirmed or shut down. See `docs/amqp.md`.
//! - [`consumer`] consumes a queue with manual acks and a prefetch, re-applied on every
//!   reconnect.
//! - `nodes` picks the node of a cluster (`[amqp] urls`) the publisher and the consumer
//!   connect to: in turn from the one after the last that failed, one round of failures
//!   being one failed connect; logs show a node as `host:port`, never its credentials.
//! - `tls` opens every connection: `amqps://` verified against the system's roots and
//!   `[amqp] tls_ca_file`, with a client certificate when configured ([`AmqpTls`]).
//! - [`queue`] takes and sends single messages on a queue (the simulators, the demo), on
//!   one URL.
//!
//! No patient identifiers go into AMQP headers or properties other than `correlation_id`
//! (the UBRN, a referral id, not a patient id): the management UI shows them.

pub mod consumer;
mod depth;
mod error;
mod nodes;
mod properties;
pub mod publisher;
pub mod queue;
pub mod retry;
mod tls;
pub mod topology;

pub use consumer::{Consumer, ConsumerSettings, InboundDelivery};
pub use depth::QueueDepth;
pub use error::{AmqpError, GiveUpReason, REFUSED_RETRY};
pub use properties::DeliveryProperties;
pub use publisher::{OutboundMessage, Published, Publisher, PublisherSettings, PublisherStats};
pub use queue::QueueClient;
pub use retry::RetryPolicy;
pub use tls::{AmqpTls, TlsFileError};
pub use topology::Topology;

/// `content_type` of every HL7 message the bridge publishes.
pub const HL7_CONTENT_TYPE: &str = "x-application/hl7-v2+er7";
/// `app_id` of every message the bridge publishes.
pub const APP_ID: &str = "ers-bridge";

/// Closes a connection being replaced, in the background: it is usually already broken, and
/// waiting for its close handshake would hold up the reconnect.
fn close_in_background(conn: lapin::Connection) {
    tokio::spawn(async move {
        let _ = conn.close(200, "reconnecting".into()).await;
    });
}
