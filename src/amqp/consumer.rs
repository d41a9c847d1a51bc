//! Consuming the inbound queue with manual acks and a prefetch, surviving broker restarts.
//!
//! [`Consumer::next`] returns the next delivery, (re)connecting as needed: every new channel
//! gets `basic.qos(prefetch)` and a fresh `basic.consume` (and the topology when configured)
//! before it is used, so the prefetch and manual-ack mode are re-applied after every
//! reconnect. With several nodes (`[amqp] urls`) a reconnect tries them in turn from the
//! one after the last that failed (`nodes.rs`); a round in which every node failed is one
//! failed attempt, and attempts back off with the same jittered exponential [`RetryPolicy`]
//! as publishing.
//!
//! A delivery is acked only by the caller, after its work is durable. Deliveries received on
//! a channel that has since been lost cannot be acked any more ([`AmqpError::AckFailed`]):
//! the broker requeues them by itself and delivers them again (with `redelivered` set), so
//! the caller must treat inbound messages idempotently (de-duplicate on `message_id`).

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::{
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions},
    types::FieldTable,
    Acker, Channel, Connection, ConnectionProperties,
};
use secrecy::{ExposeSecret, SecretString};

use super::nodes::{Nodes, OnNode};
use super::{AmqpError, RetryPolicy, Topology};

/// How the consumer talks to the broker.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// The nodes of one cluster (`[amqp] urls`, or just `url`): each (re)connect tries them
    /// in turn from the one after the last that failed. Each may carry a password.
    pub urls: Vec<SecretString>,
    /// The queue to consume, e.g. `ers.from-pas`.
    pub queue: String,
    /// Unacked deliveries the broker may send ahead (`[amqp] prefetch`).
    pub prefetch: u16,
    /// How long a connect to one node (with qos, topology and consume) may take.
    pub connect_timeout: Duration,
    /// Declared on every (re)connect when set.
    pub topology: Option<Topology>,
    /// How `amqps://` nodes are verified (`[amqp] tls_*`).
    pub tls: super::AmqpTls,
}

/// One message from the queue, to be acked or rejected by the caller.
pub struct InboundDelivery {
    pub body: Vec<u8>,
    /// The AMQP `message_id` (the PAS's MSH-10 by convention), for de-duplication.
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    /// The broker delivered it before (to us or another consumer) without an ack.
    pub redelivered: bool,
    /// Everything the sender set, for a dead letter that keeps it.
    pub properties: super::DeliveryProperties,
    acker: Acker,
    /// Bounds an ack: on a channel closed from our side lapin may never answer.
    ack_timeout: Duration,
}

impl std::fmt::Debug for InboundDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No body: it carries patient data.
        f.debug_struct("InboundDelivery")
            .field("message_id", &self.message_id)
            .field("correlation_id", &self.correlation_id)
            .field("redelivered", &self.redelivered)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl InboundDelivery {
    fn id(&self) -> String {
        self.message_id.clone().unwrap_or_else(|| "<none>".into())
    }

    /// Acknowledges the delivery: the broker forgets it.
    pub async fn ack(&self) -> Result<(), AmqpError> {
        let acked = self.acker.ack(BasicAckOptions::default());
        self.settle(acked).await
    }

    async fn settle(
        &self,
        rpc: impl Future<Output = lapin::Result<bool>>,
    ) -> Result<(), AmqpError> {
        if !self.acker.usable() {
            return Err(AmqpError::AckFailed {
                message_id: self.id(),
            });
        }
        match tokio::time::timeout(self.ack_timeout, rpc).await {
            Ok(Ok(true)) => Ok(()),
            _ => Err(AmqpError::AckFailed {
                message_id: self.id(),
            }),
        }
    }

    /// Rejects the delivery. With `requeue = false` the broker dead-letters it (the inbound
    /// queue has a dead-letter exchange); with `true` it is delivered again.
    pub async fn reject(&self, requeue: bool) -> Result<(), AmqpError> {
        let rejected = self.acker.reject(BasicRejectOptions { requeue });
        self.settle(rejected).await
    }
}

struct Live {
    conn: Connection,
    /// Kept so the channel lives as long as its consumer stream, and to tell whether a
    /// buffered delivery can still be acked.
    channel: Channel,
    stream: lapin::Consumer,
}

