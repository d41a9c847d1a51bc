//! Confirmed publishing of HL7 messages to the outbound exchange.
//!
//! One connection and one confirm-mode channel, shared by concurrent publishers (lapin
//! channels are cheap clones; each publish waits for its own confirm). When the connection
//! is lost, the cached channel is dropped and the next publish reconnects, re-enabling
//! confirm mode (and re-declaring the topology when configured). Backoff between attempts
//! is the caller's: the pipeline decides how long to keep a referral waiting.

use std::time::Duration;

use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable, ShortString},
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use super::{AmqpError, Topology, APP_ID, HL7_CONTENT_TYPE};

/// One HL7 message ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// `<tenant>.<MSH-9.1>.<MSH-9.2>`, e.g. `default.REF.I12`.
    pub routing_key: String,
    /// MSH-10, deterministic for (UBRN, version, message type).
    pub message_id: String,
    /// The UBRN.
    pub correlation_id: String,
    /// MSH-9 as `REF^I12`.
    pub message_type: String,
    /// The referral's `meta.versionId`, as header `x-ers-version`.
    pub ers_version: String,
    /// The ER7 text (CR segment terminators), encoded per MSH-18.
    pub body: Vec<u8>,
}

/// How the publisher talks to the broker.
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    pub url: SecretString,
    pub exchange: String,
    pub confirm_timeout: Duration,
    /// Declared on every (re)connect when set.
    pub topology: Option<Topology>,
}

/// A confirmed publisher that reconnects on demand.
pub struct Publisher {
    settings: PublisherSettings,
    /// The live connection and its confirm-mode channel; `None` until the first publish
    /// and after the connection is lost.
    state: Mutex<Option<(Connection, Channel)>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("exchange", &self.settings.exchange)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher that connects on first use.
    pub fn new(settings: PublisherSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(None),
        }
    }

    /// Connects now (and declares the topology when configured); idempotent.
    pub async fn ensure_connected(&self) -> Result<(), AmqpError> {
        self.channel().await.map(|_| ())
    }

    /// Whether a connection is currently open (for readiness).
    pub async fn is_connected(&self) -> bool {
        match &*self.state.lock().await {
            Some((conn, ch)) => conn.status().connected() && ch.status().connected(),
            None => false,
        }
    }

    async fn channel(&self) -> Result<Channel, AmqpError> {
        let mut state = self.state.lock().await;
        if let Some((conn, ch)) = &*state {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        *state = None;
        let conn = Connection::connect(
            self.settings.url.expose_secret(),
            ConnectionProperties::default().with_connection_name("ers-bridge".into()),
        )
        .await
        .map_err(AmqpError::Connection)?;
        let ch = conn.create_channel().await.map_err(AmqpError::Connection)?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(AmqpError::Connection)?;
        if let Some(t) = &self.settings.topology {
            t.declare(&ch).await?;
        }
        tracing::info!(exchange = %self.settings.exchange, "connected to broker");
        *state = Some((conn, ch.clone()));
        Ok(ch)
    }

    async fn forget_connection(&self) {
        let mut state = self.state.lock().await;
        if let Some((conn, _)) = state.take() {
            let _ = conn.close(200, "reconnecting".into()).await;
        }
    }

    /// Publishes one message and waits for the broker's confirm. `Ok` means the broker has
    /// taken responsibility for it; anything else means it must be retried.
    pub async fn publish(&self, msg: &OutboundMessage) -> Result<(), AmqpError> {
        let ch = self.channel().await?;
        let result = self.publish_on(&ch, msg).await;
        if let Err(AmqpError::Connection(_) | AmqpError::ConfirmTimeout { .. }) = &result {
            self.forget_connection().await;
        }
        result
    }

    async fn publish_on(&self, ch: &Channel, msg: &OutboundMessage) -> Result<(), AmqpError> {
        let confirm = ch
            .basic_publish(
                ShortString::from(self.settings.exchange.as_str()),
                ShortString::from(msg.routing_key.as_str()),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &msg.body,
                properties(msg),
            )
            .await
            .map_err(AmqpError::Connection)?;
        let timeout = self.settings.confirm_timeout;
        let confirmation = match tokio::time::timeout(timeout, confirm).await {
            Ok(r) => r.map_err(AmqpError::Connection)?,
            Err(_) => {
                return Err(AmqpError::ConfirmTimeout {
                    message_id: msg.message_id.clone(),
                    timeout_ms: timeout.as_millis() as u64,
                })
            }
        };
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(AmqpError::Returned {
                    message_id: msg.message_id.clone(),
                    reply_code: returned.reply_code,
                    reply_text: returned.reply_text.to_string(),
                })
            }
            Confirmation::Nack(None) => Err(AmqpError::Nacked {
                message_id: msg.message_id.clone(),
            }),
            Confirmation::NotRequested => Err(AmqpError::ConfirmsNotEnabled),
        }
    }

    /// Closes the connection after outstanding confirms.
    pub async fn close(&self) {
        if let Some((conn, ch)) = self.state.lock().await.take() {
            let _ = ch.wait_for_confirms().await;
            let _ = conn.close(200, "shutdown".into()).await;
        }
    }
}

/// The AMQP properties of DESIGN.md §3. No patient identifiers in headers.
fn properties(msg: &OutboundMessage) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "x-ers-version".into(),
        AMQPValue::LongString(msg.ers_version.clone().into()),
    );
    BasicProperties::default()
        .with_content_type(HL7_CONTENT_TYPE.into())
        .with_delivery_mode(2)
        .with_message_id(msg.message_id.as_str().into())
        .with_correlation_id(msg.correlation_id.as_str().into())
        .with_type(msg.message_type.as_str().into())
        .with_app_id(APP_ID.into())
        .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64)
        .with_headers(headers)
}
