//! The handling of one referral version, one function per step: choose the event
//! ([`Pipeline::choose_event`]), wait for attachments e-RS still scans
//! ([`Pipeline::wait_for_attachments`]), render every message of the event
//! ([`Pipeline::render`]; a REF^I13 ends with what changed since the version the PAS has,
//! [`super::changes`]), publish each until the broker confirms
//! ([`Pipeline::publish_confirmed`]), then record the version through the group commit and
//! emit the events ([`Pipeline::record`]). Time comes from the caller's `now` (and tokio's
//! monotonic clock for how long the publishes took), never from the wall clock directly.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::changes;
use super::fetch::{self, FetchOptions, Fetched};
use super::{EventKind, Outcome, Pipeline, Read};
use crate::events::{LookupMissed, PublishRetry, Published, VersionPublished};
use crate::hl7::{Hl7Out, Message};
use crate::ids::{ControlId, Ubrn, Version};
use crate::mapping::{ApplyInput, CompiledMapping};
use crate::pipeline::PipelineError;
use crate::store::{PublishedMessage, Seen, VersionRecord};
use crate::transport::{Delivery, TransportError};

/// One rendered message, ready to publish.
struct Rendered<'m> {
    mapping: &'m CompiledMapping,
    control_id: ControlId,
    /// For a replay under a new id: the id the message first went out with.
    replay_of: Option<ControlId>,
    body: Vec<u8>,
}

/// The REF message the PAS has for this UBRN: its version, and the message unless retention
/// pruned it (a REF^I13 compares against it).
type Previous = (Version, Option<Message>);

/// Why rendering stopped.
enum RenderFailure {
    /// Bad data or a bad mapping: park with this reason.
    Park(String),
    Retry(PipelineError),
}

impl Pipeline {
    /// Fetch, map, publish and record one referral version; `latest` is the highest version
    /// of this UBRN with a confirmed message.
    pub(super) async fn handle_version(
        &self,
        ubrn: &Ubrn,
        referral: &Read,
        latest: Option<Version>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let Some(kind) = self.choose_event(ubrn, referral, latest, now).await? else {
            return Ok(Outcome::Skipped);
        };
        self.deliver(ubrn, referral, kind, latest, now, None).await
    }

    /// Fetches the documents, maps, publishes and records the messages of `kind` for this
    /// version. `replay = Some(n)`: a replay under new ids (`<UBRN>R<nn><version>`, from
    /// `n` up), each linked to its original in the `x-ers-replay-of` header.
    pub(super) async fn deliver(
        &self,
        ubrn: &Ubrn,
        referral: &Read,
        kind: EventKind,
        latest: Option<Version>,
        now: DateTime<Utc>,
        replay: Option<u32>,
    ) -> Result<Outcome, PipelineError> {
        let version = referral.version;
        let t = &self.settings.tuning;
        let opts = FetchOptions {
            clinical_info: t.fetch_clinical_info,
            clinical_info_when_no_letter: t.clinical_info_when_no_letter,
            related_attachments: t.fetch_related_attachments,
        };
        let mut docs =
            fetch::fetch_documents(&self.shared.ers, ubrn, &referral.facts, opts).await?;
        if let Some(code) = &referral.facts.specialty_to_name {
            let shared = &self.shared;
            docs.specialty_display =
                fetch::specialty_display(&shared.refdata, &shared.ers, ubrn, code).await;
        }
        if self.wait_for_attachments(ubrn, version, &docs, now).await? {
            return Ok(Outcome::Deferred);
        }
        let previous = match (kind, latest) {
            (EventKind::Changed, Some(v)) => Some((v, self.published_ref(ubrn, v).await?)),
            _ => None,
        };
        let messages = match self.render(referral, kind, &docs, previous.as_ref(), now, replay) {
            Ok(m) => m,
            Err(RenderFailure::Retry(e)) => return Err(e),
            Err(RenderFailure::Park(reason)) => {
                return self.park(ubrn, version, &reason, now).await
            }
        };
        let started = Instant::now();
        let mut published = Vec::with_capacity(messages.len());
        for m in messages {
            let mut p = match self.publish_confirmed(ubrn, version, m).await? {
                Ok(p) => p,
                // Refused by the PAS itself (MLLP's AE/AR): parked with its reason, as bad
                // data is; a replay sends it again.
                Err(reason) => return self.park(ubrn, version, &reason, now).await,
            };
            // The confirm time: the caller's clock plus how long publishing took so far.
            p.confirmed_at_ms = (now + started.elapsed()).timestamp_millis();
            published.push(p);
        }
        let facts = referral.facts.relevant.clone();
        let outcome = self.record(ubrn, (version, facts), published, now).await?;
        if let Outcome::Published(ids) = &outcome {
            self.shared.events.emit(VersionPublished {
                messages: ids.len(),
                took: started.elapsed(),
            });
        }
        Ok(outcome)
    }

