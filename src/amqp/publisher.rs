//! Confirmed publishing of HL7 messages to the outbound exchange.
//!
//! One connection and one confirm-mode channel, shared by concurrent publishers (lapin
//! channels are cheap clones; each publish waits for its own confirm). When the connection
//! is lost, the cached channel is dropped and the next publish reconnects, re-enabling
//! confirm mode (and re-declaring the topology when configured). With several nodes
//! (`[amqp] urls`) a reconnect tries them in turn from the one after the last that failed
//! (`nodes.rs`); a round in which every node failed is one failed connect.
//!
//! [`Publisher::publish`] makes one attempt. [`Publisher::publish_with_retry`] retries
//! retryable errors with jittered exponential backoff ([`RetryPolicy`]) until the message is
//! confirmed, the policy's deadline passes or the caller's shutdown future completes.
//!
//! Reconnecting is single-flight: the connection state sits behind one async mutex, so one
//! caller connects while the others wait for its result. Callers that queued behind a failed
//! attempt share that failure instead of each hammering the broker in turn, and a publish
//! that fails on an old connection only discards that connection (tracked by a generation
//! number), never a newer one another caller has just opened.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable, ShortString},
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use super::nodes::{Nodes, OnNode};
use super::{AmqpError, GiveUpReason, RetryPolicy, Topology, APP_ID, HL7_CONTENT_TYPE};
use crate::events::{
    BrokerConnectFailed, BrokerConnected, Events, MessageConfirmed, PublishAttemptFailed,
};
use crate::hl7::Hl7Out;

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
    /// Another exchange than the publisher's (the dead letter); `None` = the outbound one.
    pub exchange: Option<String>,
    /// Extra headers, e.g. `x-ers-error` on a dead-lettered inbound message.
    pub headers: Vec<(String, String)>,
    /// A dead letter's original properties: published with these (and `headers`) instead
    /// of the bridge's own.
    pub original: Option<super::DeliveryProperties>,
}

impl OutboundMessage {
    /// `m` on the outbound exchange: routing key `<tenant>.<MSH-9.1>.<MSH-9.2>`, message id
    /// MSH-10, correlation id what it is about, type `MSH-9.1^MSH-9.2`, header
    /// `x-ers-version` the referral version, `x-ers-replay-of` each replayed message.
    pub fn hl7(tenant: &str, m: Hl7Out) -> Self {
        let (t1, t2) = &m.message_type;
        let message_type = m.type_name();
        Self {
            routing_key: format!("{tenant}.{t1}.{t2}"),
            message_id: m.control_id.to_string(),
            correlation_id: m.about,
            message_type,
            ers_version: m.version.map(|v| v.to_string()).unwrap_or_default(),
            body: m.bytes,
            exchange: None,
            headers: m
                .replay_of
                .iter()
                .map(|o| ("x-ers-replay-of".to_string(), o.to_string()))
                .collect(),
            original: None,
        }
    }

    /// A message that could not be read, to the dead-letter `exchange` under the
    /// properties it came with (when known), with the reason in `x-ers-error` (its kind)
    /// and `x-ers-error-detail` (at most 500 characters).
    pub fn dead_letter(
        exchange: &str,
        body: Vec<u8>,
        (kind, detail): (&str, &str),
        original: Option<super::DeliveryProperties>,
    ) -> Self {
        Self {
            routing_key: String::new(),
            message_id: String::new(),
            correlation_id: String::new(),
            message_type: "unknown".into(),
            ers_version: String::new(),
            body,
            exchange: Some(exchange.to_string()),
            headers: vec![
                ("x-ers-error".into(), kind.to_string()),
                (
                    "x-ers-error-detail".into(),
                    detail.chars().take(500).collect(),
                ),
            ],
            original,
        }
    }

    /// A dead letter `id` sent again to the inbound `queue` (through the default exchange,
    /// which routes by queue name), under its original message id, with header
    /// `x-ers-redriven-from`.
    pub fn redrive(queue: &str, id: &str, body: Vec<u8>, message_id: Option<String>) -> Self {
        Self {
            routing_key: queue.to_string(),
            message_id: String::new(),
            correlation_id: String::new(),
            message_type: String::new(),
            ers_version: String::new(),
            body,
            exchange: Some(String::new()),
            headers: vec![("x-ers-redriven-from".into(), id.to_string())],
            original: Some(super::DeliveryProperties {
                message_id,
                ..super::DeliveryProperties::default()
            }),
        }
    }
}

/// How the publisher talks to the broker.
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    /// The nodes of one cluster (`[amqp] urls`, or just `url`): each (re)connect tries them
    /// in turn from the one after the last that failed. Each may carry a password.
    pub urls: Vec<SecretString>,
    pub exchange: String,
    /// How long to wait for a confirm, and for a (re)connect including the topology.
    pub confirm_timeout: Duration,
    /// Declared on every (re)connect when set.
    pub topology: Option<Topology>,
    /// How `amqps://` nodes are verified (`[amqp] tls_*`).
    pub tls: super::AmqpTls,
}

