//! The inbound direction's own long-running task, as `outbound::spawn_schedulers` is the
//! outbound's: the loop that runs the retries the store says are due (their replies go to
//! the PAS through the deployment's link). The sources of PAS messages are the
//! transports' (`transport::amqp_in`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;

use super::Inbound;

/// Spawns the retry loop on `tasks`; it ends at shutdown.
pub fn spawn_loops(inbound: &Arc<Inbound>, tasks: &mut JoinSet<()>) {
    tasks.spawn(retry_loop(inbound.clone()));
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
