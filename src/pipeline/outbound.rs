//! The pipeline and the handling of one referral version: decide the event, fetch, map,
//! publish with confirms (retrying with backoff until the broker confirms or the bridge
//! stops), then record through the group commit. Single-step functions
//! ([`Pipeline::process_referral`], [`Pipeline::replay`], and in `poll.rs`
//! [`Pipeline::poll_once`]) let tests drive the loop without timers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{broadcast, Semaphore};

use super::fetch::{self, FetchOptions};
pub use super::mapset::{EventKind, Mappings};
use super::recorder::Recorder;
use super::refdata::RefDataCache;
pub use super::report::{Event, Outcome, PassReport};
use super::{PipelineError, Shutdown};
use crate::amqp::{AmqpError, OutboundMessage, Publisher, RetryPolicy};
use crate::config::WorklistKind;
use crate::ers::ErsClient;
use crate::mapping::ApplyInput;
use crate::store::{PublishedMessage, Store, VersionRecord};

/// The pipeline's knobs (from `[pipeline]`, `[amqp] tenant` and `[ers]`).
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// First part of every routing key.
    pub tenant: String,
    pub concurrency: usize,
    pub fetch: FetchOptions,
    pub pending_max_wait: Duration,
    pub publish_base_delay: Duration,
    pub publish_max_delay: Duration,
    /// App-restricted A008 calls per service per UTC day.
    pub worklist_budget: u32,
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

