//! The outbound pipeline, e-RS → PAS: poll the provider worklists (A008), fetch each new or
//! changed referral version (A005, attachments with A042/A006, optionally the clinical
//! information PDF with A007), map it through the configured mapping and publish it to
//! RabbitMQ with publisher confirms, recording it in the store only after the confirm.
//!
//! - this file: [`Pipeline`] (built from the app's [`Shared`] parts), reading a referral and
//!   the single-step entry points [`Pipeline::process_referral`] and [`Pipeline::replay`].
//! - [`handle`]: the handling of one referral version, step by step (event choice,
//!   attachment wait, rendering, publishing, recording).
//! - [`poll`]: one pass over the worklists ([`Pipeline::poll_once`], lists concurrently,
//!   referrals as tasks under one concurrency limit, one task per UBRN) and
//!   [`Pipeline::drain`].
//! - [`recorder`]: group commit of confirmed versions, one store transaction per batch.
//! - [`mapset`]: the compiled mappings by event and the mapping-folder hash.
//! - [`fetch`]: the referral's attachments, clinical information and related documents.
//! - [`schedule`]: one timer per configured service and list, and the app-restricted budget.
//! - [`report`]: [`Outcome`] and [`PassReport`].
//!
//! Event choice: a referral version never published for its UBRN gives REF^I12 (the
//! `new_referral` mapping, preceded by the `patient` mapping when configured); a higher version
//! of a UBRN already published gives REF^I13 (`changed_referral`); a cancelled referral gives
//! REF^I14 (`cancelled_referral`). Cancelled referrals leave the worklists, so a UBRN that
//! disappears from a list is re-read with A005 to find out why.
//!
//! Delivery semantics are those of [`crate::store`]: at-least-once with a stable MSH-10 (the
//! mapping's control id depends only on UBRN, version and event). A referral that cannot be
//! mapped is parked with its reason and does not hold the others back; `ers-bridge replay`
//! or a change to the mapping files retries it. Events (published, parked, publish retry,
//! worklist polled) go to the app's [`crate::events::Events`]. The guide is
//! `docs/pipeline.md`.

mod changes;
pub mod fetch;
mod handle;
pub mod mapset;
pub mod poll;
pub mod recorder;
mod replay;
pub mod report;
pub mod schedule;

pub use crate::config::PollTarget;
pub use fetch::FetchOptions;
pub use mapset::{EventKind, Mappings};
pub use replay::ReplayPlan;
pub use report::{Outcome, PassReport};
pub use schedule::spawn_schedulers;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::PipelineError;
use crate::config::PipelineTuning;
use crate::events::Parked;
use crate::ids::{Ubrn, Version};
use crate::runtime::Shared;
use crate::store::{Store, VersionState};
use recorder::Recorder;

/// The outbound pipeline's own settings (from `[pipeline]`, `[amqp] tenant` and `[ers]`).
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// First part of every routing key.
    pub tenant: String,
    pub tuning: PipelineTuning,
    /// App-restricted A008 calls per service per UTC day.
    pub worklist_budget: u32,
}

/// One referral as A005 returned it: the JSON the mapping reads and the facts the
/// pipeline's decisions read.
pub(super) struct Read {
    pub version: Version,
    pub json: Value,
    pub facts: fetch::Facts,
}

