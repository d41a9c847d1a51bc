//! `[cluster]`: this bridge among several on one PostgreSQL store (docs/ha.md), parsed
//! strictly and validated into [`crate::cluster::ClusterSettings`].

use std::time::Duration;

use serde::Deserialize;

use crate::cluster::ClusterSettings;

/// `[cluster]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Shown in logs, metrics and `status`; the host name when not set. Give each
    /// instance its own.
    pub instance_id: Option<String>,
    /// How long a lease lasts unless renewed: the longest a dead instance's referral,
    /// worklist or job waits before another instance takes it over.
    pub lease_ttl_secs: u64,
    /// How often each instance renews its leases and writes its heartbeat.
    pub heartbeat_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let d = ClusterSettings::default();
        Self {
            instance_id: None,
            lease_ttl_secs: d.lease_ttl.as_secs(),
            heartbeat_ms: u64::try_from(d.heartbeat.as_millis()).unwrap_or(1000),
        }
    }
}

impl ClusterConfig {
    /// The typed settings, or `(key, reason)`.
    pub(super) fn validate(&self) -> Result<ClusterSettings, (&'static str, String)> {
        let instance_id = match &self.instance_id {
            None => crate::cluster::host_name(),
            Some(id) => {
                let ok = !id.is_empty()
                    && id.len() <= 64
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                if !ok {
                    return Err((
                        "cluster.instance_id",
                        format!("{id:?}: 1 to 64 of a-z, A-Z, 0-9, '-', '_', '.'"),
                    ));
                }
                id.clone()
            }
        };
        let lease_ttl = Duration::from_secs(self.lease_ttl_secs);
        let heartbeat = Duration::from_millis(self.heartbeat_ms);
        if heartbeat < Duration::from_millis(100) {
            return Err(("cluster.heartbeat_ms", "at least 100".into()));
        }
        if lease_ttl < heartbeat * 3 {
            return Err((
                "cluster.lease_ttl_secs",
                format!(
                    "{} s is less than three heartbeats ({} ms each): a lease would lapse between renewals",
                    self.lease_ttl_secs, self.heartbeat_ms
                ),
            ));
        }
        Ok(ClusterSettings {
            instance_id,
            lease_ttl,
            heartbeat,
        })
    }
}
