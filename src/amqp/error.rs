//! The AMQP boundary's error, classified retryable or permanent.

use thiserror::Error;

/// Why a broker operation failed.
#[derive(Debug, Error)]
pub enum AmqpError {
    /// The broker could not be reached, or the connection or channel was lost.
    #[error("broker connection failed: {0}")]
    Connection(#[source] lapin::Error),
    /// Declaring the topology failed (e.g. a queue exists with other arguments).
    #[error("declaring {what} `{name}` failed: {source}")]
    Topology {
        what: &'static str,
        name: String,
        #[source]
        source: lapin::Error,
    },
    /// The broker refused the message (basic.nack).
    #[error("broker nacked message {message_id}")]
    Nacked { message_id: String },
    /// The message was mandatory and no queue was bound for its routing key.
    #[error("broker returned message {message_id} as unroutable: {reply_code} {reply_text}")]
    Returned {
        message_id: String,
        reply_code: u16,
        reply_text: String,
    },
    /// No confirm arrived in time; the message may or may not have been stored.
    #[error("no broker confirm for message {message_id} within {timeout_ms} ms")]
    ConfirmTimeout { message_id: String, timeout_ms: u64 },
    /// Connecting (with confirm mode and the topology) took longer than the timeout.
    #[error("connecting to the broker took longer than {timeout_ms} ms")]
    ConnectTimeout { timeout_ms: u64 },
    /// [`Publisher::publish_with_retry`](super::Publisher::publish_with_retry) stopped
    /// retrying; the message was not confirmed and must be published again later.
    #[error(
        "gave up publishing message {message_id} after {attempts} attempts ({reason}): {last}"
    )]
    GaveUp {
        message_id: String,
        attempts: u32,
        reason: GiveUpReason,
        /// The error of the last attempt.
        #[source]
        last: Box<AmqpError>,
    },
    /// An ack or reject could not be delivered: the channel the message came on is gone. The
    /// broker requeues such a message by itself and delivers it again.
    #[error(
        "ack for inbound message {message_id} failed (channel closed); it will be redelivered"
    )]
    AckFailed { message_id: String },
    /// Confirms were not enabled on the channel (a bug: publishing requires them).
    #[error("publisher confirms are not enabled on the channel")]
    ConfirmsNotEnabled,
    /// A name or property longer than AMQP's short strings allow (255 bytes): the message
    /// cannot be published as it is.
    #[error("the {what} is {len} bytes, over amqp's 255")]
    TooLong { what: &'static str, len: usize },
    /// The connection closed again as soon as it was opened (asked for twice).
    #[error("the broker connection closed as soon as it opened")]
    ConnectionLost,
    /// The settings list no broker node to connect to (a bug: the configuration always has
    /// one).
    #[error("no broker url to connect to")]
    NoBrokerNodes,
}

/// Why retrying stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// The caller's shutdown future completed.
    Shutdown,
    /// The policy's `give_up_after` passed.
    Deadline,
}

impl std::fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GiveUpReason::Shutdown => "shutting down",
            GiveUpReason::Deadline => "deadline passed",
        })
    }
}

impl AmqpError {
    /// When the broker refused the bridge itself (its login or its virtual host), what a
    /// person must fix: retrying sooner changes nothing, and it is not an outage. `run`
    /// still retries, slowly ([`REFUSED_RETRY`]), so fixing the broker's side needs no
    /// restart.
    pub fn refusal(&self) -> Option<&'static str> {
        match self {
            AmqpError::Connection(e) | AmqpError::Topology { source: e, .. } => refusal_of(e),
            AmqpError::GaveUp { last, .. } => last.refusal(),
            _ => None,
        }
    }

    /// Whether the same operation may succeed later. Only a topology mismatch, a missing
    /// confirm mode, an empty node list and an over-long name are permanent; an unroutable message is
    /// retryable because the PAS team may bind its queue later, and it must not be lost
    /// meanwhile. Giving up is retryable too: the message is still owed to the PAS.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            AmqpError::Topology { .. }
                | AmqpError::ConfirmsNotEnabled
                | AmqpError::NoBrokerNodes
                | AmqpError::TooLong { .. }
        )
    }
}

/// How long `run` waits between logins the broker refused (a wrong password or vhost): one
/// attempt per this, not one per message waiting (issue 21: 166 logins in 30 s).
pub const REFUSED_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// The broker's refusal of a login (403 ACCESS_REFUSED) or of a virtual host (530
/// NOT_ALLOWED), or a TLS handshake either side refused, with the fix.
pub(crate) fn refusal_of(e: &lapin::Error) -> Option<&'static str> {
    use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
    let lapin::ErrorKind::ProtocolError(p) = e.kind() else {
        return super::tls::tls_refusal(e);
    };
    match p.kind() {
        AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => Some(
            "the broker refused the login: check the user and password in [amqp] url (or urls)",
        ),
        AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => Some(
            "the broker refused the virtual host: check that the vhost in [amqp] url exists \
             and that the user has permissions on it",
        ),
        _ => None,
    }
}