/// The outbound pipeline: shared by the schedulers; every method takes `&self`.
pub struct Pipeline {
    pub(super) shared: Arc<Shared>,
    pub(super) mappings: Arc<Mappings>,
    pub(super) settings: PipelineSettings,
    pub(super) targets: Vec<PollTarget>,
    /// Group commit of confirmed versions.
    recorder: Recorder,
    /// Referral tasks running at once, across all lists and schedulers.
    pub(super) permits: Arc<Semaphore>,
    /// One worklist response read and parsed at a time: the lists of a pass are polled
    /// concurrently, but a list's body and typed form are the largest transient values of
    /// the process (reading all fourteen of a 10,000-referral backlog at once cost about
    /// 2 MB of peak RSS, BENCHMARKS.md); the referrals of every list still share `permits`.
    pub(super) worklist_reads: Semaphore,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Wires the parts together; no IO.
    pub fn new(
        shared: Arc<Shared>,
        mappings: Arc<Mappings>,
        settings: PipelineSettings,
        targets: Vec<PollTarget>,
    ) -> Self {
        Self {
            recorder: Recorder::new(shared.store.clone()),
            permits: Arc::new(Semaphore::new(settings.tuning.concurrency.get())),
            worklist_reads: Semaphore::new(1),
            shared,
            mappings,
            settings,
            targets,
        }
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn targets(&self) -> &[PollTarget] {
        &self.targets
    }

    /// Reads the referral's latest version and handles it. `left_list` says it disappeared
    /// from a worklist: then only a cancellation produces a message.
    pub async fn process_referral(
        &self,
        ubrn: &Ubrn,
        left_list: bool,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        if self.shared.shutdown.is_triggered() {
            return Err(PipelineError::ShuttingDown);
        }
        let (version, json) = match self.read(ubrn).await {
            Ok(r) => r,
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => return self.park(ubrn, Version::new(0), &e.to_string(), now).await,
        };
        let state = self.version_state(ubrn, version).await?;
        if state.seen {
            return Ok(Outcome::Skipped);
        }
        // The facts are read only for versions not handled yet (most re-reads are not).
        let referral = match fetch::facts(ubrn, &json) {
            Ok(facts) => Read {
                version,
                json,
                facts,
            },
            Err(e) => return self.park(ubrn, version, &e.to_string(), now).await,
        };
        if left_list && !referral.facts.cancelled {
            return Ok(Outcome::Skipped);
        }
        self.handle_version(ubrn, &referral, state.latest_published, now)
            .await
    }

    /// Re-processes the latest version of a referral even if it was handled (parked or
    /// published) before: `ers-bridge replay`, and parked items after the mappings change.
    /// Under the referral's claim (waiting for whoever holds it, in any instance).
    pub async fn replay(&self, ubrn: &Ubrn, now: DateTime<Utc>) -> Result<Outcome, PipelineError> {
        let claim = tokio::select! {
            c = self.shared.claims.take_when_free(ubrn) => c.map_err(PipelineError::store(ubrn))?,
            () = self.shared.shutdown.wait() => return Err(PipelineError::ShuttingDown),
        };
        claim.scope(self.replay_claimed_latest(ubrn, now)).await
    }

    /// [`Pipeline::replay`] for a caller that holds the claim.
    pub(super) async fn replay_claimed_latest(
        &self,
        ubrn: &Ubrn,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let referral = self.read_latest(ubrn).await?;
        let state = self.version_state(ubrn, referral.version).await?;
        self.handle_version(ubrn, &referral, state.latest_published, now)
            .await
    }

    /// Replays every parked referral when the mapping files differ from those recorded at
    /// the last start, then records the current hash. Returns how many were replayed.
    pub async fn retry_parked_if_mappings_changed(
        &self,
        now: DateTime<Utc>,
    ) -> Result<usize, PipelineError> {
        const KEY: &str = "mappings_hash";
        let store = &self.shared.store;
        let current = &self.mappings.hash;
        let stored = store.state_value(KEY).await?;
        let mut replayed = 0;
        // Once per cluster: the instance holding the job's lease replays, the others
        // leave it (and the hash) to it.
        let Some(_job) = self.shared.cluster.hold("job:replay-parked").await? else {
            return Ok(0);
        };
        if stored.as_deref().is_some_and(|s| s != current) {
            for item in store.parked().await? {
                tracing::info!(ubrn = %item.ubrn, "mappings changed, retrying parked referral");
                match self.replay(&item.ubrn, now).await {
                    Ok(_) => replayed += 1,
                    Err(e) => {
                        tracing::warn!(ubrn = %item.ubrn, error = %e, "retrying parked referral failed")
                    }
                }
            }
        }
        if stored.as_deref() != Some(current) {
            store.set_state_value(KEY, current).await?;
        }
        Ok(replayed)
    }

    /// Whether this version was handled, and the latest published one, from the store.
    async fn version_state(
        &self,
        ubrn: &Ubrn,
        version: Version,
    ) -> Result<VersionState, PipelineError> {
        self.shared
            .store
            .version_state(ubrn, version)
            .await
            .map_err(PipelineError::store(ubrn))
    }

    /// The referral as e-RS gives it now (A005), for an operator's view (the monitor's
    /// mapping page): no facts read, nothing recorded.
    pub async fn referral_json(&self, ubrn: &Ubrn) -> Result<Value, PipelineError> {
        self.read(ubrn).await.map(|(_, json)| json)
    }

    /// A005, with the version every message and store row needs.
    /// The referral's latest version with the facts the pipeline decides on.
    pub(super) async fn read_latest(&self, ubrn: &Ubrn) -> Result<Read, PipelineError> {
        let (version, json) = self.read(ubrn).await?;
        let facts = fetch::facts(ubrn, &json)?;
        Ok(Read {
            version,
            json,
            facts,
        })
    }

    async fn read(&self, ubrn: &Ubrn) -> Result<(Version, Value), PipelineError> {
        let r = self
            .shared
            .ers
            .referral_json(ubrn, None)
            .await
            .map_err(PipelineError::ers(ubrn))?;
        let version = r.version.ok_or_else(|| PipelineError::BadReferral {
            ubrn: ubrn.clone(),
            reason: "no version (ETag or meta.versionId)".into(),
        })?;
        Ok((version, r.resource))
    }

    /// Parks the version (and marks it seen) in one transaction, and says so.
    async fn park(
        &self,
        ubrn: &Ubrn,
        version: Version,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        self.shared
            .store
            .park(ubrn, version, reason, now.timestamp_millis())
            .await
            .map_err(PipelineError::store(ubrn))?;
        self.shared.events.emit(Parked {
            ubrn: ubrn.clone(),
            version,
            reason: reason.to_string(),
        });
        Ok(Outcome::Parked(reason.to_string()))
    }
}
