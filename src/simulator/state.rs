//! The simulated e-RS world: referrals, A&G requests with their conversations, the
//! attachment index, the log of write calls and the short-lived object-store links.
//! Resources are kept as FHIR JSON (`serde_json::Value`) so that replies have exactly the
//! shapes of the official examples; the helpers here read and change the few fields the
//! simulator's behaviour depends on (version, state, priority, service, appointment).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{json, Value};

/// Base of the e-RS StructureDefinition URLs.
pub const SD: &str = "https://fhir.nhs.uk/STU3/StructureDefinition/";
/// Base of the e-RS CodeSystem URLs.
pub const CS: &str = "https://fhir.nhs.uk/STU3/CodeSystem/";

/// One referral and the side facts e-RS keeps that the resource does not show.
#[derive(Debug, Clone)]
pub struct Referral {
    /// The ReferralRequest JSON as A005 returns it.
    pub resource: Value,
    /// Set by A013: acceptance is invisible in the resource (state stays `BOOKED`) but
    /// takes the referral off the review worklist.
    pub accepted: bool,
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

/// A write call as received, for `GET /_admin/calls`.
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
    /// Write calls received, oldest first.
    pub calls: Vec<CallRecord>,
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

impl World {
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

/// `meta.versionId` as a number (0 if absent or not a number).
pub fn version_of(resource: &Value) -> u64 {
    resource["meta"]["versionId"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Increments `meta.versionId` and returns the new version.
pub fn bump_version(resource: &mut Value) -> u64 {
    let v = version_of(resource) + 1;
    resource["meta"]["versionId"] = json!(v.to_string());
    v
}

/// The extension of `v` whose URL ends with `/name`.
pub fn extension<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["extension"].as_array()?.iter().find(|e| {
        e["url"]
            .as_str()
            .is_some_and(|u| u.rsplit('/').next() == Some(name))
    })
}

/// Mutable access to the extension of `v` whose URL ends with `/name`.
pub fn extension_mut<'a>(v: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    v["extension"].as_array_mut()?.iter_mut().find(|e| {
        e["url"]
            .as_str()
            .is_some_and(|u| u.rsplit('/').next() == Some(name))
    })
}

/// Sets (adding if needed) the extension `name` of `v` to `ext` (which carries its URL).
pub fn set_extension(v: &mut Value, name: &str, ext: Value) {
    if let Some(e) = extension_mut(v, name) {
        *e = ext;
        return;
    }
    if !v["extension"].is_array() {
        v["extension"] = json!([]);
    }
    if let Some(arr) = v["extension"].as_array_mut() {
        arr.push(ext);
    }
}

/// The contained resources of `v` of type `ty`.
pub fn contained<'a>(v: &'a Value, ty: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    v["contained"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |c| c["resourceType"] == ty)
}

/// A priority coding of `eRS-Priority-1`.
pub fn priority_coding(code: &str) -> Value {
    let display = match code {
        "URGENT" => "Urgent",
        "TWO_WEEK_WAIT" => "2 Week Wait",
        _ => "Routine",
    };
    json!({"system": format!("{CS}eRS-Priority-1"), "code": code, "display": display})
}

impl Referral {
    /// The UBRN.
    pub fn ubrn(&self) -> &str {
        self.resource["id"].as_str().unwrap_or("")
    }

    /// The current version.
    pub fn version(&self) -> u64 {
        version_of(&self.resource)
    }

    /// The referral state code (`BOOKED`, `AWAITING_TRIAGE`, …).
    pub fn state(&self) -> &str {
        extension(&self.resource, "Extension-eRS-ReferralState-1")
            .and_then(|s| s["extension"].as_array())
            .and_then(|subs| subs.iter().find(|x| x["url"] == "state"))
            .and_then(|x| x["valueCoding"]["code"].as_str())
            .unwrap_or("")
    }

    /// The `reason` sub-extension code of the state, if any.
    pub fn state_reason(&self) -> Option<&str> {
        extension(&self.resource, "Extension-eRS-ReferralState-1")
            .and_then(|s| s["extension"].as_array())
            .and_then(|subs| subs.iter().find(|x| x["url"] == "reason"))
            .and_then(|x| x["valueCoding"]["code"].as_str())
    }

