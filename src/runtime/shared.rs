//! What both directions share, owned by [`crate::app::App`]: the e-RS client, the store, the
//! link to the PAS ([`PasLink`]), the A004 cache, the per-UBRN claims, this process's place
//! in the cluster, the shutdown signal and the event
//! hub. A pipeline holds an `Arc<Shared>` and never builds or closes these itself.

use std::sync::Arc;

use super::Shutdown;
use crate::cluster::{Claims, Cluster};
use crate::ers::{ErsClient, RefDataCache};
use crate::events::Events;
use crate::store::Store;
use crate::transport::PasLink;

/// The parts every direction uses.
#[derive(Debug)]
pub struct Shared {
    pub ers: ErsClient,
    pub store: Store,
    /// The way to the PAS (the broker by default): what the pipelines deliver through.
    pub pas: PasLink,
    /// A004 code systems (the specialty filter's system, rejection reasons), refreshed
    /// daily.
    pub refdata: RefDataCache,
    /// UBRNs a task of either direction is working on now: an inbound write and an outbound
    /// fetch of the same referral never run at once (in any instance, when the store is
    /// shared: `cluster/claims.rs`).
    pub claims: Claims,
    /// This process among the bridges sharing the store: identity, leases, heartbeat.
    pub cluster: Arc<Cluster>,
    pub shutdown: Shutdown,
    pub events: Events,
}
