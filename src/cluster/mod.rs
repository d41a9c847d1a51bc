//! This process as one of several bridges on one store (docs/ha.md): its identity, the
//! leases it holds, its heartbeat and its share of the app's e-RS rate limit.
//!
//! Nothing here is home-made consensus: the database is the arbiter. A lease
//! ([`crate::store::Fence`]) is a row whose expiry and term come from the database clock;
//! [`Cluster::run`] renews every lease this process holds once a heartbeat, in one
//! statement, and registers the heartbeat that the e-RS rate limit is divided by.
//!
//! **Validity.** Besides the row, this process keeps a local deadline per lease (monotonic
//! clock, which runs on while the process is stopped): the time its last take or renewal
//! was *sent* plus the lease time less one heartbeat. Work under a lease checks [`Cluster::holds`] before
//! each step that reaches outside (a publish, an e-RS write), so a process that was paused
//! past its leases does nothing more under them even before the store has told it; the
//! store's fenced writes refuse what slips through, and e-RS's `If-Match` refuses a stale
//! write after another instance's. A lease found lost at renewal is dropped (logged,
//! counted) and the process carries on as a member of the cluster.
//!
//! **What is leased.** `ubrn:<UBRN>` a referral's claim (outbound fetch and publish, an
//! inbound decision, a replay), only when the store is shared (on SQLite the claim is in
//! memory: one process); `poll:<service>:<list>` a worklist's poller; `job:<name>` a
//! cluster-wide schedule (retention, alerts, the replay of parked items after a mapping
//! change). On SQLite (one instance, by the `run` lock file) every lease is this
//! process's and lives in memory only: no statement is added to the single-instance path.

pub mod claims;

pub use claims::{Claim, Claims};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ers::{ErsClient, Promotion};
use crate::events::{ClusterBeat, Events, LeaseLost};
use crate::store::{Fence, InstanceRow, Store, StoreError};

/// `[cluster]`, validated.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The id shown in logs, metrics, `status` (config, else the host name).
    pub instance_id: String,
    /// How long a lease lasts unless renewed: a dead instance's work is taken over after
    /// at most this (plus a heartbeat).
    pub lease_ttl: Duration,
    /// How often leases are renewed and the heartbeat written.
    pub heartbeat: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            instance_id: host_name(),
            lease_ttl: Duration::from_secs(15),
            heartbeat: Duration::from_secs(1),
        }
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`, `HOSTNAME`), else `ers-bridge`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ers-bridge".into())
}

/// A lease this process holds.
#[derive(Debug)]
struct Held {
    term: i64,
    /// Until when it is surely this process's: when its last take or renewal was sent,
    /// plus the lease time less one heartbeat (see the module doc).
    until: Instant,
    /// A referral claim's promotion, raised when another instance's decision waits.
    promotion: Option<Promotion>,
}

/// This process in the cluster. One per process, shared by every direction.
#[derive(Debug)]
pub struct Cluster {
    store: Store,
    settings: ClusterSettings,
    /// `<instance>#<incarnation>`: unique per process, the lease holder.
    holder: Arc<str>,
    /// This machine's name, for the heartbeat row.
    host: String,
    held: Mutex<HashMap<String, Held>>,
    /// Instances with a live heartbeat (this one included).
    live: AtomicUsize,
    /// This instance's share of the app's e-RS calls per second (0: not set yet).
    share: AtomicU32,
    /// The app's limit, divided among the live instances when the store is shared.
    rate_total: u32,
    /// When this process last gave a worklist away ([`Cluster::may_hand_over`]).
    handed_over: Mutex<Option<Instant>>,
    events: Events,
}

impl Cluster {
    pub fn new(store: Store, settings: ClusterSettings, rate_total: u32, events: Events) -> Self {
        let incarnation = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let holder: Arc<str> = format!("{}#{incarnation}", settings.instance_id).into();
        Self {
            store,
            holder,
            host: host_name(),
            held: Mutex::new(HashMap::new()),
            live: AtomicUsize::new(1),
            share: AtomicU32::new(rate_total),
            rate_total,
            handed_over: Mutex::new(None),
            events,
            settings,
        }
    }

    /// The configured instance id.
    pub fn instance_id(&self) -> &str {
        &self.settings.instance_id
    }

