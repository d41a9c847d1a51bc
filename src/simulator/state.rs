//! The simulated e-RS world: referrals, A&G requests with their conversations, the
//! attachment index, the log of write calls and the short-lived object-store links.
//! Resources are kept as FHIR JSON (`serde_json::Value`) so that replies have exactly the
//! shapes of the official examples; the helpers here read and change the few fields the
//! simulator's behaviour depends on (version, state, priority, service, appointment).

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;
use serde_json::{json, Value};

/// Base of the e-RS StructureDefinition URLs.
pub const SD: &str = "https://fhir.nhs.uk/STU3/StructureDefinition/";
/// Base of the e-RS CodeSystem URLs.
pub const CS: &str = "https://fhir.nhs.uk/STU3/CodeSystem/";

/// How many write calls the call log keeps.
pub const MAX_CALLS: usize = 100_000;

/// One referral and the side facts e-RS keeps that the resource does not show.
#[derive(Debug, Clone)]
pub struct Referral {
    /// The ReferralRequest JSON as A005 returns it.
    pub resource: Value,
    /// Set by A013: acceptance is invisible in the resource (state stays `BOOKED`) but
    /// takes the referral off the review worklist.
    pub accepted: bool,
    /// Set by a referrer-side priority change (`POST /_admin/referrals/{ubrn}/change`):
    /// the worklist item's `requestContextStatus` shows it.
    pub priority_changed: bool,
    /// Set by a referrer-side change of the clinical information (the referral letter).
    pub letter_changed: bool,
}

/// One A&G request and its conversation (A025).
#[derive(Debug, Clone)]
pub struct Advice {
    /// The CommunicationRequest JSON as A024 returns it.
    pub resource: Value,
    /// The `Communication` resources of the conversation, oldest first.
    pub conversation: Vec<Value>,
}

/// What the simulator knows about a downloadable attachment.
#[derive(Debug, Clone)]
pub struct Binary {
    /// `attachment.contentType`.
    pub content_type: String,
    /// `attachment.title`, used as the download file name.
    pub title: String,
    /// `Extension-eRS-AvailabilityStatus-1` code (`AVAILABLE`, `PENDING`, …).
    pub availability: String,
    /// UBRN of the referral or A&G request that holds it.
    pub owner: String,
}

/// A write call as received and answered, for `GET /_admin/calls`.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// Operation id, e.g. `A013`.
    pub operation: String,
    /// The UBRN in the path, or the A&G UBRN for A027.
    pub ubrn: Option<String>,
    /// The `If-Match` header as sent.
    pub if_match: Option<String>,
    /// The JSON body, if any and if it parsed.
    pub body: Option<Value>,
    /// The HTTP status the client saw.
    pub status: u16,
    /// Whether the write changed the world (true also when its response was lost).
    pub applied: bool,
    /// The `X-Correlation-ID` header as sent.
    pub correlation_id: Option<String>,
    /// When it was answered (ms since the epoch).
    pub at_ms: i64,
}

/// The mutable world behind the simulator's lock.
#[derive(Debug, Default)]
pub struct World {
    /// Referrals by UBRN.
    pub referrals: BTreeMap<String, Referral>,
    /// A&G requests by UBRN.
    pub advice: BTreeMap<String, Advice>,
    /// Attachments by binary id (the part after `Binary/`).
    pub binaries: HashMap<String, Binary>,
    /// Write calls received, oldest first; the oldest are dropped beyond [`MAX_CALLS`] so
    /// long load runs do not grow without bound.
    pub calls: VecDeque<CallRecord>,
    /// Object-store tokens issued by A042: token -> (binary id, expiry).
    pub object_links: HashMap<String, (String, tokio::time::Instant)>,
    /// Counter for ids of Communications created by A026/A027.
    pub next_communication: u64,
}

/// Why a resource could not be added to the world.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// The JSON is not the expected resource type.
    #[error("expected resourceType {expected}, found {found}")]
    WrongType {
        /// The expected type.
        expected: &'static str,
        /// What the JSON said.
        found: String,
    },
    /// `id` (the UBRN) is missing or not 12 digits.
    #[error("id must be a 12-digit UBRN, found {0:?}")]
    BadUbrn(String),
}

impl InsertError {
    /// Never retryable: the resource itself is wrong.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

impl World {
    /// Appends to the call log, dropping the oldest entry beyond [`MAX_CALLS`].
    pub fn log_call(&mut self, call: CallRecord) {
        if self.calls.len() >= MAX_CALLS {
            self.calls.pop_front();
        }
        self.calls.push_back(call);
    }

    /// Adds (or replaces) a referral and indexes its attachments.
    pub fn insert_referral(&mut self, mut resource: Value) -> Result<String, InsertError> {
        let ubrn = check_resource(&resource, "ReferralRequest")?;
        ensure_version(&mut resource);
        self.index_binaries(&resource, &ubrn);
        self.referrals.insert(
            ubrn.clone(),
            Referral {
                resource,
                accepted: false,
                priority_changed: false,
                letter_changed: false,
            },
        );
        Ok(ubrn)
    }

