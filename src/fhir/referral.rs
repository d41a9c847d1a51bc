//! `ReferralRequest` (eRS-ReferralRequest-1, read by A005 and returned by every referral
//! write) with the resources it contains: `Appointment`, `DocumentReference` (attachments)
//! and `List` (the shortlist; the worklist `List` of A008 is the same type, see
//! [`super::worklist`]). Accessors read the e-RS extensions (ERS-API.md §7.1).

use serde::{Deserialize, Serialize};

use crate::ids::Version;

use super::common::{
    find_extension, Attachment, CodeableConcept, Coding, Extension, Identifier, Meta, OneOrMany,
    Reference,
};
use super::Resource;

/// Base of every e-RS STU3 structure-definition URL.
pub const SD_BASE: &str = "https://fhir.nhs.uk/STU3/StructureDefinition/";
/// Base of every static e-RS STU3 code-system URL.
pub const CS_BASE: &str = "https://fhir.nhs.uk/STU3/CodeSystem/";

/// Names of the e-RS extensions the readers look up (matched as URL suffixes).
pub const EXT_REFERRAL_STATE: &str = "Extension-eRS-ReferralState-1";
pub const EXT_PRIORITY: &str = "Extension-eRS-ReferralPriority-1";
pub const EXT_PATHWAY_START: &str = "Extension-eRS-eReferralPathwayStart-1";
pub const EXT_AVAILABILITY: &str = "Extension-eRS-AvailabilityStatus-1";

/// An e-RS referral. The `id` is the UBRN and `meta.versionId` the version to send in
/// `If-Match` on the next write.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferralRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub meta: Meta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contained: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specialty: Option<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supporting_info: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authored_on: Option<String>,
}

impl ReferralRequest {
    /// The UBRN (resource id).
    pub fn ubrn(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// `meta.versionId` as a number.
    pub fn version(&self) -> Option<Version> {
        Version::parse(self.meta.version_id.as_deref()?).ok()
    }

    /// The NHS number from `subject.identifier`.
    pub fn nhs_number(&self) -> Option<&str> {
        self.subject.as_ref()?.identifier.as_ref()?.value.as_deref()
    }

    /// The referral state extension's `state` code (e.g. `BOOKED`, `REJECTED`).
    pub fn state(&self) -> Option<&Coding> {
        self.state_sub("state")?.value.as_ref()?.as_coding()
    }

    /// Whether the referral is cancelled (`status` or the e-RS state `CANCELLED_REFERRAL`).
    pub fn is_cancelled(&self) -> bool {
        self.status.as_deref() == Some("cancelled")
            || self.state().map(Coding::code) == Some("CANCELLED_REFERRAL")
    }

    /// The state's `reason` coding (e.g. `eRS-ReviewOutcome-1|ACCEPT_REFER_BOOK_LATER`).
    pub fn state_reason(&self) -> Option<&Coding> {
        self.state_sub("reason")?.value.as_ref()?.as_coding()
    }

    fn state_sub(&self, name: &str) -> Option<&Extension> {
        find_extension(&self.extension, EXT_REFERRAL_STATE)?.sub(name)
    }

    /// The priority code (`ROUTINE`, `URGENT`, `TWO_WEEK_WAIT`).
    pub fn priority(&self) -> Option<&str> {
        find_extension(&self.extension, EXT_PRIORITY)?
            .value
            .as_ref()?
            .as_code()
    }

    /// The pathway start (`valueDateTime` in the schema, `valueInstant` in the examples).
    pub fn pathway_start(&self) -> Option<&str> {
        find_extension(&self.extension, EXT_PATHWAY_START)?
            .value
            .as_ref()?
            .as_date_time()
    }

    /// The contained booked appointment, if any.
    pub fn appointment(&self) -> Option<&Appointment> {
        self.contained.iter().find_map(|r| match r {
            Resource::Appointment(a) => Some(a.as_ref()),
            _ => None,
        })
    }

    /// The contained attachments (DocumentReferences).
    pub fn attachments(&self) -> impl Iterator<Item = &DocumentReference> {
        self.contained.iter().filter_map(|r| match r {
            Resource::DocumentReference(d) => Some(d.as_ref()),
            _ => None,
        })
    }

    /// UBRNs of related referrals (`supportingInfo` of the form `ReferralRequest/<ubrn>`).
    pub fn related_ubrns(&self) -> Vec<&str> {
        self.supporting_info
            .iter()
            .filter_map(|r| r.reference.as_deref()?.strip_prefix("ReferralRequest/"))
            .collect()
    }
}

/// A booked appointment (contained `#appointment`, eRS-Appointment-1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Appointment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub meta: Meta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slot: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incoming_referral: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participant: Vec<AppointmentParticipant>,
}

/// An appointment participant (service, patient or clinician).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppointmentParticipant {
    /// A single object in e-RS responses although FHIR says array (known e-RS issue).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<OneOrMany<CodeableConcept>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// An attachment (eRS-DocumentReference-1): contained in referrals and A&G requests, and
/// sent in request bodies to reference files uploaded earlier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub meta: Meta,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// A FHIR instant; e-RS rejects instants without time or zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<DocumentContent>,
}

impl DocumentReference {
    /// The first attachment.
    pub fn attachment(&self) -> Option<&Attachment> {
        self.content.first().map(|c| &c.attachment)
    }

    /// The attachment type code (`REFERRER`, `PROVIDER`, `GUIDANCE_RESPONSE`, ...).
    pub fn attachment_type(&self) -> Option<&str> {
        self.kind.as_ref()?.first_code()
    }
}

/// `DocumentReference.content`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DocumentContent {
    pub attachment: Attachment,
}

/// A FHIR `List`: the referral shortlist, and the A008/A023 worklist (see
/// [`super::worklist`] for the item accessors).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct List {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub meta: Meta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contained: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry: Vec<ListEntry>,
}

/// `List.entry`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListEntry {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
    #[serde(default)]
    pub item: Reference,
}
