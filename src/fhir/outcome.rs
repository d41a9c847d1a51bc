//! `OperationOutcome`: the error body of every e-RS call (STU3 eRS-OperationOutcome-1 and
//! R4 NHSDigital-OperationOutcome share this shape). The e-RS error code is in
//! `issue[].details.coding[].code`, the FHIR issue type in `issue[].code`.

use serde::{Deserialize, Serialize};

use super::common::{CodeableConcept, Meta};

/// An error or warning report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OperationOutcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub meta: Meta,
    #[serde(default)]
    pub issue: Vec<Issue>,
}

/// `OperationOutcome.issue`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// FHIR issue type (`business-rule`, `forbidden`, `transient`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expression: Vec<String>,
}

impl OperationOutcome {
    /// The first issue (e-RS sends one per error).
    pub fn first_issue(&self) -> Option<&Issue> {
        self.issue.first()
    }

    /// The e-RS error code of the first issue (e.g. `INVALID_REQUEST_STATE`).
    pub fn ers_code(&self) -> Option<&str> {
        self.issue
            .iter()
            .find_map(|i| i.details.as_ref()?.first_code())
    }
}
