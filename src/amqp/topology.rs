//! The broker topology of DESIGN.md §3, declared idempotently:
//!
//! | thing | default |
//! |---|---|
//! | outbound exchange | `ers.to-pas` (topic, durable) |
//! | outbound queue | `pas.referrals` (quorum) bound `<tenant>.REF.#` and `<tenant>.ADT.#` |
//! | reply queue | `pas.acks` (quorum) bound `<tenant>.ACK.#`: the bridge's ACKs to the PAS |
//! | inbound queue | `ers.from-pas` (quorum, delivery limit 20, dead-lettered) |
//! | dead letter | exchange `ers.dead-letter` (fanout) → queue `ers.dead-letter` (quorum) |
//!
//! With `[amqp] single_active_consumer = true` the inbound queue also has
//! `x-single-active-consumer = true`: one consumer (bridge) at a time gets its messages.
//!
//! The inbound queue dead-letters **at least once** (`x-dead-letter-strategy =
//! at-least-once`, which RabbitMQ allows only with `x-overflow = reject-publish`): by
//! default a quorum queue dead-letters at most once, so a poison message past its delivery
//! limit could vanish if the dead-letter queue were unavailable at that moment. `[amqp]
//! dead_letter_at_least_once = false` keeps the old declaration for a queue made before
//! (docs/amqp.md says how to switch an existing queue).

use lapin::{
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, ShortString},
    Channel, ExchangeKind,
};

use super::AmqpError;
use crate::config::AmqpConfig;

/// Names of everything the bridge declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// First part of every routing key.
    pub tenant: String,
    pub exchange: String,
    pub pas_queue: String,
    /// The bridge's ACKs to the PAS's messages.
    pub pas_ack_queue: String,
    pub inbound_queue: String,
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    /// Redeliveries of an inbound message before the broker dead-letters it.
    pub inbound_delivery_limit: i64,
    /// Declare the inbound queue with `x-single-active-consumer`: one consumer of several
    /// gets its messages, in order, and another takes over when it goes. Off: consumers
    /// (bridges) compete for the queue.
    pub single_active_consumer: bool,
    /// Declare the inbound queue with at-least-once dead-lettering (and
    /// `x-overflow = reject-publish`, which it requires).
    pub dead_letter_at_least_once: bool,
}

impl Topology {
    /// The topology named in the configuration.
    pub fn from_config(cfg: &AmqpConfig) -> Self {
        Self {
            tenant: cfg.tenant.clone(),
            exchange: cfg.exchange.clone(),
            pas_queue: cfg.pas_queue.clone(),
            pas_ack_queue: cfg.pas_ack_queue.clone(),
            inbound_queue: cfg.inbound_queue.clone(),
            dead_letter_exchange: cfg.dead_letter_exchange.clone(),
            dead_letter_queue: cfg.dead_letter_queue.clone(),
            inbound_delivery_limit: i64::from(cfg.inbound_delivery_limit),
            single_active_consumer: cfg.single_active_consumer,
            dead_letter_at_least_once: cfg.dead_letter_at_least_once,
        }
    }

    /// Declares exchanges, queues and bindings. Safe to call on every start, as long as the
    /// queues' arguments did not change: the broker refuses to redeclare a queue with other
    /// arguments (406 PRECONDITION_FAILED, a permanent [`AmqpError::Topology`]), e.g. after
    /// `single_active_consumer` is switched on an existing inbound queue.
    pub async fn declare(&self, channel: &Channel) -> Result<(), AmqpError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        declare_exchange(channel, &self.exchange, ExchangeKind::Topic, durable).await?;
        declare_exchange(
            channel,
            &self.dead_letter_exchange,
            ExchangeKind::Fanout,
            durable,
        )
        .await?;

        declare_queue(channel, &self.dead_letter_queue, quorum()).await?;
        bind(
            channel,
            &self.dead_letter_queue,
            &self.dead_letter_exchange,
            "#",
        )
        .await?;

        // Referral and patient messages to the PAS's queue, our ACKs to their own: a PAS
        // reading referrals never meets an ACK.
        declare_queue(channel, &self.pas_queue, quorum()).await?;
        for kind in ["REF", "ADT"] {
            let key = format!("{}.{kind}.#", self.tenant);
            bind(channel, &self.pas_queue, &self.exchange, &key).await?;
        }
        declare_queue(channel, &self.pas_ack_queue, quorum()).await?;
        let key = format!("{}.ACK.#", self.tenant);
        bind(channel, &self.pas_ack_queue, &self.exchange, &key).await?;

        declare_queue(channel, &self.inbound_queue, self.inbound_arguments()).await?;
        Ok(())
    }

    /// The inbound queue's arguments: quorum, the delivery limit, the dead-letter exchange
    /// (at least once unless switched off) and, when switched on, single active consumer.
    fn inbound_arguments(&self) -> FieldTable {
        let mut inbound = quorum();
        if self.single_active_consumer {
            inbound.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        }
        inbound.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(self.inbound_delivery_limit),
        );
        inbound.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.dead_letter_exchange.clone().into()),
        );
        if self.dead_letter_at_least_once {
            inbound.insert(
                "x-dead-letter-strategy".into(),
                AMQPValue::LongString("at-least-once".into()),
            );
            inbound.insert(
                "x-overflow".into(),
                AMQPValue::LongString("reject-publish".into()),
            );
        }
        inbound
    }
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

async fn declare_exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
    options: ExchangeDeclareOptions,
) -> Result<(), AmqpError> {
    channel
        .exchange_declare(short(name), kind, options, FieldTable::default())
        .await
        .map_err(|source| declare_error("exchange", name.to_string(), source))
}

async fn declare_queue(channel: &Channel, name: &str, args: FieldTable) -> Result<(), AmqpError> {
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(short(name), options, args)
        .await
        .map(|_| ())
        .map_err(|source| declare_error("queue", name.to_string(), source))
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> Result<(), AmqpError> {
    channel
        .queue_bind(
            short(queue),
            short(exchange),
            short(key),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|source| declare_error("binding", format!("{exchange} -> {queue}"), source))
}

/// A broker refusal of the declaration itself (406 PRECONDITION_FAILED for a queue that
/// exists with other arguments, 403 ACCESS_REFUSED, 404 NOT_FOUND, 405 RESOURCE_LOCKED) is a
/// permanent [`AmqpError::Topology`]; anything else (the connection dropping mid-declare,
/// the broker shutting down) is a retryable [`AmqpError::Connection`].
fn declare_error(what: &'static str, name: String, source: lapin::Error) -> AmqpError {
    match source.kind() {
        lapin::ErrorKind::ProtocolError(e) if matches!(e.get_id(), 403..=406) => {
            AmqpError::Topology { what, name, source }
        }
        _ => AmqpError::Connection(source),
    }
}

fn short(s: &str) -> ShortString {
    s.into()
}
