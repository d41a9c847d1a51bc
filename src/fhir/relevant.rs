//! [`RelevantFacts`]: what a clinician deciding on a referral version read in it, kept for
//! every version published to the PAS so that a decision arriving after e-RS moved on can
//! be checked against what changed (docs/inbound.md, "The version decided on").
//!
//! e-RS serves only a referral's latest version (`_history/{n}` of an older one is 404
//! `HISTORY_NOT_SUPPORTED`), so the bridge cannot ask later what the PAS saw: the facts are
//! taken from the A005 body when its REF is published and stored beside the version. A
//! change to any of them between the version decided on and the current one is clinically
//! relevant; a change to nothing here (a bookkeeping update, a new version number alone)
//! is not.

use serde::{Deserialize, Serialize};

use super::facts::ReferralFacts;

/// The clinically relevant content of one referral version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelevantFacts {
    /// `Extension-eRS-ReferralPriority-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// `Extension-eRS-ClinicalInfoLastUpdated-1`: the referral letter changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clinical_info: Option<String>,
    /// Each contained attachment, as `id|url|availability`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
    /// The contained appointment, as `id|start|status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appointment: Option<String>,
    /// The referral state and its reason, as `state|reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Cancelled by the referrer.
    #[serde(default)]
    pub cancelled: bool,
}

impl RelevantFacts {
    /// The relevant facts of an A005 body's narrow view.
    pub fn of(f: &ReferralFacts<'_>) -> Self {
        let opt = |s: Option<&str>| s.unwrap_or_default().to_string();
        Self {
            priority: f.priority().map(str::to_string),
            clinical_info: f.clinical_info_updated().map(str::to_string),
            attachments: f
                .attachments()
                .map(|a| format!("{}|{}|{}", opt(a.id), opt(a.url), opt(a.availability)))
                .collect(),
            appointment: f
                .appointment()
                .map(|(id, start, status)| format!("{}|{}|{}", opt(id), opt(start), opt(status))),
            state: f.state().map(|s| format!("{s}|{}", opt(f.state_reason()))),
            cancelled: f.is_cancelled(),
        }
    }

    /// The relevant facts of an A005 body; `None` when it is not a ReferralRequest.
    pub fn of_json(json: &serde_json::Value) -> Option<Self> {
        ReferralFacts::from_value(json).ok().map(|f| Self::of(&f))
    }

    /// The facts as stored (compact JSON).
    pub fn to_stored(&self) -> String {
        // Strings, a vector and a flag: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads stored facts; `None` when they do not parse (never guessed).
    pub fn from_stored(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// What changed from `self` (the version decided on) to `now`, as names for the PAS
    /// and the operator; empty when nothing relevant changed.
    pub fn changes(&self, now: &Self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.priority != now.priority {
            out.push("priority");
        }
        if self.clinical_info != now.clinical_info {
            out.push("clinical information (the referral letter)");
        }
        if self.attachments != now.attachments {
            out.push("attachments");
        }
        if self.appointment != now.appointment {
            out.push("appointment");
        }
        if self.state != now.state {
            out.push("referral state");
        }
        if self.cancelled != now.cancelled {
            out.push("cancellation");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::facts::tests::sample;
    use crate::fhir::ReferralRequest;

    /// The inbound pipeline reads a referral typed and takes its facts from the typed
    /// value written back as JSON: that must give the same facts as the A005 body.
    #[test]
    fn the_typed_round_trip_keeps_every_relevant_fact() {
        for name in [
            "booked-dbs",
            "booked-ibs",
            "awaiting-triage",
            "deferred-to-provider",
        ] {
            let json = sample(name);
            let typed: ReferralRequest = serde_json::from_value(json.clone()).unwrap();
            let again = serde_json::to_value(&typed).unwrap();
            let facts = RelevantFacts::of_json(&json).unwrap();
            assert_eq!(RelevantFacts::of_json(&again).unwrap(), facts, "{name}");
            assert!(
                facts.priority.is_some() && facts.state.is_some(),
                "{name}: {facts:?}"
            );
            let stored = RelevantFacts::from_stored(&facts.to_stored()).unwrap();
            assert_eq!(stored, facts, "{name}");
        }
        let booked = RelevantFacts::of_json(&sample("booked-dbs")).unwrap();
        assert!(booked.appointment.is_some(), "{booked:?}");
    }

    #[test]
    fn changes_name_each_relevant_field_and_nothing_else() {
        let before = RelevantFacts::of_json(&sample("booked-dbs")).unwrap();
        assert!(before.changes(&before.clone()).is_empty());
        let mut after = before.clone();
        after.priority = Some("URGENT".into());
        after.clinical_info = Some("2026-12-06T10:00:00Z".into());
        assert_eq!(
            before.changes(&after),
            ["priority", "clinical information (the referral letter)"]
        );
        let mut cancelled = before.clone();
        cancelled.cancelled = true;
        assert_eq!(before.changes(&cancelled), ["cancellation"]);
    }
}
