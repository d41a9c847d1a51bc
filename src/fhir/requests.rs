//! Typed inputs of the e-RS write and worklist operations, and the `Parameters` bodies built
//! from them. The parameter order follows the official example requests (the official
//! sandbox compares bodies with array order significant), and the contract tests check
//! each example file against the body built from the same inputs.

use std::str::FromStr;

use chrono::{DateTime, FixedOffset};

use super::common::Attachment;
use super::common::{CodeableConcept, Coding, Identifier, Meta, Reference, Value};
use super::parameters::{Parameter, Parameters};
use super::referral::{DocumentContent, DocumentReference, CS_BASE, SD_BASE};
use super::worklist::ListSelector;
use super::Resource;
use crate::ids::{Ubrn, Version};

/// Defines an enum over the codes of a static e-RS code system, with `code()`, `coding()`
/// and `FromStr` (accepting the code, case-insensitively, with `-` for `_`).
macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident, $system:literal, { $($variant:ident => $code:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The code system URL.
            pub const SYSTEM: &'static str = concat!("https://fhir.nhs.uk/STU3/CodeSystem/", $system);

            /// The code.
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }

            /// The coding (system + code, no display), as requests carry it.
            pub fn coding(self) -> Coding {
                Coding::new(Self::SYSTEM, self.code())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let norm = s.trim().replace('-', "_").to_ascii_uppercase();
                Self::ALL.iter().copied().find(|v| v.code() == norm).ok_or_else(|| {
                    let all: Vec<_> = Self::ALL.iter().map(|v| v.code()).collect();
                    format!("unknown {} code {s:?} (expected one of {})", $system, all.join(", "))
                })
            }
        }
    };
}

code_enum!(
    /// `eRS-Priority-1`.
    Priority, "eRS-Priority-1", {
        Routine => "ROUTINE",
        Urgent => "URGENT",
        TwoWeekWait => "TWO_WEEK_WAIT",
    }
);

code_enum!(
    /// `eRS-ReviewOutcome-1` values A028 supports.
    ReviewOutcome, "eRS-ReviewOutcome-1", {
        ReturnToReferrerWithAdvice => "RETURN_TO_REFERRER_WITH_ADVICE",
        AcceptReferBookLater => "ACCEPT_REFER_BOOK_LATER",
    }
);

code_enum!(
    /// `eRS-GuidanceResponseOutcome-1` (A026).
    GuidanceOutcome, "eRS-GuidanceResponseOutcome-1", {
        ReturnToReferrerWithAdvice => "RETURN_TO_REFERRER_WITH_ADVICE",
        RequireFurtherInformation => "REQUIRE_FURTHER_INFORMATION",
        ProviderConverted => "PROVIDER_CONVERTED",
    }
);

code_enum!(
    /// `eRS-GuidanceIntendedRecommendation-1` (A026).
    GuidanceRecommendation, "eRS-GuidanceIntendedRecommendation-1", {
        AdviceOnlyNoReferralRecommended => "ADVICE_ONLY_NO_REFERRAL_RECOMMENDED",
        AdviceFollowedByReferralIfRequired => "ADVICE_FOLLOWED_BY_REFERRAL_IF_REQUIRED",
        ReferralRecommended => "REFERRAL_RECOMMENDED",
        Other => "OTHER",
    }
);

/// Profile URLs of the request bodies.
pub mod profile {
    /// A008/A023.
    pub const FETCH_WORKLIST: &str =
        "https://fhir.nhs.uk/STU3/StructureDefinition/eRS-FetchWorklist-Parameters-1";
    /// A014.
    pub const REJECT_REFERRAL: &str =
        "https://fhir.nhs.uk/STU3/StructureDefinition/eRS-RejectReferral-Parameters-1";
    /// A022.
    pub const CANCEL_ACTION_LATER: &str =
        "https://fhir.nhs.uk/STU3/StructureDefinition/eRS-cancelAppointmentActionLater-Parameters-1";
    /// A028.
    pub const RECORD_REVIEW_OUTCOME: &str =
        "https://fhir.nhs.uk/STU3/StructureDefinition/eRS-RecordReviewOutcome-Parameters-1";
    /// A026.
    pub const SEND_TO_REQUESTER: &str =
        "https://fhir.nhs.uk/STU3/StructureDefinition/eRS-SendCommunicationToRequester-Request-Parameters-1";
    /// A027.
    pub const CREATE_FROM_ADVICE: &str =
        "https://fhir.nhs.uk/STU3/StructureDefinition/eRS-CreateFromCommunicationRequestActionLater-Request-Parameters-1";
}