/// Counters for logs, metrics and tests; monotonic since the publisher was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Connections opened (the first one included).
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Messages confirmed by the broker.
    pub confirmed: u64,
    /// Publish attempts that failed (any reason, the connect included).
    pub failed_attempts: u64,
}

/// What [`Publisher::publish_with_retry`] reports on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Attempts made, 1 when the first one was confirmed.
    pub attempts: u32,
}

/// The live connection and its confirm-mode channel.
struct Live {
    conn: Connection,
    channel: Channel,
    /// Which connect produced it; see [`Publisher::generation`].
    generation: u64,
}

#[derive(Default)]
struct ConnState {
    live: Option<Live>,
    /// The latest connect attempt's number and error when it failed, shared with callers
    /// that waited behind it.
    last_failure: Option<(u64, SharedFailure)>,
    /// Failed connect rounds since the last success, and when the next may start: until
    /// then every caller gets the last failure, so the broker sees one login per backoff
    /// round however many messages wait (issue 21).
    failed_rounds: u32,
    retry_at: Option<tokio::time::Instant>,
    /// The refusal already logged at ERROR (logged again only when it changes).
    refusal_logged: Option<&'static str>,
}

/// The delay before the next connect round after `rounds` failed ones: 250 ms doubling to
/// [`MAX_RECONNECT_DELAY`]; a refused login or vhost waits [`super::REFUSED_RETRY`].
fn reconnect_delay(rounds: u32, refused: bool) -> Duration {
    if refused {
        return super::REFUSED_RETRY;
    }
    let ms = 250u64.saturating_mul(1 << rounds.saturating_sub(1).min(16));
    Duration::from_millis(ms).min(MAX_RECONNECT_DELAY)
}

/// The longest wait between connect rounds while the broker is unreachable: a broker back
/// from a restart is found within this.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// A connect failure in a form that can be handed to several callers.
#[derive(Clone)]
enum SharedFailure {
    Connection(lapin::Error),
    Timeout(u64),
}

impl SharedFailure {
    fn from_error(e: &AmqpError) -> Option<Self> {
        match e {
            AmqpError::Connection(source) => Some(Self::Connection(source.clone())),
            AmqpError::ConnectTimeout { timeout_ms } => Some(Self::Timeout(*timeout_ms)),
            _ => None,
        }
    }

    fn to_error(&self) -> AmqpError {
        match self {
            Self::Connection(source) => AmqpError::Connection(source.clone()),
            Self::Timeout(timeout_ms) => AmqpError::ConnectTimeout {
                timeout_ms: *timeout_ms,
            },
        }
    }
}

/// A confirmed publisher that reconnects on demand.
pub struct Publisher {
    settings: PublisherSettings,
    /// `settings.urls`, and the node the next connect starts from.
    nodes: Nodes,
    state: Mutex<ConnState>,
    /// Connect attempts completed: incremented under the state lock when an attempt ends, and
    /// read without the lock, so a caller can tell whether someone else tried while it
    /// waited for the lock. Its value at a successful connect is that connection's
    /// generation, which lets a failed publish discard only the connection it used.
    generation: AtomicU64,
    /// Where connects, confirms and failed attempts are counted (and logged).
    events: Events,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("exchange", &self.settings.exchange)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher that connects on first use, counting into its own [`Events`].
    pub fn new(settings: PublisherSettings) -> Self {
        Self::with_events(settings, Events::new())
    }

    /// A publisher whose events go to the bridge's shared hub.
    pub fn with_events(settings: PublisherSettings, events: Events) -> Self {
        Self {
            events,
            nodes: Nodes::new(settings.urls.clone()),
            settings,
            state: Mutex::new(ConnState::default()),
            generation: AtomicU64::new(0),
        }
    }

    /// A snapshot of the counters (read from the event metrics; with a shared hub they
    /// count every publisher on it).
    pub fn stats(&self) -> PublisherStats {
        let m = self.events.metrics();
        PublisherStats {
            connects: m.broker_connects.get(),
            connect_failures: m.broker_connect_failures.get(),
            confirmed: m.messages_confirmed.get(),
            failed_attempts: m.publish_attempts_failed.get(),
        }
    }

    /// Connects now (and declares the topology when configured); idempotent.
    pub async fn ensure_connected(&self) -> Result<(), AmqpError> {
        self.channel().await.map(|_| ())
    }

    /// Whether a connection is currently open (for readiness).
    pub async fn is_connected(&self) -> bool {
        match &self.state.lock().await.live {
            Some(live) => live.conn.status().connected() && live.channel.status().connected(),
            None => false,
        }
    }

