//! Direct queue access for the simulators, the demo and the operator tools: take the
//! messages now on a queue one at a time (`basic_get`, acked when taken, or with a manual
//! ack for a taker that must not lose one), send a message straight to a queue (the
//! default exchange, with confirms), ask whether a queue exists, plus a reachability
//! probe. The bridge's own pipelines use [`super::Publisher`] and [`super::Consumer`]
//! instead.

use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, BasicProperties, Channel, Connection, ConnectionProperties};

use super::{AmqpError, AmqpTls, HL7_CONTENT_TYPE};

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
        Self::connect_named(url, None).await
    }

    /// [`Self::connect`] with a connection name the management UI and `rabbitmqctl
    /// list_connections` show.
    pub async fn connect_named(url: &str, name: Option<&str>) -> Result<Self, AmqpError> {
        Self::connect_with(url, name, &AmqpTls::default()).await
    }

    /// [`Self::connect_named`] verifying an `amqps://` broker as `tls` says.
    pub async fn connect_with(
        url: &str,
        name: Option<&str>,
        tls: &AmqpTls,
    ) -> Result<Self, AmqpError> {
        let props = match name {
            Some(n) => ConnectionProperties::default().with_connection_name(n.into()),
            None => ConnectionProperties::default(),
        };
        let conn = tls
            .connect(url, props)
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

    /// The next message on `queue`, held by the broker until [`Taken::ack`]: if the
    /// connection is lost first, the broker delivers it again. `None` when it is empty.
    pub async fn take_unacked(&self, queue: &str) -> Result<Option<Taken>, AmqpError> {
        let got = self
            .ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(AmqpError::Connection)?;
        Ok(got.map(|m| Taken {
            properties: super::DeliveryProperties::from_basic(&m.delivery.properties),
            body: m.delivery.data,
            acker: m.delivery.acker,
        }))
    }

    /// Whether the connection and its channel are still open.
    pub fn is_connected(&self) -> bool {
        self.conn.status().connected() && self.ch.status().connected()
    }

    /// Whether `queue` exists (a passive declare on a channel of its own, since the
    /// broker closes the channel that asks about a missing queue).
    pub async fn queue_exists(&self, queue: &str) -> Result<bool, AmqpError> {
        let ch = self
            .conn
            .create_channel()
            .await
            .map_err(AmqpError::Connection)?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match ch
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
        {
            Ok(_) => {
                let _ = ch.close(200, "checked".into()).await;
                Ok(true)
            }
            Err(e) => match e.kind() {
                lapin::ErrorKind::ProtocolError(p) if p.get_id() == 404 => Ok(false),
                _ => Err(AmqpError::Connection(e)),
            },
        }
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

/// A message taken by [`QueueClient::take_unacked`].
pub struct Taken {
    pub body: Vec<u8>,
    /// What the sender set (message id, type, headers).
    pub properties: super::DeliveryProperties,
    acker: Acker,
}

impl std::fmt::Debug for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No body: it may carry patient data.
        f.debug_struct("Taken")
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Taken {
    /// Tells the broker the message is dealt with: it is removed from the queue. Fails when
    /// the channel it came on is gone (the broker then delivers it again).
    pub async fn ack(self) -> Result<(), AmqpError> {
        let acked = self
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(AmqpError::Connection)?;
        if acked {
            Ok(())
        } else {
            Err(AmqpError::AckFailed {
                message_id: "<taken from the queue>".into(),
            })
        }
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