const SERVICE_SYSTEM: &str = "http://fhir.nhs.net/Id/ers-service";
const SDS_USER_SYSTEM: &str = "http://fhir.nhs.net/Id/sds-user-id";
const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
const MAX_COMMENT_CHARS: usize = 2000;
const MAX_GUIDANCE_CHARS: usize = 8000;

/// A worklist filter that is either "assigned to this value" or "not assigned".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assigned<T> {
    Assigned(T),
    NotAssigned,
}

/// A008/A023 input: which list, and the optional provider-list filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchWorklist {
    pub list: ListSelector,
    /// e-RS service id; mandatory in app-restricted mode.
    pub service: Option<String>,
    /// Specialty coding (system from A004 SPECIALTY) or "not assigned".
    pub specialty: Option<Assigned<Coding>>,
    /// ODS code of a location.
    pub location: Option<String>,
    /// SDS user id of a clinician or "not assigned".
    pub clinician: Option<Assigned<String>>,
}

impl FetchWorklist {
    /// A list with no filters.
    pub fn new(list: ListSelector) -> Self {
        Self {
            list,
            service: None,
            specialty: None,
            location: None,
            clinician: None,
        }
    }

    /// The body.
    pub fn to_parameters(&self) -> Parameters {
        let mut p = Parameters::with_profile(profile::FETCH_WORKLIST);
        p.push_value(
            "listType",
            Value::CodeableConcept(CodeableConcept::from_coding(Coding::new(
                self.list.system(),
                self.list.code(),
            ))),
        );
        if let Some(s) = &self.service {
            p.push_value(
                "service",
                Value::Identifier(Identifier::new(SERVICE_SYSTEM, s)),
            );
        }
        let indicator = |assigned: bool| {
            Value::CodeableConcept(CodeableConcept::from_coding(Coding::new(
                format!("{CS_BASE}eRS-AssignedIndicator-1"),
                if assigned { "ASSIGNED" } else { "NOT_ASSIGNED" },
            )))
        };
        match &self.specialty {
            Some(Assigned::Assigned(c)) => {
                p.push_value("specialtyAssignedIndicator", indicator(true));
                p.push_value(
                    "specialty",
                    Value::CodeableConcept(CodeableConcept::from_coding(c.clone())),
                );
            }
            Some(Assigned::NotAssigned) => {
                p.push_value("specialtyAssignedIndicator", indicator(false))
            }
            None => {}
        }
        if let Some(l) = &self.location {
            p.push_value(
                "location",
                Value::Identifier(Identifier::new(ODS_SYSTEM, l)),
            );
        }
        match &self.clinician {
            Some(Assigned::Assigned(id)) => {
                p.push_value("clinicianAssignedIndicator", indicator(true));
                p.push_value(
                    "clinician",
                    Value::Identifier(Identifier::new(SDS_USER_SYSTEM, id)),
                );
            }
            Some(Assigned::NotAssigned) => {
                p.push_value("clinicianAssignedIndicator", indicator(false))
            }
            None => {}
        }
        p
    }
}

/// A file uploaded earlier (A020) and referenced from a write: becomes a contained
/// `DocumentReference` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRef {
    /// The id in `Binary/<id>`.
    pub binary_id: String,
    pub description: Option<String>,
    /// When it was indexed; sent as a full instant with microseconds and offset.
    pub indexed: DateTime<FixedOffset>,
}

impl AttachmentRef {
    fn to_parameter(&self, name: &str, attachment_type: &str) -> Parameter {
        let doc = DocumentReference {
            id: None,
            meta: Meta::profile(&format!("{SD_BASE}eRS-DocumentReference-1")),
            kind: Some(CodeableConcept::from_coding(Coding::new(
                format!("{CS_BASE}eRS-AttachmentType-1"),
                attachment_type,
            ))),
            status: Some("current".into()),
            indexed: Some(self.indexed.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string()),
            description: self.description.clone(),
            content: vec![DocumentContent {
                attachment: Attachment {
                    url: Some(format!("Binary/{}", self.binary_id)),
                    ..Attachment::default()
                },
            }],
        };
        Parameter::resource(name, Resource::DocumentReference(Box::new(doc)))
    }
}