    /// The lease holder: instance id and this process's incarnation.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Whether referral claims are store leases (PostgreSQL): several instances may run.
    pub fn is_shared(&self) -> bool {
        self.store.is_shared()
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// How recent a heartbeat must be for its instance to count as live: the lease time
    /// (at least three heartbeats). An instance silent that long has lost its leases; one
    /// whose heartbeats are merely delayed (a store queue under load) still counts, so the
    /// others never raise their rate shares while it is still calling e-RS.
    pub fn live_window(&self) -> Duration {
        self.settings.lease_ttl.max(self.settings.heartbeat * 3)
    }

    /// Live instances at the last heartbeat.
    pub fn live_instances(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// This instance's e-RS calls per second.
    pub fn rate_share(&self) -> u32 {
        self.share.load(Ordering::Relaxed)
    }

    /// How many leases whose name starts with `prefix` this process holds.
    pub fn held_count(&self, prefix: &str) -> usize {
        self.lock().keys().filter(|n| n.starts_with(prefix)).count()
    }

    /// Whether this process may give one of its worklists away now: at most one hand-over
    /// per lease time, so the others take it before another goes (no flapping).
    pub fn may_hand_over(&self) -> bool {
        let mut last = self.handed_over.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < self.settings.lease_ttl) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// The names of the leases held now, sorted.
    pub fn held_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().keys().cloned().collect();
        v.sort();
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long after sending a take or renewal the lease is surely ours.
    fn margin(&self) -> Duration {
        self.settings
            .lease_ttl
            .saturating_sub(self.settings.heartbeat)
    }

    /// Whether `fence` is still this process's lease, by what this process knows: held,
    /// same term, and its local deadline not passed. Checked before each step that
    /// reaches outside.
    pub fn holds(&self, fence: &Fence) -> bool {
        let now = Instant::now();
        self.lock()
            .get(&fence.name)
            .is_some_and(|h| h.term == fence.term && now < h.until)
    }

    /// Takes lease `name` (free, expired, or already ours), or `None` when another
    /// process holds it.
    pub async fn take(&self, name: &str) -> Result<Option<Fence>, StoreError> {
        self.take_with(name, None).await
    }

    pub(crate) async fn take_with(
        &self,
        name: &str,
        promotion: Option<Promotion>,
    ) -> Result<Option<Fence>, StoreError> {
        let sent = Instant::now();
        let ttl = self.settings.lease_ttl;
        let fence = if self.is_shared() {
            match self
                .store
                .lease_take(name, &self.holder, millis(ttl))
                .await?
            {
                Some(f) => f,
                None => return Ok(None),
            }
        } else {
            // One instance (SQLite, held by the `run` lock file): every lease is this
            // process's, kept here only, never written.
            Fence {
                name: name.to_string(),
                holder: self.holder.clone(),
                term: 0,
            }
        };
        self.lock().insert(
            name.to_string(),
            Held {
                term: fence.term,
                until: sent + self.margin(),
                promotion,
            },
        );
        Ok(Some(fence))
    }

    /// The lease `name` if this process holds it and it is valid, else takes it if free.
    /// What a poller or a cluster-wide job asks before each round.
    pub async fn hold(&self, name: &str) -> Result<Option<Fence>, StoreError> {
        let now = Instant::now();
        if let Some(h) = self.lock().get(name).filter(|h| now < h.until) {
            return Ok(Some(Fence {
                name: name.to_string(),
                holder: self.holder.clone(),
                term: h.term,
            }));
        }
        self.take(name).await
    }

    /// Gives `fence` back (forgotten here at once, released in the store).
    pub async fn release(&self, fence: &Fence) -> Result<(), StoreError> {
        self.forget(fence);
        match self.is_shared() {
            true => self.store.lease_release(fence).await,
            false => Ok(()),
        }
    }

    /// Forgets `fence` locally (its row is deleted by the caller, or expires).
    fn forget(&self, fence: &Fence) {
        let mut held = self.lock();
        if held.get(&fence.name).is_some_and(|h| h.term == fence.term) {
            held.remove(&fence.name);
        }
    }

    /// Registers this process and waits until the other instances have seen it (two
    /// heartbeats), so that its share of the rate limit is never taken before they have
    /// reduced theirs. On SQLite (one instance) it only registers.
    pub async fn join(&self, ers: &ErsClient) -> Result<(), StoreError> {
        self.beat(ers).await?;
        if self.is_shared() && self.live_instances() > 1 {
            tokio::time::sleep(self.settings.heartbeat * 2).await;
            self.beat(ers).await?;
        }
        tracing::info!(
            instance = %self.settings.instance_id,
            holder = %self.holder,
            live = self.live_instances(),
            calls_per_sec = self.rate_share(),
            "joined the cluster"
        );
        Ok(())
    }

    /// One heartbeat: registers it, counts the live instances and sets this instance's
    /// share of the e-RS rate limit.
    async fn beat(&self, ers: &ErsClient) -> Result<(), StoreError> {
        let me = InstanceRow {
            holder: self.holder.to_string(),
            instance: self.settings.instance_id.clone(),
            host: self.host.clone(),
            pid: i64::from(std::process::id()),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_ms: 0,
            heartbeat_ms: 0,
            left_ms: None,
            now_ms: 0,
        };
        let live_ms = millis(self.live_window());
        let live = self.store.instance_beat(&me, live_ms).await?;
        self.live.store(live, Ordering::Relaxed);
        if self.is_shared() {
            let share = share_of(self.rate_total, live);
            if self.share.swap(share, Ordering::Relaxed) != share {
                ers.limiter().set_per_sec(share);
                tracing::info!(
                    live,
                    calls_per_sec = share,
                    total = self.rate_total,
                    "e-rs rate share changed"
                );
            }
        }
        Ok(())
    }

    /// The fence a store write should check: `Some` only when the store is shared (on
    /// SQLite leases are this process's by construction and have no rows).
    pub fn store_fence<'a>(&self, fence: &'a Fence) -> Option<&'a Fence> {
        self.is_shared().then_some(fence)
    }