    /// Which message this version gets; `None` when it needs none (cancelled before the PAS
    /// ever received it, which is recorded here).
    async fn choose_event(
        &self,
        ubrn: &Ubrn,
        referral: &Read,
        latest: Option<Version>,
        now: DateTime<Utc>,
    ) -> Result<Option<EventKind>, PipelineError> {
        let version = referral.version;
        if referral.facts.cancelled {
            if latest.is_none() {
                // The PAS never heard of it (e.g. it was parked): nothing to cancel there.
                tracing::info!(ubrn = %ubrn, version = %version, "cancelled before any message was published");
                let store = &self.shared.store;
                store
                    .mark_seen(
                        ubrn,
                        version,
                        Seen::CancelledUnpublished,
                        now.timestamp_millis(),
                    )
                    .await
                    .map_err(PipelineError::store(ubrn))?;
                store
                    .unpark(ubrn)
                    .await
                    .map_err(PipelineError::store(ubrn))?;
                return Ok(None);
            }
            return Ok(Some(EventKind::Cancelled));
        }
        Ok(Some(if latest.is_some_and(|p| p < version) {
            EventKind::Changed
        } else {
            EventKind::New
        }))
    }

    /// True while the version should wait for a later poll because attachments are still
    /// pending; the wait is counted in the store, so a restart does not restart it. After
    /// `pending_attachment_max_wait` it is published without them.
    async fn wait_for_attachments(
        &self,
        ubrn: &Ubrn,
        version: Version,
        docs: &Fetched,
        now: DateTime<Utc>,
    ) -> Result<bool, PipelineError> {
        if docs.pending.is_empty() {
            return Ok(false);
        }
        let now_ms = now.timestamp_millis();
        let since_ms = self
            .shared
            .store
            .defer(ubrn, version, now_ms)
            .await
            .map_err(PipelineError::store(ubrn))?;
        let waited = Duration::from_millis(u64::try_from(now_ms - since_ms).unwrap_or(0));
        if waited < self.settings.tuning.pending_attachment_max_wait {
            tracing::info!(
                ubrn = %ubrn,
                version = %version,
                pending = docs.pending.len(),
                "attachments pending, waiting for a later poll"
            );
            return Ok(true);
        }
        tracing::warn!(ubrn = %ubrn, version = %version, "attachments still pending, publishing without them");
        Ok(false)
    }

    /// The REF message published for `version` of this UBRN, read back from the store;
    /// `None` when there is none or its payload was pruned.
    async fn published_ref(
        &self,
        ubrn: &Ubrn,
        version: Version,
    ) -> Result<Option<Message>, PipelineError> {
        let messages = self
            .shared
            .store
            .messages_for(ubrn)
            .await
            .map_err(PipelineError::store(ubrn))?;
        Ok(messages
            .into_iter()
            .rev()
            .filter(|m| m.version == version && m.message_type.starts_with("REF^"))
            .find_map(|m| crate::hl7::read(m.hl7?.as_bytes()).ok()))
    }