/// A014 input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectReferral {
    /// An APPOINTMENT-CANCELLATION-REASON coding with the system exactly as A004 gave it.
    pub reason: Coding,
    pub comments: Option<String>,
    /// Mandatory for indirectly bookable services.
    pub appointment_cancelled_in_pas: Option<bool>,
}

impl RejectReferral {
    /// The body; errors name the rule broken.
    pub fn to_parameters(&self) -> Result<Parameters, String> {
        if self.reason.code().is_empty() || self.reason.system.is_none() {
            return Err("rejectionReason needs a system and a code".into());
        }
        check_len(
            "rejectionComments",
            self.comments.as_deref(),
            MAX_COMMENT_CHARS,
        )?;
        let mut p = Parameters::with_profile(profile::REJECT_REFERRAL);
        p.push_value("rejectionReason", Value::Coding(self.reason.clone()));
        if let Some(c) = &self.comments {
            p.push_value("rejectionComments", Value::String(c.clone()));
        }
        if let Some(b) = self.appointment_cancelled_in_pas {
            p.push_value("appointmentCancelledInPAS", Value::Boolean(b));
        }
        Ok(p)
    }
}

/// A022 input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelAppointmentActionLater {
    pub comments: String,
    pub priority: Option<Priority>,
    /// Mandatory for indirectly bookable services.
    pub appointment_cancelled_in_pas: Option<bool>,
    pub attachments: Vec<AttachmentRef>,
}

impl CancelAppointmentActionLater {
    /// The body.
    pub fn to_parameters(&self) -> Result<Parameters, String> {
        check_required("comments", &self.comments, MAX_COMMENT_CHARS)?;
        let mut p = Parameters::with_profile(profile::CANCEL_ACTION_LATER);
        p.push_value("comments", Value::String(self.comments.clone()));
        if let Some(pr) = self.priority {
            p.push_value("priority", Value::Coding(pr.coding()));
        }
        if let Some(b) = self.appointment_cancelled_in_pas {
            p.push_value("appointmentCancelledInPAS", Value::Boolean(b));
        }
        for a in &self.attachments {
            p.parameter
                .push(a.to_parameter("providerAttachmentFile", "PROVIDER"));
        }
        Ok(p)
    }
}

/// A028 input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordReviewOutcome {
    pub outcome: ReviewOutcome,
    pub comments: String,
    /// When returning to the referrer it must equal the current priority.
    pub priority: Option<Priority>,
    pub attachments: Vec<AttachmentRef>,
}

impl RecordReviewOutcome {
    /// The body.
    pub fn to_parameters(&self) -> Result<Parameters, String> {
        check_required("reviewComments", &self.comments, MAX_COMMENT_CHARS)?;
        let mut p = Parameters::with_profile(profile::RECORD_REVIEW_OUTCOME);
        if let Some(pr) = self.priority {
            p.push_value("reviewPriority", Value::Coding(pr.coding()));
        }
        p.push_value("reviewOutcome", Value::Coding(self.outcome.coding()));
        p.push_value("reviewComments", Value::String(self.comments.clone()));
        for a in &self.attachments {
            p.parameter
                .push(a.to_parameter("reviewAttachmentFile", "PROVIDER"));
        }
        Ok(p)
    }
}

/// A026 input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendAdviceResponse {
    pub outcome: GuidanceOutcome,
    /// Required exactly when the outcome is RETURN_TO_REFERRER_WITH_ADVICE.
    pub recommendation: Option<GuidanceRecommendation>,
    pub guidance: String,
    /// May be unchanged, but is always sent.
    pub updated_priority: Priority,
    pub attachments: Vec<AttachmentRef>,
}