/// The outbound pipeline: shared by the schedulers; every method takes `&self`.
pub struct Pipeline {
    pub(super) ers: ErsClient,
    pub(super) store: Store,
    pub(super) publisher: Arc<Publisher>,
    pub(super) mappings: Arc<Mappings>,
    pub(super) settings: PipelineSettings,
    pub(super) targets: Vec<PollTarget>,
    pub(super) shutdown: Shutdown,
    /// A004 code systems (the specialty filter's system), refreshed daily.
    pub(super) refdata: RefDataCache,
    /// Group commit of confirmed versions.
    recorder: Recorder,
    /// Referral tasks running at once, across all lists and schedulers.
    pub(super) permits: Arc<Semaphore>,
    /// UBRNs a task is handling now.
    pub(super) in_flight: Mutex<HashSet<String>>,
    events: broadcast::Sender<Event>,
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
        ers: ErsClient,
        store: Store,
        publisher: Arc<Publisher>,
        mappings: Arc<Mappings>,
        settings: PipelineSettings,
        targets: Vec<PollTarget>,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            ers,
            recorder: Recorder::new(store.clone()),
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            in_flight: Mutex::new(HashSet::new()),
            store,
            publisher,
            mappings,
            settings,
            targets,
            shutdown,
            refdata: RefDataCache::new(),
            events: broadcast::channel(1024).0,
        }
    }

    /// Events from now on (lagging receivers lose the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn targets(&self) -> &[PollTarget] {
        &self.targets
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Reads the referral's latest version and handles it. `left_list` says it disappeared
    /// from a worklist: then only a cancellation produces a message.
    pub async fn process_referral(
        &self,
        ubrn: &str,
        left_list: bool,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        if self.shutdown.is_triggered() {
            return Err(PipelineError::ShuttingDown);
        }
        let referral = match self.read(ubrn).await {
            Ok(r) => r,
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => return self.park(ubrn, 0, &e.to_string(), now).await,
        };
        let (version, json) = referral;
        let state = self.store.version_state(ubrn, version).await?;
        if state.seen {
            return Ok(Outcome::Skipped);
        }
        if left_list && !fetch::is_cancelled(&json) {
            return Ok(Outcome::Skipped);
        }
        self.handle_version(ubrn, version, &json, state.latest_published, now)
            .await
    }

    /// Re-processes the latest version of a referral even if it was handled (parked or
    /// published) before: `ers-bridge replay`, and parked items after the mappings change.
    pub async fn replay(&self, ubrn: &str, now: DateTime<Utc>) -> Result<Outcome, PipelineError> {
        let (version, json) = self.read(ubrn).await?;
        let state = self.store.version_state(ubrn, version).await?;
        self.handle_version(ubrn, version, &json, state.latest_published, now)
            .await
    }

    /// Replays every parked referral when the mapping files differ from those recorded at
    /// the last start, then records the current hash. Returns how many were replayed.
    pub async fn retry_parked_if_mappings_changed(
        &self,
        now: DateTime<Utc>,
    ) -> Result<usize, PipelineError> {
        const KEY: &str = "mappings_hash";
        let current = &self.mappings.hash;
        let stored = self.store.state_value(KEY).await?;
        let mut replayed = 0;
        if stored.as_deref().is_some_and(|s| s != current) {
            for item in self.store.parked().await? {
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
            self.store.set_state_value(KEY, current).await?;
        }
        Ok(replayed)
    }

    async fn read(&self, ubrn: &str) -> Result<(i64, Value), PipelineError> {
        let r = self
            .ers
            .referral_json(ubrn, None)
            .await
            .map_err(|source| PipelineError::Ers {
                ubrn: ubrn.to_string(),
                source,
            })?;
        let version = r.version.ok_or_else(|| PipelineError::BadReferral {
            ubrn: ubrn.to_string(),
            reason: "no version (ETag or meta.versionId)".into(),
        })?;
        Ok((i64::from(version), r.resource))
    }

    async fn park(
        &self,
        ubrn: &str,
        version: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let now_ms = now.timestamp_millis();
        tracing::warn!(ubrn, version, reason, "referral parked");
        // Parked and seen in one transaction.
        self.store.park(ubrn, version, reason, now_ms).await?;
        let _ = self.events.send(Event::Parked {
            ubrn: ubrn.to_string(),
            version,
            reason: reason.to_string(),
        });
        Ok(Outcome::Parked(reason.to_string()))
    }

    /// Fetch, map, publish and record one referral version; `latest` is the highest version
    /// of this UBRN with a confirmed message.
    async fn handle_version(
        &self,
        ubrn: &str,
        version: i64,
        json: &Value,
        latest: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let kind = if fetch::is_cancelled(json) {
            if latest.is_none() {
                // The PAS never heard of it (e.g. it was parked): nothing to cancel there.
                tracing::info!(ubrn, version, "cancelled before any message was published");
                let now_ms = now.timestamp_millis();
                self.store
                    .mark_seen(ubrn, version, "cancelled-unpublished", now_ms)
                    .await?;
                self.store.unpark(ubrn).await?;
                return Ok(Outcome::Skipped);
            }
            EventKind::Cancelled
        } else if latest.is_some_and(|p| p < version) {
            EventKind::Changed
        } else {
            EventKind::New
        };
        let docs = fetch::fetch_documents(&self.ers, ubrn, json, self.settings.fetch).await?;
        if !docs.pending.is_empty() {
            // The wait is counted in the store, so a restart does not restart it.
            let since_ms = self
                .store
                .defer(ubrn, version, now.timestamp_millis())
                .await?;
            let waited = Duration::from_millis(
                u64::try_from(now.timestamp_millis() - since_ms).unwrap_or(0),
            );
            if waited < self.settings.pending_max_wait {
                tracing::info!(
                    ubrn,
                    version,
                    pending = docs.pending.len(),
                    "attachments pending, waiting for a later poll"
                );
                return Ok(Outcome::Deferred);
            }
            tracing::warn!(
                ubrn,
                version,
                "attachments still pending, publishing without them"
            );
        }

        let timestamp = now.fixed_offset();
        let enriched = fetch::enrich(json, &docs.extra_documents);
        let mapped = enriched.as_ref().unwrap_or(json);
        let mut messages = Vec::new();
        for m in self.mappings.for_event(kind) {
            let rendered = m.control_id_for(json).and_then(|control_id| {
                let input = ApplyInput {
                    referral: mapped,
                    control_id: &control_id,
                    timestamp,
                    attachments: &docs.attachments,
                };
                m.render(&input).map(|(_, bytes)| (control_id, bytes))
            });
            match rendered {
                Ok((control_id, body)) => messages.push((m, control_id, body)),
                Err(e) if e.is_retryable() => return Err(PipelineError::Mapping(e)),
                Err(e) => {
                    return self
                        .park(ubrn, version, &format!("{}: {e}", m.file), now)
                        .await
                }
            }
        }

        let mut published = Vec::with_capacity(messages.len());
        for (m, control_id, body) in messages {
            let [t1, t2, _] = &m.message_type;
            let msg = OutboundMessage {
                routing_key: format!("{}.{t1}.{t2}", self.settings.tenant),
                message_id: control_id.as_str().to_string(),
                correlation_id: ubrn.to_string(),
                message_type: format!("{t1}^{t2}"),
                ers_version: version.to_string(),
                body,
            };
            self.publish_confirmed(&msg).await?;
            published.push(PublishedMessage {
                // The body is moved, not copied; only a non-UTF-8 body (an 8859/1 MSH-18) is
                // stored lossily, as before.
                hl7: Some(
                    String::from_utf8(msg.body)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                ),
                control_id: msg.message_id,
                ubrn: ubrn.to_string(),
                version,
                message_type: msg.message_type,
                routing_key: msg.routing_key,
                confirmed_at_ms: Utc::now().timestamp_millis(),
            });
        }
        // Recorded only now that the broker confirmed every message of this version.
        let sent: Vec<(String, String)> = published
            .iter()
            .map(|p| (p.control_id.clone(), p.message_type.clone()))
            .collect();
        self.recorder
            .record(VersionRecord {
                ubrn: ubrn.to_string(),
                version,
                messages: published,
                now_ms: now.timestamp_millis(),
            })
            .await?;
        let mut ids = Vec::with_capacity(sent.len());
        for (control_id, message_type) in sent {
            tracing::info!(ubrn, version, control_id = %control_id, message_type = %message_type, "message published");
            let _ = self.events.send(Event::Published {
                ubrn: ubrn.to_string(),
                version,
                control_id: control_id.clone(),
                message_type,
            });
            ids.push(control_id);
        }
        Ok(Outcome::Published(ids))
    }

    /// Publishes until the broker confirms, backing off between attempts; gives up only on a
    /// permanent broker error or when the bridge stops (then nothing is recorded).
    async fn publish_confirmed(&self, msg: &OutboundMessage) -> Result<(), PipelineError> {
        let policy = RetryPolicy {
            initial: self.settings.publish_base_delay,
            max: self.settings.publish_max_delay,
            give_up_after: None,
        };
        let on_retry = |e: &AmqpError, wait: Duration| {
            let _ = self.events.send(Event::PublishRetry {
                ubrn: msg.correlation_id.clone(),
                control_id: msg.message_id.clone(),
                error: e.to_string(),
                retry_in: wait,
            });
        };
        match self
            .publisher
            .publish_with_retry_observed(msg, &policy, self.shutdown.wait(), on_retry)
            .await
        {
            Ok(_) => Ok(()),
            Err(AmqpError::GaveUp { .. }) => Err(PipelineError::ShuttingDown),
            Err(e) => Err(e.into()),
        }
    }
}