    /// A new channel on the live connection (connecting when there is none), for questions
    /// that may cost their channel, such as a passive declare of a missing queue.
    pub(super) async fn side_channel(&self) -> Result<Channel, AmqpError> {
        // Connect when needed; a connection lost between that and the lock is asked for
        // once more, and the second failure is the answer.
        for _ in 0..2 {
            self.channel().await?;
            let state = self.state.lock().await;
            if let Some(live) = &state.live {
                return live
                    .conn
                    .create_channel()
                    .await
                    .map_err(AmqpError::Connection);
            }
        }
        Err(AmqpError::ConnectionLost)
    }

    /// The open channel and its generation, connecting when there is none.
    async fn channel(&self) -> Result<(Channel, u64), AmqpError> {
        // Read before queueing on the lock: if the generation moved while we waited, another
        // caller made a connect attempt on our behalf.
        let seen = self.generation.load(Ordering::Acquire);
        let mut state = self.state.lock().await;
        if let Some(live) = &state.live {
            if live.conn.status().connected() && live.channel.status().connected() {
                return Ok((live.channel.clone(), live.generation));
            }
            tracing::warn!(exchange = %self.settings.exchange, "broker connection lost");
        }
        if let Some(old) = state.live.take() {
            super::close_in_background(old.conn);
        }
        if let Some((attempt, failure)) = &state.last_failure {
            let backing_off = state
                .retry_at
                .is_some_and(|at| tokio::time::Instant::now() < at);
            if *attempt > seen || backing_off {
                return Err(failure.to_error());
            }
        }
        let result = self.connect().await;
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        match result {
            Ok(on) => {
                tracing::info!(
                    node = %on.node,
                    failed_nodes = ?on.failed,
                    exchange = %self.settings.exchange,
                    generation,
                    "publisher connected to broker node"
                );
                let (conn, channel) = on.value;
                self.events.emit(BrokerConnected { generation });
                state.last_failure = None;
                state.failed_rounds = 0;
                state.retry_at = None;
                state.refusal_logged = None;
                state.live = Some(Live {
                    conn,
                    channel: channel.clone(),
                    generation,
                });
                Ok((channel, generation))
            }
            Err(e) => {
                let refusal = e.refusal();
                self.events.emit(BrokerConnectFailed {
                    error: e.to_string(),
                    refusal,
                });
                if let Some(fix) = refusal.filter(|r| state.refusal_logged != Some(*r)) {
                    tracing::error!(
                        exchange = %self.settings.exchange,
                        fix,
                        retry_in_secs = super::REFUSED_RETRY.as_secs(),
                        "the broker refused the publisher: this is configuration, not an outage"
                    );
                    state.refusal_logged = Some(fix);
                }
                state.failed_rounds += 1;
                state.retry_at = Some(
                    tokio::time::Instant::now()
                        + reconnect_delay(state.failed_rounds, refusal.is_some()),
                );
                state.last_failure = SharedFailure::from_error(&e).map(|f| (generation, f));
                Err(e)
            }
        }
    }

    /// Opens a connection and a confirm-mode channel and declares the topology on one of the
    /// nodes ([`Nodes::connect`]: in turn from the one after the last that failed), each node
    /// within the confirm timeout (a broker that accepts TCP but never answers must not hang
    /// us).
    async fn connect(&self) -> Result<OnNode<(Connection, Channel)>, AmqpError> {
        let topology = &self.settings.topology;
        let tls = &self.settings.tls;
        let attempt = |url: SecretString| async move {
            let conn = tls
                .connect(
                    url.expose_secret(),
                    ConnectionProperties::default().with_connection_name("ers-bridge".into()),
                )
                .await
                .map_err(AmqpError::Connection)?;
            let ch = conn.create_channel().await.map_err(AmqpError::Connection)?;
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(AmqpError::Connection)?;
            if let Some(t) = topology {
                t.declare(&ch).await?;
            }
            Ok((conn, ch))
        };
        self.nodes
            .connect(self.settings.confirm_timeout, attempt)
            .await
    }

    /// Discards the connection of `generation` if it is still the current one.
    async fn forget_connection(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state.live.as_ref().map(|l| l.generation) != Some(generation) {
            return;
        }
        if let Some(old) = state.live.take() {
            super::close_in_background(old.conn);
        }
    }

