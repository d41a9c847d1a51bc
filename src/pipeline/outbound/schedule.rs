//! The schedulers: one task per configured service and list, each polling on its own
//! interval (tokio time, so paused-clock tests can drive it). In app-restricted mode every
//! worklist call first takes one unit of the per-service daily budget from the store
//! ([`crate::store::Store::take_worklist_call`]), so a restart cannot reset it; config
//! validation already refuses a schedule that cannot fit the budget.

use std::sync::Arc;

use chrono::Utc;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::{Pipeline, PollTarget};

/// Starts one polling loop per target; each stops when the app's shutdown fires,
/// after finishing the pass in progress.
pub fn spawn_schedulers(pipeline: &Arc<Pipeline>) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for t in pipeline.targets().to_vec() {
        let p = pipeline.clone();
        set.spawn(async move { poll_loop(p, t).await });
    }
    set
}

async fn poll_loop(p: Arc<Pipeline>, t: PollTarget) {
    let mut ticks = tokio::time::interval(t.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let shutdown = p.shared().shutdown.clone();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.wait() => break,
        }
        if shutdown.is_triggered() {
            break;
        }
        match p.poll_target(&t, Utc::now()).await {
            Ok(r) => tracing::info!(
                service = %t.service,
                list = t.list.code(),
                published = r.published,
                parked = r.parked,
                deferred = r.deferred,
                failed = r.failed,
                "poll finished"
            ),
            Err(e) => {
                tracing::error!(service = %t.service, list = t.list.code(), error = %e, "poll failed")
            }
        }
    }
    tracing::info!(service = %t.service, list = t.list.code(), "scheduler stopped");
}
