//! The version a PAS decision is written on (docs/inbound.md, "The version decided on"):
//! the one of the REF the PAS decided on, and whether a referral that moved on since may
//! still be written, by what changed between that version's stored relevant facts and the
//! referral now.

use super::PipelineError;
use crate::fhir::relevant::RelevantFacts;
use crate::fhir::ReferralRequest;
use crate::hl7::{ControlId, Ubrn};
use crate::ids::Version;
use crate::runtime::Shared;
use crate::store::{PublishedMessage, Seen};

/// The version the PAS decided on: the one of the REF message MSA-2 acknowledges (`acked`,
/// found in the store as `acked_ref`), else the latest REF published for the UBRN; `None`
/// when the bridge published none.
pub(super) async fn decided_version(
    shared: &Shared,
    ubrn: &Ubrn,
    (acked, acked_ref): (Option<&ControlId>, Option<&PublishedMessage>),
) -> Result<Option<crate::ids::Version>, PipelineError> {
    let store = &shared.store;
    if acked.is_some() {
        if let Some(p) = acked_ref {
            if &p.ubrn == ubrn && p.message_type.starts_with("REF") {
                return Ok(Some(p.version));
            }
        }
    }
    let published = store
        .messages_for(ubrn)
        .await
        .map_err(PipelineError::store(ubrn))?;
    Ok(published
        .iter()
        .filter(|p| p.message_type.starts_with("REF"))
        .map(|p| p.version)
        .max())
}

/// Whether a decision on version `decided` may be written on `current` (docs/inbound.md,
/// "The version decided on"): yes when every newer version is the bridge's own write, or
/// when nothing clinically relevant ([`RelevantFacts`]) differs between the version the
/// PAS received and the referral now (a state our own write produced is ours, not a
/// change); otherwise `Err` with the reason naming what changed. A version whose facts
/// the store does not hold counts as changed: never guessed.
pub(super) async fn moved_on(
    shared: &Shared,
    ubrn: &Ubrn,
    decided: Version,
    current: Version,
    now: &ReferralRequest,
) -> Result<Result<(), String>, PipelineError> {
    let changed = |what: String| {
        Err(format!(
            "the referral changed in e-RS since the version the PAS decided on (version \
             {decided}, now {current}: {what}): not applied; decide again on the current version"
        ))
    };
    if current.get() < decided.get() {
        return Ok(changed("e-RS gives an older version".into()));
    }
    let stored = shared
        .store
        .versions_between(ubrn, decided, current)
        .await
        .map_err(PipelineError::store(ubrn))?;
    let own = |v: u32| {
        stored
            .iter()
            .any(|s| s.version.get() == v && s.outcome == Seen::OwnWrite.as_str())
    };
    let newer = decided.get() + 1..=current.get();
    if newer.clone().all(own) {
        return Ok(Ok(()));
    }
    let Some(base) = stored
        .iter()
        .find(|s| s.version == decided)
        .and_then(|s| s.facts.as_deref())
        .and_then(RelevantFacts::from_stored)
    else {
        return Ok(changed(format!(
            "the bridge holds no record of what version {decided} contained"
        )));
    };
    let facts_now = serde_json::to_value(now)
        .ok()
        .and_then(|j| RelevantFacts::of_json(&j))
        .unwrap_or_default();
    let mut changes = base.changes(&facts_now);
    if newer.clone().any(own) {
        changes.retain(|c| *c != "referral state");
    }
    if changes.is_empty() {
        return Ok(Ok(()));
    }
    Ok(changed(changes.join(", ")))
}
