//! A004 reference data: a FHIR `CodeSystem` with e-RS concept properties
//! (`effectiveFrom`, `effectiveTo`, `appointmentBookingCancellationReasonType`,
//! `commentIsMandatory`, ...). [`CodeSystem::rejection_reasons`] picks the A014 reasons.

use serde::{Deserialize, Serialize};

use super::common::{Meta, Value};

/// The A004 code-system types (`GET CodeSystem/{type}`).
pub const CODE_SYSTEM_TYPES: [&str; 6] = [
    "SPECIALTY",
    "APPOINTMENT-CANCELLATION-REASON",
    "CLINIC-TYPE",
    "REFERRAL-CANCELLATION-REASON",
    "APPOINTMENT-NON-ATTENDANCE-REASON",
    "PRIORITY",
];

/// A code system. `url` is environment-relative: echo it back exactly as the `system` of
/// codes sent to e-RS (e.g. the A014 rejection reason).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CodeSystem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub meta: Meta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub property: Vec<PropertyDefinition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub concept: Vec<Concept>,
}

/// `CodeSystem.property`: a property definition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PropertyDefinition {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `CodeSystem.concept`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Concept {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub property: Vec<ConceptProperty>,
}

/// `CodeSystem.concept.property`: a code and its `value[x]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptProperty {
    pub code: String,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl Concept {
    /// The value of property `code`.
    pub fn property(&self, code: &str) -> Option<&Value> {
        self.property
            .iter()
            .find(|p| p.code == code)?
            .value
            .as_ref()
    }

    /// True when `at` (RFC 3339) lies within `effectiveFrom`..`effectiveTo` (either may be
    /// absent). Compared as RFC 3339 instants; unparsable bounds count as absent.
    pub fn is_effective_at(&self, at: chrono::DateTime<chrono::Utc>) -> bool {
        let bound = |name: &str| {
            self.property(name)?
                .as_date_time()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        };
        bound("effectiveFrom").is_none_or(|from| from <= at)
            && bound("effectiveTo").is_none_or(|to| to >= at)
    }

    /// `commentIsMandatory`, false when absent.
    pub fn comment_is_mandatory(&self) -> bool {
        self.property("commentIsMandatory")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

impl CodeSystem {
    /// The concept with `code`.
    pub fn concept(&self, code: &str) -> Option<&Concept> {
        self.concept.iter().find(|c| c.code == code)
    }

    /// APPOINTMENT-CANCELLATION-REASON concepts usable for A014 at `at`: type
    /// `PROVIDER_REJECT` and currently effective (ERS-API.md §6 A004).
    pub fn rejection_reasons(&self, at: chrono::DateTime<chrono::Utc>) -> Vec<&Concept> {
        self.concept
            .iter()
            .filter(|c| {
                c.property("appointmentBookingCancellationReasonType")
                    .and_then(Value::as_code)
                    == Some("PROVIDER_REJECT")
            })
            .filter(|c| c.is_effective_at(at))
            .collect()
    }
}