    /// Adds (or replaces) an A&G request, seeding its conversation with the referrer's
    /// question if none is given.
    pub fn insert_advice(&mut self, mut resource: Value) -> Result<String, InsertError> {
        let ubrn = check_resource(&resource, "CommunicationRequest")?;
        ensure_version(&mut resource);
        self.index_binaries(&resource, &ubrn);
        let version = version_of(&resource);
        let first = self.communication(
            &ubrn,
            version,
            "REQUESTER",
            "Please advise on this patient: symptoms persist despite first-line treatment.",
            "2021-09-23T11:21:11.740Z",
        );
        self.advice.insert(
            ubrn.clone(),
            Advice {
                resource,
                conversation: vec![first],
            },
        );
        Ok(ubrn)
    }

    /// Builds a `Communication` of the conversation of A&G request `ubrn`.
    pub fn communication(
        &mut self,
        ubrn: &str,
        version: u64,
        sent_by: &str,
        text: &str,
        sent: &str,
    ) -> Value {
        self.next_communication += 1;
        let id = format!("{}", 90000 + self.next_communication);
        let role = if sent_by == "REQUESTER" {
            "PractitionerRole/021600556514.R68.REFERRING-CLINICIAN"
        } else {
            "PractitionerRole/021600556514.R69.SERVICE-PROVIDER-CLINICIAN"
        };
        json!({
            "id": id,
            "meta": {"versionId": "0", "profile": [format!("{SD}eRS-Communication-1")]},
            "resourceType": "Communication",
            "extension": [{"url": format!("{SD}Extension-Communication-Requester-1"), "valueReference": {"reference": role}}],
            "basedOn": [{"reference": format!("CommunicationRequest/{ubrn}/_history/{version}")}],
            "status": "completed",
            "category": [{"coding": [{"system": format!("{CS}eRS-CommunicationSentBy-1"), "code": sent_by}]}],
            "recipient": [{"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "R68"}}],
            "sent": sent,
            "sender": {"extension": [{"url": format!("{SD}Extension-PractitionerRole-Reference-1"), "valueReference": {"reference": role}}]},
            "note": [{"text": text}],
        })
    }

    /// Records every `Binary/<id>` attachment in `resource`'s contained DocumentReferences.
    pub fn index_binaries(&mut self, resource: &Value, owner: &str) {
        for doc in contained(resource, "DocumentReference") {
            self.index_document(doc, owner);
        }
    }

    /// Records the attachments of one DocumentReference.
    pub fn index_document(&mut self, doc: &Value, owner: &str) {
        let Some(content) = doc["content"].as_array() else {
            return;
        };
        for c in content {
            let att = &c["attachment"];
            let Some(id) = att["url"].as_str().and_then(|u| u.strip_prefix("Binary/")) else {
                continue;
            };
            let availability = extension(att, "Extension-eRS-AvailabilityStatus-1")
                .and_then(|e| e["valueCoding"]["code"].as_str())
                .unwrap_or("AVAILABLE")
                .to_owned();
            self.binaries.insert(
                id.to_owned(),
                Binary {
                    content_type: att["contentType"]
                        .as_str()
                        .unwrap_or("application/pdf")
                        .to_owned(),
                    title: att["title"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("{id}.pdf")),
                    availability,
                    owner: owner.to_owned(),
                },
            );
        }
    }
}

fn check_resource(resource: &Value, expected: &'static str) -> Result<String, InsertError> {
    let found = resource["resourceType"].as_str().unwrap_or("");
    if found != expected {
        return Err(InsertError::WrongType {
            expected,
            found: found.to_owned(),
        });
    }
    let id = resource["id"].as_str().unwrap_or("");
    if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InsertError::BadUbrn(id.to_owned()));
    }
    Ok(id.to_owned())
}

fn ensure_version(resource: &mut Value) {
    if resource["meta"]["versionId"].as_str().is_none() {
        resource["meta"]["versionId"] = json!("1");
    }
}

pub use super::resources::{
    bump_version, contained, extension, extension_mut, now_instant, priority_coding, set_extension,
    state_display, version_of,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/samples/fhir/referrals/booked-dbs.json"
        ))
        .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn referral_helpers_read_the_sample() {
        let mut w = World::default();
        let ubrn = w.insert_referral(sample()).unwrap();
        let r = &w.referrals[&ubrn];
        assert_eq!(r.state(), "BOOKED");
        assert_eq!(r.version(), 5);
        assert_eq!(r.service().0, "21012");
        assert!(!r.is_indirect());
        assert_eq!(r.clinician().as_deref(), Some("021600556514"));
        assert!(w
            .binaries
            .contains_key("719f6045-e791-4029-8e0f-1201c02b0a55"));
    }

    #[test]
    fn set_state_and_bump_version() {
        let mut w = World::default();
        let ubrn = w.insert_referral(sample()).unwrap();
        let r = w.referrals.get_mut(&ubrn).unwrap();
        r.set_state("REJECTED", Some(json!({"code": "OTHER"})), Some("no"));
        assert_eq!(r.state(), "REJECTED");
        assert_eq!(r.state_reason(), Some("OTHER"));
        assert_eq!(bump_version(&mut r.resource), 6);
        assert_eq!(r.version(), 6);
    }

    #[test]
    fn insert_rejects_bad_ubrn() {
        let mut w = World::default();
        let err = w
            .insert_referral(json!({"resourceType": "ReferralRequest", "id": "12"}))
            .unwrap_err();
        assert!(err.to_string().contains("12-digit"));
    }
}