    /// Publishes one message and waits for the broker's confirm. `Ok` means the broker has
    /// taken responsibility for it; anything else means it must be retried.
    pub async fn publish(&self, msg: &OutboundMessage) -> Result<(), AmqpError> {
        let started = Instant::now();
        let result = match self.channel().await {
            Ok((ch, generation)) => {
                let result = self.publish_on(&ch, msg).await;
                if let Err(AmqpError::Connection(_) | AmqpError::ConfirmTimeout { .. }) = &result {
                    self.forget_connection(generation).await;
                }
                result
            }
            Err(e) => Err(e),
        };
        match &result {
            Ok(()) => self.events.emit(MessageConfirmed {
                latency: started.elapsed(),
            }),
            Err(_) => self.events.emit(PublishAttemptFailed),
        }
        result
    }

    /// Publishes until the broker confirms, retrying retryable errors with the policy's
    /// jittered exponential backoff. Returns a permanent error at once, and
    /// [`AmqpError::GaveUp`] when `shutdown` completes (checked between attempts: an attempt
    /// in progress finishes first, bounded by the confirm timeout) or the policy's deadline
    /// passes. On success the broker has confirmed the message; a retry after a lost confirm
    /// may have stored it twice, with the same `message_id` (at-least-once).
    pub async fn publish_with_retry<F>(
        &self,
        msg: &OutboundMessage,
        policy: &RetryPolicy,
        shutdown: F,
    ) -> Result<Published, AmqpError>
    where
        F: Future<Output = ()>,
    {
        self.publish_with_retry_observed(msg, policy, shutdown, |_, _| {})
            .await
    }

    /// [`Publisher::publish_with_retry`], calling `on_retry(error, delay)` before each wait so
    /// the caller can report the retry (the pipeline turns it into an event).
    pub async fn publish_with_retry_observed<F, R>(
        &self,
        msg: &OutboundMessage,
        policy: &RetryPolicy,
        shutdown: F,
        mut on_retry: R,
    ) -> Result<Published, AmqpError>
    where
        F: Future<Output = ()>,
        R: FnMut(&AmqpError, Duration),
    {
        let started = Instant::now();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut failures: u32 = 0;
        loop {
            let error = match self.publish(msg).await {
                Ok(()) => {
                    return Ok(Published {
                        attempts: failures + 1,
                    })
                }
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => e,
            };
            failures += 1;
            let delay = policy.backoff.delay_random(failures);
            let give_up = |reason, last: AmqpError| AmqpError::GaveUp {
                message_id: msg.message_id.clone(),
                attempts: failures,
                reason,
                last: Box::new(last),
            };
            if let Some(limit) = policy.give_up_after {
                if started.elapsed() + delay > limit {
                    return Err(give_up(GiveUpReason::Deadline, error));
                }
            }
            tracing::debug!(
                message_id = %msg.message_id,
                attempt = failures,
                retry_in_ms = delay.as_millis() as u64,
                error = %error,
                "publish failed, will retry"
            );
            on_retry(&error, delay);
            tokio::select! {
                biased;
                () = &mut shutdown => return Err(give_up(GiveUpReason::Shutdown, error)),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn publish_on(&self, ch: &Channel, msg: &OutboundMessage) -> Result<(), AmqpError> {
        let exchange = short(
            "exchange",
            msg.exchange.as_deref().unwrap_or(&self.settings.exchange),
        )?;
        let routing_key = short("routing key", &msg.routing_key)?;
        let confirm = ch
            .basic_publish(
                exchange,
                routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &msg.body,
                properties(msg)?,
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
        if let Some(live) = self.state.lock().await.live.take() {
            let _ = live.channel.wait_for_confirms().await;
            let _ = live.conn.close(200, "shutdown".into()).await;
        }
    }
}

/// An AMQP short string (at most 255 bytes): a longer value is refused as what it is,
/// never a panic (lapin's `From` panics; a fuzzed PAS message once made a 144 KB routing
/// key).
fn short(what: &'static str, value: &str) -> Result<ShortString, AmqpError> {
    ShortString::try_new(value).map_err(|_| AmqpError::TooLong {
        what,
        len: value.len(),
    })
}

/// The AMQP properties of DESIGN.md §3. No patient identifiers in headers.
fn properties(msg: &OutboundMessage) -> Result<BasicProperties, AmqpError> {
    if let Some(original) = &msg.original {
        return Ok(original.to_basic(&msg.headers));
    }
    let mut headers = FieldTable::default();
    headers.insert(
        "x-ers-version".into(),
        AMQPValue::LongString(msg.ers_version.clone().into()),
    );
    for (k, v) in &msg.headers {
        headers.insert(k.as_str().into(), AMQPValue::LongString(v.clone().into()));
    }
    Ok(BasicProperties::default()
        .with_content_type(HL7_CONTENT_TYPE.into())
        .with_delivery_mode(2)
        .with_message_id(short("message id", &msg.message_id)?)
        .with_correlation_id(short("correlation id", &msg.correlation_id)?)
        .with_type(short("message type", &msg.message_type)?)
        .with_app_id(APP_ID.into())
        .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64)
        .with_headers(headers))
}
