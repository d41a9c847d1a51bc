//! The schedulers: one task per configured service and list, each polling on its own
//! interval (tokio time, so paused-clock tests can drive it), when this instance leads the
//! list (holds its `poll:` lease, docs/ha.md). An instance that does not lead a list asks
//! for its lease every third of the lease time, so a dead leader's list is taken over
//! within about the lease time; the new leader continues the list's schedule from the
//! stored time of its last poll. The lists are shared out: an instance leading more than
//! its part (the lists over the live instances, rounded up) hands one over per lease time,
//! and one leading its part asks for no more. In app-restricted mode every
//! worklist call first takes one unit of the per-service daily budget from the store
//! ([`crate::store::Store::take_worklist_call`]), so a restart cannot reset it; config
//! validation already refuses a schedule that cannot fit the budget.

use std::sync::Arc;

use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;
use tokio::time::Instant;

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
    let shared = p.shared().clone();
    let cluster = &shared.cluster;
    let lease = format!("poll:{}:{}", t.service, t.list.code());
    // How often an instance that does not lead this list asks for it: a dead leader's
    // list is taken over within the lease time and one of these.
    let check = t
        .interval
        .min(cluster.settings().lease_ttl / 3)
        .max(Duration::from_millis(100));
    let shutdown = shared.shutdown.clone();
    let mut leading = false;
    // The first poll comes at once, unless another leader polled the list lately (then
    // its schedule is continued from the stored time of its last poll).
    let mut due = Instant::now();
    let mut next = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = shutdown.wait() => break,
        }
        if shutdown.is_triggered() {
            break;
        }
        // The worklists are shared out among the live instances: one leading more than
        // its part gives one away now and then; one leading its part takes no more.
        let part = p.targets().len().div_ceil(cluster.live_instances().max(1));
        let polls_held = cluster.held_count("poll:");
        if cluster.is_shared() && leading && polls_held > part && cluster.may_hand_over() {
            if let Ok(Some(f)) = cluster.hold(&lease).await {
                if let Err(e) = cluster.release(&f).await {
                    tracing::warn!(error = %e, "giving a worklist away failed; its lease lapses");
                }
            }
            tracing::info!(service = %t.service, list = t.list.code(), leading = polls_held, part, "worklist handed to another instance");
            leading = false;
            next = Instant::now() + cluster.settings().lease_ttl;
            continue;
        }
        if cluster.is_shared() && !leading && polls_held >= part {
            next = Instant::now() + check;
            continue;
        }
        match cluster.hold(&lease).await {
            Ok(Some(_)) if !leading => {
                leading = true;
                tracing::info!(service = %t.service, list = t.list.code(), "leading this worklist's polls");
                if let Ok(Some(last)) = shared.store.last_poll_ms(&t.service, t.list.code()).await {
                    let since = Utc::now().timestamp_millis() - last;
                    let wait = t.interval.as_millis() as i64 - since;
                    due = due.max(Instant::now() + Duration::from_millis(wait.max(0) as u64));
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                if leading {
                    tracing::info!(service = %t.service, list = t.list.code(), "another instance leads this worklist now");
                }
                leading = false;
                next = Instant::now() + check;
                continue;
            }
            Err(e) => {
                tracing::warn!(service = %t.service, list = t.list.code(), error = %e, "worklist lease not read, poll skipped");
                next = Instant::now() + check;
                continue;
            }
        }
        if Instant::now() >= due {
            match p.poll_target(&t, Utc::now()).await {
                Ok(r) if r.led_elsewhere > 0 => leading = false,
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
            // The next poll an interval after this one was due; after a pass longer than
            // the interval, an interval from now (no burst of late polls).
            due += t.interval;
            if due < Instant::now() {
                due = Instant::now() + t.interval;
            }
        }
        next = due.min(Instant::now() + check);
    }
    tracing::info!(service = %t.service, list = t.list.code(), "scheduler stopped");
}