    /// Sets the state with an optional reason coding and comments.
    pub fn set_state(&mut self, code: &str, reason: Option<Value>, comments: Option<&str>) {
        let display = state_display(code);
        let mut subs = vec![json!({"url": "state", "valueCoding": {
            "system": format!("{CS}eRS-ReferralState-1"), "code": code, "display": display}})];
        if let Some(r) = reason {
            subs.push(json!({"url": "reason", "valueCoding": r}));
        }
        if let Some(c) = comments {
            subs.push(json!({"url": "comments", "valueString": c}));
        }
        set_extension(
            &mut self.resource,
            "Extension-eRS-ReferralState-1",
            json!({"url": format!("{SD}Extension-eRS-ReferralState-1"), "extension": subs}),
        );
    }

    /// The priority code.
    pub fn priority(&self) -> &str {
        extension(&self.resource, "Extension-eRS-ReferralPriority-1")
            .and_then(|e| e["valueCodeableConcept"]["coding"][0]["code"].as_str())
            .unwrap_or("ROUTINE")
    }

    /// Changes the priority.
    pub fn set_priority(&mut self, code: &str) {
        set_extension(
            &mut self.resource,
            "Extension-eRS-ReferralPriority-1",
            json!({"url": format!("{SD}Extension-eRS-ReferralPriority-1"),
                   "valueCodeableConcept": {"coding": [priority_coding(code)]}}),
        );
    }

    /// The e-RS service the referral belongs to: the booked appointment's service, else the
    /// first shortlisted service. Returns (id, display).
    pub fn service(&self) -> (String, String) {
        if let Some(appt) = contained(&self.resource, "Appointment").next() {
            for p in appt["participant"].as_array().into_iter().flatten() {
                if p["actor"]["identifier"]["system"] == "http://fhir.nhs.net/Id/ers-service" {
                    return (
                        p["actor"]["identifier"]["value"]
                            .as_str()
                            .unwrap_or("")
                            .into(),
                        p["actor"]["display"].as_str().unwrap_or("").into(),
                    );
                }
            }
        }
        if let Some(list) = contained(&self.resource, "List").next() {
            let item = &list["entry"][0]["item"];
            return (
                item["identifier"]["value"].as_str().unwrap_or("").into(),
                item["display"].as_str().unwrap_or("").into(),
            );
        }
        (String::new(), String::new())
    }

    /// Whether the service is indirectly bookable (IBS: the PAS holds the slots). The
    /// simulator recognises IBS services by "Indirect" in their name.
    pub fn is_indirect(&self) -> bool {
        self.service().1.to_lowercase().contains("indirect")
    }

    /// The specialty coding: `specialty`, else the search criteria's specialty.
    pub fn specialty(&self) -> Value {
        let direct = &self.resource["specialty"]["coding"][0];
        if direct.is_object() {
            return direct.clone();
        }
        contained(&self.resource, "Parameters")
            .flat_map(|p| p["parameter"].as_array().into_iter().flatten())
            .find(|p| p["name"] == "specialty")
            .map(|p| p["valueCoding"].clone())
            .unwrap_or(Value::Null)
    }

    /// The patient's NHS number.
    pub fn nhs_number(&self) -> &str {
        self.resource["subject"]["identifier"]["value"]
            .as_str()
            .unwrap_or("")
    }

    /// The SDS id of the clinician on the appointment, if any.
    pub fn clinician(&self) -> Option<String> {
        let appt = contained(&self.resource, "Appointment").next()?;
        appt["participant"]
            .as_array()?
            .iter()
            .find(|p| p["actor"]["identifier"]["system"] == "http://fhir.nhs.net/Id/sds-user-id")
            .and_then(|p| p["actor"]["identifier"]["value"].as_str())
            .map(str::to_owned)
    }

    /// The status of the contained appointment, if any.
    pub fn appointment_status(&self) -> Option<&str> {
        contained(&self.resource, "Appointment")
            .next()
            .and_then(|a| a["status"].as_str())
    }

