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

/// Spawns the consumer of the PAS's queue on `tasks`, handling at most `bytes_in_flight`
/// bytes of message bodies at once; it ends at shutdown.
pub fn spawn_consumer(
    inbound: &Arc<Inbound>,
    settings: ConsumerSettings,
    bytes_in_flight: usize,
    tasks: &mut JoinSet<()>,
) {
    let shutdown = inbound.shutdown().clone();
    tasks.spawn(consume_loop(
        inbound.clone(),
        settings,
        bytes_in_flight,
        shutdown,
    ));
}

/// KiB of body a delivery holds against the bytes budget of `budget_kib`: at least 1, and
/// at most the whole budget (a message larger than the budget is handled alone).
fn kib_of(body_len: usize, budget_kib: usize) -> u32 {
    (body_len.div_ceil(1024).max(1).min(budget_kib)) as u32
}

/// Consumes until shutdown, handling up to `prefetch` messages and `bytes_in_flight` bytes
/// of bodies at once (messages about the same referral still wait for each other: the
/// per-UBRN claim). Handling copies a body a few times (parsed, stored, answered), so the
/// bytes budget, not only the count, bounds what the inbound side holds (issue 21: 835 MB
/// for twenty 15 MB messages at prefetch 16).
async fn consume_loop(
    inbound: Arc<Inbound>,
    settings: ConsumerSettings,
    bytes_in_flight: usize,
    shutdown: Shutdown,
) {
    let limit = Arc::new(tokio::sync::Semaphore::new(usize::from(
        settings.prefetch.max(1),
    )));
    let budget_kib = (bytes_in_flight / 1024).max(1);
    let bytes = Arc::new(tokio::sync::Semaphore::new(budget_kib));
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
                let need = kib_of(d.body.len(), budget_kib);
                let Ok(held) = bytes.clone().acquire_many_owned(need).await else {
                    break;
                };
                let inbound = inbound.clone();
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    handle_delivery(&inbound, d, &shutdown).await;
                    drop((permit, held));
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

#[cfg(test)]
mod tests {
    use super::kib_of;

    #[test]
    fn a_delivery_holds_its_size_in_kib_at_least_one_at_most_the_budget() {
        assert_eq!(kib_of(0, 32_768), 1);
        assert_eq!(kib_of(1, 32_768), 1);
        assert_eq!(kib_of(1024, 32_768), 1);
        assert_eq!(kib_of(1025, 32_768), 2);
        assert_eq!(kib_of(15 << 20, 32_768), 15 * 1024);
        assert_eq!(kib_of(64 << 20, 32_768), 32_768, "alone, not never");
    }
}
