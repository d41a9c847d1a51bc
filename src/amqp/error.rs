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
    /// Confirms were not enabled on the channel (a bug: publishing requires them).
    #[error("publisher confirms are not enabled on the channel")]
    ConfirmsNotEnabled,
}

impl AmqpError {
    /// Whether the same operation may succeed later. Only a topology mismatch and a
    /// missing confirm mode are permanent; an unroutable message is retryable because
    /// the PAS team may bind its queue later, and it must not be lost meanwhile.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            AmqpError::Topology { .. } | AmqpError::ConfirmsNotEnabled
        )
    }
}
