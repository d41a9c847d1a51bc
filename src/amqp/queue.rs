//! Direct queue access for the simulators, the demo and the operator tools: take the
//! messages now on a queue one at a time (`basic_get`, acked when taken) and send a message
//! straight to a queue (the default exchange, with confirms), plus a reachability probe.
//! The bridge's own pipelines use [`super::Publisher`] and [`super::Consumer`] instead.

use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use super::{AmqpError, HL7_CONTENT_TYPE};

/// A connection with one confirm-mode channel.
pub struct QueueClient {
    conn: Connection,
    ch: Channel,
}

impl std::fmt::Debug for QueueClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueClient").finish_non_exhaustive()
    }
}

impl QueueClient {
    pub async fn connect(url: &str) -> Result<Self, AmqpError> {
        let conn = Connection::connect(url, ConnectionProperties::default())
            .await
            .map_err(AmqpError::Connection)?;
        let ch = conn.create_channel().await.map_err(AmqpError::Connection)?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(AmqpError::Connection)?;
        Ok(Self { conn, ch })
    }

    /// The next message on `queue` (taken: acked on delivery), or `None` when it is empty.
    pub async fn take(&self, queue: &str) -> Result<Option<Vec<u8>>, AmqpError> {
        let got = self
            .ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .map_err(AmqpError::Connection)?;
        Ok(got.map(|m| m.delivery.data))
    }

    /// Sends `body` straight to `queue` and waits for the broker's confirm.
    pub async fn send(&self, queue: &str, body: &[u8]) -> Result<(), AmqpError> {
        self.ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default()
                    .with_content_type(HL7_CONTENT_TYPE.into())
                    .with_delivery_mode(2),
            )
            .await
            .map_err(AmqpError::Connection)?
            .await
            .map_err(AmqpError::Connection)?;
        Ok(())
    }

    pub async fn close(self) {
        let _ = self.conn.close(200, "done".into()).await;
    }
}

/// Whether a broker answers at `url` within `timeout`.
pub async fn probe(url: &str, timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, QueueClient::connect(url)).await {
        Ok(Ok(c)) => {
            c.close().await;
            true
        }
        _ => false,
    }
}
