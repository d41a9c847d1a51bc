//! The validated configuration the rest of the crate uses: [`Config`], built from the raw
//! file by [`super::raw::RawConfig::validate`] and only by it. Sections whose values
//! validation changes have their own types here (durations instead of `_secs`/`_ms`
//! numbers, a concurrency that is at least 1, an optional patient mapping instead of an
//! empty string); sections validation only checks are the raw ones, re-exported from
//! [`super`]. Nothing outside `config/` names `config::raw`.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{AlertsConfig, AmqpConfig, ErsConfig, MonitorConfig, StoreConfig, WorklistKind};
use crate::backoff::Backoff;

/// The whole validated configuration.
#[derive(Debug)]
pub struct Config {
    pub ers: ErsConfig,
    pub amqp: AmqpConfig,
    pub store: StoreConfig,
    pub monitor: MonitorConfig,
    pub mappings: MappingFiles,
    /// One entry per polled e-RS service (services are unique).
    pub poll: Vec<Poll>,
    pub pipeline: PipelineTuning,
    pub inbound: InboundTuning,
    pub alerts: AlertsConfig,
    /// `None`: the broker (`[amqp]`); `Some`: the PAS's MLLP listener.
    pub mllp_to_pas: Option<crate::mllp::SenderSettings>,
    /// `[cluster]`: this instance's id and its leases' timing.
    pub cluster: crate::cluster::ClusterSettings,
}

/// `[inbound]`, validated.
#[derive(Debug, Clone)]
pub struct InboundTuning {
    pub enabled: bool,
    /// At least 1.
    pub max_attempts: u32,
    /// Between retries of a transient e-RS failure (initial ≤ max).
    pub retry: Backoff,
    /// The MLLP listener, when configured.
    pub mllp: Option<crate::mllp::listener::ListenerSettings>,
}

impl Config {
    /// One target per configured service and list, in file order.
    pub fn poll_targets(&self) -> Vec<PollTarget> {
        self.poll
            .iter()
            .flat_map(|p| {
                p.lists.iter().map(|l| PollTarget {
                    service: p.service.clone(),
                    list: *l,
                    interval: p.interval,
                    specialty: p.specialty.clone(),
                    clinician: p.clinician.clone(),
                })
            })
            .collect()
    }

    /// How long message payloads are kept (`[store] retention_days`).
    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.store.retention_days) * 86_400)
    }
}

/// `[mappings]`, validated: the files the pipelines compile.
#[derive(Debug, Clone)]
pub struct MappingFiles {
    /// MSH-3..6 of every outbound message.
    pub header: crate::mapping::Header,
    pub dir: PathBuf,
    pub new_referral: String,
    pub changed_referral: String,
    pub cancelled_referral: String,
    /// Sent before a new referral when the PAS needs the patient first (e.g.
    /// `adt_a28.v251.toml`).
    pub patient: Option<String>,
    pub inbound: String,
}

impl MappingFiles {
    /// The configured outbound mapping files as (purpose, path).
    pub fn outbound_files(&self) -> Vec<(&'static str, PathBuf)> {
        [
            ("new_referral", Some(&self.new_referral)),
            ("changed_referral", Some(&self.changed_referral)),
            ("cancelled_referral", Some(&self.cancelled_referral)),
            ("patient", self.patient.as_ref()),
        ]
        .into_iter()
        .filter_map(|(k, f)| Some((k, self.dir.join(f?))))
        .collect()
    }
}

/// One `[[poll]]` entry, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    /// e-RS service id (digits).
    pub service: String,
    /// At least one.
    pub lists: Vec<WorklistKind>,
    /// Above zero (and within the app-restricted budget).
    pub interval: Duration,
    pub specialty: Option<String>,
    pub clinician: Option<String>,
}

/// One worklist of one service, polled every `interval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollTarget {
    pub service: String,
    pub list: WorklistKind,
    pub interval: Duration,
    /// Optional A008 specialty filter (an A004 SPECIALTY code).
    pub specialty: Option<String>,
    /// Optional A008 clinician filter (SDS user id).
    pub clinician: Option<String>,
}

/// `[pipeline]`, validated.
#[derive(Debug, Clone, Copy)]
pub struct PipelineTuning {
    /// Referral tasks at once across every list and scheduler.
    pub concurrency: NonZeroUsize,
    pub fetch_clinical_info: bool,
    /// A007 only when no letter would be in the message.
    pub clinical_info_when_no_letter: bool,
    pub fetch_related_attachments: bool,
    /// A referral whose attachment stays PENDING this long is published without it.
    pub pending_attachment_max_wait: Duration,
    /// Between publish attempts while the broker is unavailable (initial ≤ max).
    pub publish_retry: Backoff,
}
