//! The cluster's events: a heartbeat (instances live, this instance's share of the e-RS
//! rate limit, the leases it holds by kind) and a lease lost.

use super::metrics::{InstanceLabels, LeaseKindLabels, Metrics};
use super::InternalEvent;

/// One heartbeat of this process ([`crate::cluster::Cluster::run`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterBeat {
    pub instance: String,
    /// Instances with a live heartbeat, this one included.
    pub live: usize,
    /// This instance's e-RS calls per second.
    pub calls_per_sec: u32,
    /// Leases held, by kind.
    pub claims: usize,
    pub pollers: usize,
    pub jobs: usize,
}

impl InternalEvent for ClusterBeat {
    fn emit(&self, m: &Metrics) {
        // Every second: counted, not logged.
        m.instance_info
            .get_or_create(&InstanceLabels {
                instance_id: self.instance.clone(),
            })
            .set(1);
        m.cluster_instances.set(self.live as i64);
        m.ers_rate_share.set(i64::from(self.calls_per_sec));
        for (kind, n) in [
            ("claim", self.claims),
            ("poller", self.pollers),
            ("job", self.jobs),
        ] {
            m.leases_held
                .get_or_create(&LeaseKindLabels { kind })
                .set(n as i64);
        }
    }
}

/// A lease this process held was found expired (not renewed in time, or taken over): the
/// work under it stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseLost {
    pub name: String,
    pub term: i64,
}

impl InternalEvent for LeaseLost {
    fn emit(&self, m: &Metrics) {
        tracing::error!(lease = %self.name, term = self.term, "lease lost: the work under it stops, another instance may have it now");
        m.leases_lost.inc();
    }
}