impl SendAdviceResponse {
    /// The body.
    pub fn to_parameters(&self) -> Result<Parameters, String> {
        check_required("guidance", &self.guidance, MAX_GUIDANCE_CHARS)?;
        let needs = self.outcome == GuidanceOutcome::ReturnToReferrerWithAdvice;
        if needs != self.recommendation.is_some() {
            return Err(
                "guidanceIntendedRecommendation is required with RETURN_TO_REFERRER_WITH_ADVICE and allowed only then"
                    .into(),
            );
        }
        let mut p = Parameters::with_profile(profile::SEND_TO_REQUESTER);
        p.push_value("guidanceOutcome", Value::Coding(self.outcome.coding()));
        if let Some(r) = self.recommendation {
            p.push_value("guidanceIntendedRecommendation", Value::Coding(r.coding()));
        }
        p.push_value("guidance", Value::String(self.guidance.clone()));
        p.push_value(
            "updatedPriority",
            Value::Coding(self.updated_priority.coding()),
        );
        for a in &self.attachments {
            p.parameter
                .push(a.to_parameter("guidanceAttachmentFile", "GUIDANCE_RESPONSE"));
        }
        Ok(p)
    }
}

/// A027 input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertAdviceToReferral {
    /// UBRN of the A&G request.
    pub ubrn: Ubrn,
    /// Its latest version (the A027 concurrency check; there is no If-Match).
    pub version: Version,
    pub guidance: String,
    pub new_priority: Priority,
    /// For the provider admins who book the new referral.
    pub review_comments: String,
    pub guidance_attachments: Vec<AttachmentRef>,
    pub review_attachments: Vec<AttachmentRef>,
}

impl ConvertAdviceToReferral {
    /// The body.
    pub fn to_parameters(&self) -> Result<Parameters, String> {
        check_required("guidance", &self.guidance, MAX_GUIDANCE_CHARS)?;
        check_required("reviewComments", &self.review_comments, MAX_GUIDANCE_CHARS)?;
        let mut p = Parameters::with_profile(profile::CREATE_FROM_ADVICE);
        p.push_value(
            "createFrom",
            Value::Reference(Reference::to(format!(
                "CommunicationRequest/{}/_history/{}",
                self.ubrn, self.version
            ))),
        );
        p.push_value("guidance", Value::String(self.guidance.clone()));
        p.push_value(
            "newReferralPriority",
            Value::Coding(self.new_priority.coding()),
        );
        p.push_value(
            "reviewComments",
            Value::String(self.review_comments.clone()),
        );
        for a in &self.guidance_attachments {
            p.parameter
                .push(a.to_parameter("guidanceAttachmentFile", "GUIDANCE_RESPONSE"));
        }
        for a in &self.review_attachments {
            p.parameter
                .push(a.to_parameter("reviewAttachmentFile", "PROVIDER"));
        }
        Ok(p)
    }
}

fn check_required(name: &str, text: &str, max: usize) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("{name} must not be empty"));
    }
    check_len(name, Some(text), max)
}

fn check_len(name: &str, text: Option<&str>, max: usize) -> Result<(), String> {
    match text {
        Some(t) if t.chars().count() > max => {
            Err(format!("{name} is longer than {max} characters"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_parses_codes_loosely() {
        assert_eq!(
            "two-week-wait".parse::<Priority>(),
            Ok(Priority::TwoWeekWait)
        );
        assert!("SOON".parse::<Priority>().unwrap_err().contains("ROUTINE"));
    }

    #[test]
    fn advice_response_requires_recommendation_only_when_returning() {
        let mut r = SendAdviceResponse {
            outcome: GuidanceOutcome::ReturnToReferrerWithAdvice,
            recommendation: None,
            guidance: "x".into(),
            updated_priority: Priority::Routine,
            attachments: vec![],
        };
        assert!(r.to_parameters().is_err());
        r.recommendation = Some(GuidanceRecommendation::Other);
        assert!(r.to_parameters().is_ok());
        r.outcome = GuidanceOutcome::RequireFurtherInformation;
        assert!(r.to_parameters().is_err());
    }

    #[test]
    fn over_long_comments_are_refused() {
        let r = RecordReviewOutcome {
            outcome: ReviewOutcome::AcceptReferBookLater,
            comments: "x".repeat(2001),
            priority: None,
            attachments: vec![],
        };
        assert!(r.to_parameters().unwrap_err().contains("2000"));
    }
}