    /// Sets the contained appointment's status (no-op without an appointment).
    pub fn set_appointment_status(&mut self, status: &str) {
        if let Some(arr) = self.resource["contained"].as_array_mut() {
            for c in arr.iter_mut() {
                if c["resourceType"] == "Appointment" {
                    c["status"] = json!(status);
                }
            }
        }
    }

    /// A dateTime extension value such as `Extension-eRS-eReferralPathwayStart-1`.
    pub fn date_ext(&self, name: &str) -> Option<String> {
        let e = extension(&self.resource, name)?;
        e.get("valueDateTime")
            .or_else(|| e.get("valueInstant"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// Adds a contained DocumentReference (e.g. a provider attachment of A022/A028).
    pub fn add_document(&mut self, mut doc: Value) {
        let n = contained(&self.resource, "DocumentReference").count();
        let id = format!("DocumentReference-P{}", n + 1);
        doc["id"] = json!(id);
        if !self.resource["contained"].is_array() {
            self.resource["contained"] = json!([]);
        }
        if let Some(arr) = self.resource["contained"].as_array_mut() {
            arr.push(doc);
        }
        if !self.resource["supportingInfo"].is_array() {
            self.resource["supportingInfo"] = json!([]);
        }
        if let Some(arr) = self.resource["supportingInfo"].as_array_mut() {
            arr.push(json!({"reference": format!("#{id}")}));
        }
    }
}

/// Display text of a referral state code.
pub fn state_display(code: &str) -> &'static str {
    match code {
        "BOOKED" => "Booked",
        "NOT_BOOKED" => "Not Booked",
        "AWAITING_TRIAGE" => "Awaiting Triage",
        "REJECTED" => "Rejected",
        "DEFERRED_TO_PROVIDER" => "Deferred to Provider",
        "TRIAGED_PROVIDER_TO_ACTION" => "Triaged - Provider To Action",
        "TRIAGE_RESPONSE" => "Triage Response",
        "CANCELLED_REFERRAL" => "Cancelled Referral",
        _ => "Other",
    }
}

impl Advice {
    /// The UBRN.
    pub fn ubrn(&self) -> &str {
        self.resource["id"].as_str().unwrap_or("")
    }

    /// The current version.
    pub fn version(&self) -> u64 {
        version_of(&self.resource)
    }

    /// The A&G status (`category[0]`), e.g. `PROVIDER_RESPONSE_REQUIRED`.
    pub fn category(&self) -> &str {
        self.resource["category"][0]["coding"][0]["code"]
            .as_str()
            .unwrap_or("")
    }

    /// Sets the A&G status.
    pub fn set_category(&mut self, code: &str) {
        self.resource["category"] = json!([{"coding": [{
            "system": format!("{CS}eRS-AdviceAndGuidanceStatus-1"), "code": code}]}]);
    }

    /// The priority code.
    pub fn priority(&self) -> &str {
        extension(&self.resource, "Extension-eRS-ReferralPriority-1")
            .and_then(|e| e["valueCodeableConcept"]["coding"][0]["code"].as_str())
            .unwrap_or("ROUTINE")
    }

    /// Changes the priority.
    pub fn set_priority(&mut self, code: &str) {
        set_extension(
            &mut self.resource,
            "Extension-eRS-ReferralPriority-1",
            json!({"url": format!("{SD}Extension-eRS-ReferralPriority-1"),
                   "valueCodeableConcept": {"coding": [priority_coding(code)]}}),
        );
    }

    /// The recipient e-RS service id.
    pub fn service(&self) -> String {
        self.resource["recipient"][0]["extension"][0]["valueReference"]["identifier"]["value"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Whether the referrer allowed the provider to convert this request (A027 gate).
    pub fn conversion_authorised(&self) -> bool {
        extension(
            &self.resource,
            "Extension-eRS-ProviderConversionAuthorisation-1",
        )
        .and_then(|e| e["valueCoding"]["code"].as_str())
            == Some("AUTHORISED_TO_CONVERT")
    }
}

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
