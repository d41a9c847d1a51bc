//! Advice and Guidance (A&G) resources: the request (`CommunicationRequest`, A024), the
//! conversation (`Communication` in a search `Bundle`, A025), and the `Bundle`/`Task` shapes
//! also used by A029 (available actions).

use serde::{Deserialize, Serialize};

use crate::ids::Version;

use super::common::{find_extension, CodeableConcept, Extension, Identifier, Meta, Reference};
use super::Resource;

/// An A&G request. The `id` is its UBRN; `meta.versionId` goes into `If-Match` (A026) or
/// the `createFrom` reference (A027).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommunicationRequest {
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipient: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<Requester>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payload: Vec<Payload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authored_on: Option<String>,
}

impl CommunicationRequest {
    /// `meta.versionId` as a number.
    pub fn version(&self) -> Option<Version> {
        Version::parse(self.meta.version_id.as_deref()?).ok()
    }

    /// The `eRS-AdviceAndGuidanceStatus-1` category code.
    pub fn status_code(&self) -> Option<&str> {
        self.category.iter().find_map(CodeableConcept::first_code)
    }

    /// The provider-conversion authorisation code (e.g. `AUTHORISED_TO_CONVERT`), the
    /// gate for A027.
    pub fn conversion_authorisation(&self) -> Option<&str> {
        find_extension(
            &self.extension,
            "Extension-eRS-ProviderConversionAuthorisation-1",
        )?
        .value
        .as_ref()?
        .as_code()
    }
}

/// `CommunicationRequest.requester`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Requester {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Reference>,
}

/// `payload` of a CommunicationRequest or Communication: text or a reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub content: Option<PayloadContent>,
}

/// `payload.content[x]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PayloadContent {
    #[serde(rename = "contentString")]
    String(String),
    #[serde(rename = "contentReference")]
    Reference(Reference),
}

/// One message of an A&G conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Communication {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub meta: Meta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Extension>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub based_on: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipient: Vec<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payload: Vec<Payload>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub note: Vec<Annotation>,
}

/// `Annotation` (`note`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A `Bundle` (A025 conversation, A029 actions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub meta: Meta,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<BundleLink>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry: Vec<BundleEntry>,
}

impl Bundle {
    /// The entries' resources.
    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.entry.iter().filter_map(|e| e.resource.as_ref())
    }

    /// The A025 conversation messages.
    pub fn communications(&self) -> Vec<&Communication> {
        self.resources()
            .filter_map(|r| match r {
                Resource::Communication(c) => Some(c.as_ref()),
                _ => None,
            })
            .collect()
    }

    /// The A029 action codes (e.g. `RECORD_REVIEW_OUTCOME`).
    pub fn task_codes(&self) -> Vec<&str> {
        self.resources()
            .filter_map(|r| match r {
                Resource::Task(t) => t.code.as_ref()?.first_code(),
                _ => None,
            })
            .collect()
    }
}

/// `Bundle.link`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BundleLink {
    #[serde(default)]
    pub relation: String,
    #[serde(default)]
    pub url: String,
}

/// `Bundle.entry`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
}

/// A `Task` (A029: an action the user may take on a referral).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Task {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub meta: Meta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focus: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeableConcept>,
}