    /// Every message of the event, in order; pure apart from counting lookup misses.
    /// `previous` (for a change) adds the note of what changed to the REF message.
    fn render(
        &self,
        referral: &Read,
        kind: EventKind,
        docs: &Fetched,
        previous: Option<&Previous>,
        now: DateTime<Utc>,
        replay: Option<u32>,
    ) -> Result<Vec<Rendered<'_>>, RenderFailure> {
        let timestamp = now.fixed_offset();
        let enriched = fetch::enrich(
            &referral.json,
            &docs.extra_documents,
            docs.specialty_display.as_deref(),
        );
        let mapped = enriched.as_ref().unwrap_or(&referral.json);
        let mut messages = Vec::new();
        for (i, m) in self.mappings.for_event(kind).into_iter().enumerate() {
            let ids = m
                .control_id_for(&referral.json)
                .and_then(|original| match replay {
                    None => Ok((original, None)),
                    Some(n) => replay_id(&original, n + i as u32).map(|id| (id, Some(original))),
                });
            let rendered = ids.and_then(|(control_id, replay_of)| {
                let input = ApplyInput {
                    referral: mapped,
                    control_id: &control_id,
                    timestamp,
                    attachments: &docs.attachments,
                    attachment_errors: &docs.errors,
                };
                let (mut r, mut bytes) = m.render(&input)?;
                if let (Some((version, was)), "REF") = (previous, m.message_type[0].as_str()) {
                    let differences = match was {
                        Some(was) => changes::differences(was, &r.message),
                        None => vec!["the previous message is no longer stored".to_string()],
                    };
                    r.message
                        .segments
                        .push(changes::note(*version, &differences));
                    bytes = r.message.encode()?;
                }
                Ok((control_id, replay_of, r, bytes))
            });
            match rendered {
                Ok((control_id, replay_of, r, body)) => {
                    // Counted, and kept for the store by the trend recorder (off this path).
                    for (table, code) in r.lookup_misses {
                        self.shared.events.emit(LookupMissed { table, code });
                    }
                    messages.push(Rendered {
                        mapping: m,
                        control_id,
                        replay_of,
                        body,
                    });
                }
                Err(e) if e.is_retryable() => {
                    return Err(RenderFailure::Retry(PipelineError::Mapping(e)))
                }
                Err(e) => return Err(RenderFailure::Park(format!("{}: {e}", m.file))),
            }
        }
        Ok(messages)
    }

    /// Delivers the message to the PAS (through the deployment's [`crate::transport::PasLink`]),
    /// backing off while the outcome is unknown; gives up only on a permanent error or when
    /// the bridge stops (then nothing is recorded). `Ok(Err(reason))`: the PAS refused it.
    /// The caller stamps the confirm time.
    async fn publish_confirmed(
        &self,
        ubrn: &Ubrn,
        version: Version,
        m: Rendered<'_>,
    ) -> Result<Result<PublishedMessage, String>, PipelineError> {
        // A process that was paused past its claim publishes nothing more under it:
        // another instance may be handling the referral now.
        if let Some(f) = crate::cluster::claims::working_fence() {
            if !crate::cluster::claims::still_held() {
                return Err(PipelineError::Store {
                    ubrn: ubrn.clone(),
                    source: crate::store::StoreError::Fenced {
                        op: "publish",
                        lease: f.name,
                        term: f.term,
                    },
                });
            }
        }
        let [t1, t2, _] = &m.mapping.message_type;
        let out = Hl7Out {
            control_id: m.control_id.clone(),
            message_type: (t1.clone(), t2.clone()),
            about: ubrn.to_string(),
            version: Some(version),
            replay_of: m.replay_of.into_iter().collect(),
            bytes: m.body,
        };
        let on_retry = |error: String, wait: Duration| {
            self.shared.events.emit(PublishRetry {
                ubrn: ubrn.clone(),
                control_id: m.control_id.clone(),
                error,
                retry_in: wait,
            });
        };
        let shared = &self.shared;
        let backoff = self.settings.tuning.publish_retry;
        let destination = match shared
            .pas
            .deliver(&out, backoff, shared.shutdown.wait(), on_retry)
            .await
        {
            Ok(Delivery::Delivered { destination }) => destination,
            Ok(Delivery::Refused { reason }) => {
                return Ok(Err(format!(
                    "the PAS refused {} ({}): {reason}",
                    out.control_id,
                    out.type_name()
                )))
            }
            Err(TransportError::ShuttingDown) => return Err(PipelineError::ShuttingDown),
            Err(source) => {
                return Err(PipelineError::Transport {
                    ubrn: ubrn.clone(),
                    source: Box::new(source),
                })
            }
        };
        let message_type = out.type_name();
        Ok(Ok(PublishedMessage {
            // The body is moved, not copied; only a non-UTF-8 body (an 8859/1 MSH-18) is
            // stored lossily.
            hl7: Some(
                String::from_utf8(out.bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ),
            control_id: m.control_id,
            ubrn: ubrn.clone(),
            version,
            message_type,
            routing_key: destination,
            confirmed_at_ms: 0,
        }))
    }

    /// Records the version through the group commit (only now that the broker confirmed
    /// every message of it), then emits one [`Published`] per message.
    async fn record(
        &self,
        ubrn: &Ubrn,
        (version, facts): (Version, String),
        published: Vec<PublishedMessage>,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let sent: Vec<(ControlId, String)> = published
            .iter()
            .map(|p| (p.control_id.clone(), p.message_type.clone()))
            .collect();
        self.recorder
            .record(VersionRecord {
                ubrn: ubrn.clone(),
                version,
                messages: published,
                now_ms: now.timestamp_millis(),
                facts: Some(facts),
                fence: crate::cluster::claims::working_fence(),
            })
            .await
            .map_err(PipelineError::store(ubrn))?;
        let mut ids = Vec::with_capacity(sent.len());
        for (control_id, message_type) in sent {
            self.shared.events.emit(Published {
                ubrn: ubrn.clone(),
                version,
                control_id: control_id.clone(),
                message_type,
            });
            ids.push(control_id);
        }
        Ok(Outcome::Published(ids))
    }
}

/// The id of replay `n` of the message first sent as `original`: the event part becomes
/// `R<nn>` (`<UBRN>R01<version>`), still 20 characters and still naming the referral and
/// version ([`ControlId::outbound_parts`]).
fn replay_id(original: &ControlId, n: u32) -> Result<ControlId, crate::mapping::MappingError> {
    let fail = |reason: String| crate::mapping::MappingError::Eval {
        field: "MSH-10".into(),
        name: "replay control id".into(),
        reason,
    };
    if !(1..=99).contains(&n) {
        return Err(fail(format!(
            "a version can be replayed 99 times (this is {n})"
        )));
    }
    let (ubrn, _, version) = original
        .outbound_parts()
        .ok_or_else(|| fail(format!("{original} is not an outbound id")))?;
    ControlId::outbound(&ubrn, version, &format!("R{n:02}")).map_err(|e| fail(e.to_string()))
}

/// Whether a control id is a replay's (`replay_id`).
pub(super) fn is_replay(id: &ControlId) -> bool {
    id.outbound_parts()
        .is_some_and(|(_, event, _)| event.starts_with('R'))
}