    /// Renews every held lease; drops (and reports) those that were lost.
    async fn renew(&self) -> Result<(), StoreError> {
        let sent = Instant::now();
        if !self.is_shared() {
            for h in self.lock().values_mut() {
                h.until = sent + self.margin();
            }
            return Ok(());
        }
        let before: Vec<(String, i64)> = self
            .lock()
            .iter()
            .map(|(n, h)| (n.clone(), h.term))
            .collect();
        let renewed = self
            .store
            .leases_renew(&self.holder, millis(self.settings.lease_ttl))
            .await?;
        let ours: HashMap<&str, (i64, bool)> = renewed
            .iter()
            .map(|(n, t, h)| (n.as_str(), (*t, *h)))
            .collect();
        let mut held = self.lock();
        for (name, term) in before {
            let Some(h) = held.get_mut(&name).filter(|h| h.term == term) else {
                continue; // released (or taken again) meanwhile
            };
            match ours.get(name.as_str()) {
                Some((t, hurry)) if *t == term => {
                    h.until = h.until.max(sent + self.margin());
                    if let (Some(p), true) = (&h.promotion, hurry) {
                        p.promote();
                    }
                }
                _ => {
                    held.remove(&name);
                    self.events.emit(LeaseLost { name, term });
                }
            }
        }
        Ok(())
    }

    /// Heartbeats and renewals until `stop`, then gives every lease back and leaves.
    pub async fn run(self: Arc<Self>, ers: ErsClient, stop: crate::runtime::Shutdown) {
        let mut tick = tokio::time::interval(self.settings.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        let mut beats: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.wait() => break,
            }
            let result = async {
                self.renew().await?;
                self.beat(&ers).await?;
                beats += 1;
                if beats.is_multiple_of(3600) {
                    // Each restart is a new row; a day of rows is plenty to show.
                    self.store.instances_forget(86_400_000).await?;
                    self.store.leases_forget(86_400_000).await?;
                }
                Ok::<(), StoreError>(())
            }
            .await;
            match result {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("lease renewal works again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "lease renewal failed; leases lapse unless it recovers");
                }
                Err(_) => {}
            }
            // Past a deadline without a renewal: whatever the store says, these may be
            // another's now.
            let now = Instant::now();
            let mut lost = Vec::new();
            self.lock().retain(|name, h| {
                let keep = now < h.until;
                if !keep {
                    lost.push((name.clone(), h.term));
                }
                keep
            });
            for (name, term) in lost {
                self.events.emit(LeaseLost { name, term });
            }
            self.emit_beat();
        }
        self.leave().await;
    }

    fn emit_beat(&self) {
        let (mut claims, mut pollers, mut jobs) = (0, 0, 0);
        for name in self.lock().keys() {
            match name.split(':').next() {
                Some("ubrn") => claims += 1,
                Some("poll") => pollers += 1,
                _ => jobs += 1,
            }
        }
        self.events.emit(ClusterBeat {
            instance: self.settings.instance_id.clone(),
            live: self.live_instances(),
            calls_per_sec: self.rate_share(),
            claims,
            pollers,
            jobs,
        });
    }

    /// A clean stop: every lease given back (the others take over at once) and the
    /// heartbeat row marked as left.
    pub async fn leave(&self) {
        self.lock().clear();
        if !self.is_shared() {
            if let Err(e) = self.store.instance_leave(&self.holder).await {
                tracing::warn!(error = %e, "marking this instance as stopped failed");
            }
            return;
        }
        if let Err(e) = self.store.leases_release_all(&self.holder).await {
            tracing::warn!(error = %e, "giving the leases back failed; they lapse instead");
        }
        if let Err(e) = self.store.instance_leave(&self.holder).await {
            tracing::warn!(error = %e, "marking this instance as stopped failed");
        }
    }
}

/// An instance's share of `total` calls per second among `live` instances on a shared
/// store: an equal part less one (the network can carry one call of each instance into
/// the next second at the receiving end, and the instances' schedules are independent),
/// at least 1.
pub fn share_of(total: u32, live: usize) -> u32 {
    let live = u32::try_from(live.max(1)).unwrap_or(u32::MAX);
    (total / live).saturating_sub(1).max(1)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_never_add_up_past_the_total() {
        for total in 1..200u32 {
            for live in 1..8usize {
                let s = share_of(total, live);
                assert!(s >= 1);
                if total as usize >= 2 * live {
                    // Each may send one more than its share in a second.
                    assert!((s + 1) as usize * live <= total as usize, "{total} {live}");
                }
            }
        }
        assert_eq!(share_of(20, 1), 19);
        assert_eq!(share_of(60, 3), 19);
    }
}
