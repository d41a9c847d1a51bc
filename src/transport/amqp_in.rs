//! The PAS's queue as the inbound pipeline's source: consumes it with manual acks, hands
//! each delivery to [`Inbound::handle_in`] as an [`Hl7In`] carrying the delivery's
//! properties (a dead letter keeps them), and acks it only after its outcome is recorded.
//! When the store or the broker fails mid-way, the delivery goes back to the queue after a
//! pause (never a hot requeue loop), and the outage is logged once, not per message.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;

use super::{Hl7In, Received};
use crate::amqp::{Consumer, ConsumerSettings, InboundDelivery, RetryPolicy};
use crate::backoff::Backoff;
use crate::pipeline::inbound::Inbound;
use crate::runtime::Shutdown;

/// Spawns the consumer of the PAS's queue on `tasks`; it ends at shutdown.
pub fn spawn_consumer(inbound: &Arc<Inbound>, settings: ConsumerSettings, tasks: &mut JoinSet<()>) {
    let shutdown = inbound.shutdown().clone();
    tasks.spawn(consume_loop(inbound.clone(), settings, shutdown));
}

/// Consumes until shutdown, handling up to `prefetch` messages at once (messages about the
/// same referral still wait for each other: the per-UBRN claim).
async fn consume_loop(inbound: Arc<Inbound>, settings: ConsumerSettings, shutdown: Shutdown) {
    let limit = Arc::new(tokio::sync::Semaphore::new(usize::from(
        settings.prefetch.max(1),
    )));
    let mut consumer = Consumer::new(settings);
    let policy = RetryPolicy {
        backoff: Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        },
        give_up_after: None,
    };
    let mut tasks = JoinSet::new();
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        match consumer.next(&policy, shutdown.wait()).await {
            Ok(Some(d)) => {
                let inbound = inbound.clone();
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    handle_delivery(&inbound, d, &shutdown).await;
                    drop(permit);
                });
                while tasks.try_join_next().is_some() {}
            }
            Ok(None) => break,
            Err(e) => {
                tracing::error!(error = %e, "inbound consumer stopped");
                break;
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    consumer.close().await;
}

async fn handle_delivery(inbound: &Inbound, mut d: InboundDelivery, shutdown: &Shutdown) {
    let m = inbound.events().metrics();
    // The body moves into the envelope (the delivery keeps what acking needs).
    let input = Hl7In {
        bytes: std::mem::take(&mut d.body),
        received: Received {
            delivery_id: d.message_id.clone(),
            amqp: Some(d.properties.clone()),
        },
    };
    match inbound.handle_in(&input, Utc::now()).await {
        Ok(_) => {
            m.inbound_outage.log(m.inbound_outage.success());
            if let Err(e) = d.ack().await {
                tracing::warn!(error = %e, "ack of an inbound delivery failed; it comes back and is found handled");
            }
        }
        Err(e) if e.is_fenced() => {
            // Not an outage: this process was paused or cut off past the referral's lease,
            // and another instance has it now (docs/ha.md). Said once per message.
            tracing::warn!(error = %e, "inbound message given back: its referral's lease passed to another instance");
            let _ = d.reject(true).await;
        }
        Err(e) => {
            // One line per outage, not per message per retry (events/outage.rs).
            tracing::debug!(error = %e, "inbound message not handled, returned to the queue");
            let id = d.message_id.clone().unwrap_or_default();
            m.inbound_outage
                .log(m.inbound_outage.failure(&id, &e.to_string()));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait() => {}
            }
            let _ = d.reject(true).await;
        }
    }
}
