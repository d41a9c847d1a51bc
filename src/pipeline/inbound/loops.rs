//! The inbound direction's long-running tasks, as `outbound::spawn_schedulers` is the
//! outbound's: the consumer of the PAS's queue (each delivery handled as a task, acked only
//! after its outcome is recorded) and the loop that runs the retries the store says are
//! due.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;

use super::Inbound;
use crate::amqp::{Consumer, ConsumerSettings, RetryPolicy};
use crate::backoff::Backoff;
use crate::runtime::Shutdown;

/// Spawns the consumer and the retry loop on `tasks`; both end at shutdown.
pub fn spawn_loops(inbound: &Arc<Inbound>, consumer: ConsumerSettings, tasks: &mut JoinSet<()>) {
    tasks.spawn(consume_loop(
        inbound.clone(),
        consumer,
        inbound.shared.shutdown.clone(),
    ));
    tasks.spawn(retry_loop(inbound.clone()));
}

/// Consumes the inbound queue until shutdown, handling up to `prefetch` messages at once
/// (messages about the same referral still wait for each other: the per-UBRN claim). Each
/// delivery is acked only after its outcome is recorded. When the store or broker fails
/// mid-way, the delivery goes back to the queue after a pause (never a hot requeue loop).
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
    let mut tasks = tokio::task::JoinSet::new();
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

async fn handle_delivery(inbound: &Inbound, d: crate::amqp::InboundDelivery, shutdown: &Shutdown) {
    let m = inbound.events().metrics();
    match inbound
        .handle_with(&d.body, Some(&d.properties), Utc::now())
        .await
    {
        Ok(_) => {
            m.inbound_outage.log(m.inbound_outage.success());
            if let Err(e) = d.ack().await {
                tracing::warn!(error = %e, "ack of an inbound delivery failed; it comes back and is found handled");
            }
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

/// Runs the inbound retries the store says are due, every second, until shutdown.
async fn retry_loop(inbound: Arc<Inbound>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = inbound.shared.shutdown.wait() => break,
        }
        if let Err(e) = inbound.retry_due(Utc::now()).await {
            tracing::warn!(error = %e, "inbound retries failed, trying again later");
        }
    }
}
