//! A004 reference data: the six e-RS code systems, served from copies of the official
//! examples (`src/simulator/data/`), and the PROVIDER_REJECT rejection reasons A014 accepts.

use std::sync::OnceLock;

use axum::http::StatusCode;
use serde_json::Value;

use super::{Ctx, Reply};
use crate::simulator::outcome::{fhir_json, Reject};

/// The code systems by `codeSystemType`.
const CODE_SYSTEMS: &[(&str, &str)] = &[
    (
        "APPOINTMENT-CANCELLATION-REASON",
        include_str!("../data/AppointmentCancellationReasonCodeSystem.json"),
    ),
    (
        "APPOINTMENT-NON-ATTENDANCE-REASON",
        include_str!("../data/AppointmentNonAttendanceReasonCodeSystem.json"),
    ),
    (
        "CLINIC-TYPE",
        include_str!("../data/ClinicTypeCodeSystem.json"),
    ),
    ("PRIORITY", include_str!("../data/PriorityCodeSystem.json")),
    (
        "REFERRAL-CANCELLATION-REASON",
        include_str!("../data/ReferralCancellationReasonCodeSystem.json"),
    ),
    (
        "SPECIALTY",
        include_str!("../data/SpecialtyCodeSystem.json"),
    ),
];

/// The code system JSON of `kind`, parsed once.
pub fn code_system_json(kind: &str) -> Option<&'static Value> {
    static PARSED: OnceLock<Vec<(&'static str, Value)>> = OnceLock::new();
    let all = PARSED.get_or_init(|| {
        CODE_SYSTEMS
            .iter()
            .map(|(k, text)| (*k, serde_json::from_str(text).unwrap_or(Value::Null)))
            .collect()
    });
    all.iter().find(|(k, _)| *k == kind).map(|(_, v)| v)
}

/// A004 `GET CodeSystem/{codeSystemType}`.
pub fn code_system(_ctx: &Ctx<'_>, kind: &str) -> Reply {
    match code_system_json(kind) {
        Some(v) => Ok(fhir_json(StatusCode::OK, v, None)),
        None => Err(Reject::not_found(format!(
            "unknown codeSystemType {kind}; known: {}",
            CODE_SYSTEMS
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// What A014 needs to know about a rejection reason.
#[derive(Debug, Clone)]
pub struct RejectionReason {
    /// The concept's display text.
    pub display: String,
    /// Whether `rejectionComments` must be given.
    pub comment_is_mandatory: bool,
}

/// The APPOINTMENT-CANCELLATION-REASON concept `code` if it is a current PROVIDER_REJECT
/// reason (type `PROVIDER_REJECT`, no `effectiveTo` in the past).
pub fn rejection_reason(code: &str) -> Option<RejectionReason> {
    let cs = code_system_json("APPOINTMENT-CANCELLATION-REASON")?;
    let concept = cs["concept"]
        .as_array()?
        .iter()
        .find(|c| c["code"] == code)?;
    let props = concept["property"].as_array()?;
    let prop = |name: &str| props.iter().find(|p| p["code"] == name);
    let kind = prop("appointmentBookingCancellationReasonType")?["valueCoding"]["code"].as_str()?;
    if kind != "PROVIDER_REJECT" {
        return None;
    }
    if let Some(to) = prop("effectiveTo").and_then(|p| p["valueDateTime"].as_str()) {
        let now = chrono::Utc::now().to_rfc3339();
        if to < now.as_str() {
            return None;
        }
    }
    Some(RejectionReason {
        display: concept["display"].as_str().unwrap_or(code).to_owned(),
        comment_is_mandatory: prop("commentIsMandatory")
            .and_then(|p| p["valueBoolean"].as_bool())
            .unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_six_code_systems_parse() {
        for (k, _) in CODE_SYSTEMS {
            let v = code_system_json(k).unwrap();
            assert_eq!(v["resourceType"], "CodeSystem", "{k}");
            assert_eq!(v["id"], *k);
        }
    }

    #[test]
    fn provider_reject_reasons() {
        assert!(rejection_reason("SERVICE_INAPPROPRIATE").is_some());
        assert!(rejection_reason("OTHER").is_some());
        assert!(rejection_reason("PATIENT_ILL").is_none());
        assert!(rejection_reason("NO_SUCH").is_none());
    }
}