/// A manual-ack consumer of one queue that reconnects on demand. One task owns it.
pub struct Consumer {
    settings: ConsumerSettings,
    /// `settings.urls`, and the node the next connect starts from.
    nodes: Nodes,
    live: Option<Live>,
    /// Connections opened so far (the first one included), for logs and tests.
    connects: u64,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.settings.queue)
            .field("prefetch", &self.settings.prefetch)
            .field("connects", &self.connects)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// A consumer that connects on the first [`next`](Self::next).
    pub fn new(settings: ConsumerSettings) -> Self {
        Self {
            nodes: Nodes::new(settings.urls.clone()),
            settings,
            live: None,
            connects: 0,
        }
    }

    /// Connections opened so far.
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// The next delivery, or `None` once `shutdown` completes. Connection failures are
    /// retried with `policy`'s backoff until shutdown (its `give_up_after` is not used: a
    /// consumer waits for the broker as long as the process runs); a permanent error (a
    /// topology mismatch, a missing queue) is returned.
    pub async fn next<F>(
        &mut self,
        policy: &RetryPolicy,
        shutdown: F,
    ) -> Result<Option<InboundDelivery>, AmqpError>
    where
        F: Future<Output = ()>,
    {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut failures: u32 = 0;
        let mut refusal_logged: Option<&'static str> = None;
        loop {
            if self.live.is_none() {
                let connected = tokio::select! {
                    biased;
                    () = &mut shutdown => return Ok(None),
                    r = self.connect() => r,
                };
                match connected {
                    Ok(on) => {
                        self.connects += 1;
                        tracing::info!(
                            node = %on.node,
                            failed_nodes = ?on.failed,
                            queue = %self.settings.queue,
                            prefetch = self.settings.prefetch,
                            "consuming from broker"
                        );
                        self.live = Some(on.value);
                    }
                    Err(e) if !e.is_retryable() => return Err(e),
                    Err(e) => {
                        failures += 1;
                        let mut delay = policy.backoff.delay_random(failures);
                        if let Some(fix) = e.refusal() {
                            // Configuration, not an outage: said once (until it changes),
                            // retried slowly so a fix on the broker's side needs no restart.
                            delay = delay.max(super::REFUSED_RETRY);
                            if refusal_logged != Some(fix) {
                                tracing::error!(
                                    queue = %self.settings.queue,
                                    fix,
                                    retry_in_secs = delay.as_secs(),
                                    "the broker refused the inbound consumer: this is \
                                     configuration, not an outage"
                                );
                                refusal_logged = Some(fix);
                            }
                        } else {
                            tracing::warn!(
                                queue = %self.settings.queue,
                                attempt = failures,
                                retry_in_ms = delay.as_millis() as u64,
                                error = %e,
                                "consumer connect failed, will retry"
                            );
                        }
                        tokio::select! {
                            biased;
                            () = &mut shutdown => return Ok(None),
                            () = tokio::time::sleep(delay) => {}
                        }
                        continue;
                    }
                }
            }
            let live = self.live.as_mut().expect("connected above");
            let item = tokio::select! {
                biased;
                () = &mut shutdown => return Ok(None),
                item = live.stream.next() => item,
            };
            match item {
                Some(Ok(d)) if !live.channel.status().connected() || !d.acker.usable() => {
                    // Buffered before the channel died: it can no longer be acked, and the
                    // broker delivers it again on the next channel.
                    tracing::debug!(queue = %self.settings.queue, "dropping a delivery from a lost channel");
                    self.drop_live();
                }
                Some(Ok(d)) => {
                    let props = &d.properties;
                    return Ok(Some(InboundDelivery {
                        message_id: props.message_id().as_ref().map(|s| s.to_string()),
                        correlation_id: props.correlation_id().as_ref().map(|s| s.to_string()),
                        redelivered: d.redelivered,
                        properties: super::DeliveryProperties::from_basic(props),
                        body: d.data,
                        acker: d.acker,
                        ack_timeout: self.settings.connect_timeout,
                    }));
                }
                Some(Err(e)) => {
                    tracing::warn!(queue = %self.settings.queue, error = %e, "consumer lost its channel");
                    self.drop_live();
                }
                None => {
                    tracing::warn!(queue = %self.settings.queue, "consumer cancelled by the broker");
                    self.drop_live();
                }
            }
        }
    }

    fn drop_live(&mut self) {
        if let Some(old) = self.live.take() {
            super::close_in_background(old.conn);
        }
    }

    /// Opens a connection, sets the prefetch, declares the topology (when configured) and
    /// starts consuming on one of the nodes ([`Nodes::connect`]: in turn from the one after
    /// the last that failed), each node within the connect timeout.
    async fn connect(&self) -> Result<OnNode<Live>, AmqpError> {
        let s = &self.settings;
        let tls = &s.tls;
        let attempt = |url: SecretString| async move {
            let conn = tls
                .connect(
                    url.expose_secret(),
                    ConnectionProperties::default()
                        .with_connection_name("ers-bridge-inbound".into()),
                )
                .await
                .map_err(AmqpError::Connection)?;
            let channel = conn.create_channel().await.map_err(AmqpError::Connection)?;
            if let Some(t) = &s.topology {
                t.declare(&channel).await?;
            }
            channel
                .basic_qos(s.prefetch, BasicQosOptions::default())
                .await
                .map_err(AmqpError::Connection)?;
            let stream = channel
                .basic_consume(
                    s.queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|source| match source.kind() {
                    lapin::ErrorKind::ProtocolError(e) if e.get_id() == 404 => {
                        AmqpError::Topology {
                            what: "queue",
                            name: s.queue.clone(),
                            source,
                        }
                    }
                    _ => AmqpError::Connection(source),
                })?;
            Ok(Live {
                conn,
                channel,
                stream,
            })
        };
        self.nodes.connect(s.connect_timeout, attempt).await
    }

    /// Cancels consuming and closes the connection. Unacked deliveries go back to the queue.
    pub async fn close(&mut self) {
        if let Some(live) = self.live.take() {
            let _ = live.conn.close(200, "shutdown".into()).await;
        }
    }
}
