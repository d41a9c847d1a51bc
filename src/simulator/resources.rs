//! JSON helpers over the FHIR resources the simulator keeps (`serde_json::Value`):
//! versions, extensions by name, contained resources, and the accessors of [`Referral`]
//! and [`Advice`] for the few fields the simulator's behaviour depends on (state,
//! priority, service, appointment, A&G status).

use serde_json::{json, Value};

use super::state::{Advice, Referral, CS, SD};

/// `meta.versionId` as a number (0 if absent or not a number).
pub fn version_of(resource: &Value) -> u64 {
    resource["meta"]["versionId"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Now as a FHIR instant with milliseconds (`2024-05-08T09:54:23.167Z`).
pub fn now_instant() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Increments `meta.versionId` and returns the new version.
pub fn bump_version(resource: &mut Value) -> u64 {
    let v = version_of(resource) + 1;
    resource["meta"]["versionId"] = json!(v.to_string());
    v
}

/// The extension of `v` whose URL ends with `/name`.
pub fn extension<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["extension"]
        .as_array()?
        .iter()
        .find(|e| url_names(e, name))
}

/// Mutable access to the extension of `v` whose URL ends with `/name`.
pub fn extension_mut<'a>(v: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    v["extension"]
        .as_array_mut()?
        .iter_mut()
        .find(|e| url_names(e, name))
}

/// Whether extension `e`'s URL ends with `/name`.
fn url_names(e: &Value, name: &str) -> bool {
    e["url"]
        .as_str()
        .is_some_and(|u| u.rsplit('/').next() == Some(name))
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

/// The priority code of a referral or A&G request (`ROUTINE` when absent).
fn priority_of(resource: &Value) -> &str {
    extension(resource, "Extension-eRS-ReferralPriority-1")
        .and_then(|e| e["valueCodeableConcept"]["coding"][0]["code"].as_str())
        .unwrap_or("ROUTINE")
}

/// Sets the priority extension of a referral or A&G request.
fn set_priority_of(resource: &mut Value, code: &str) {
    set_extension(
        resource,
        "Extension-eRS-ReferralPriority-1",
        json!({"url": format!("{SD}Extension-eRS-ReferralPriority-1"),
               "valueCodeableConcept": {"coding": [priority_coding(code)]}}),
    );
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
        self.state_part("state").unwrap_or("")
    }

    /// The `reason` sub-extension code of the state, if any.
    pub fn state_reason(&self) -> Option<&str> {
        self.state_part("reason")
    }

    /// The coding code of the referral-state sub-extension `part` (`state`, `reason`).
    fn state_part(&self, part: &str) -> Option<&str> {
        extension(&self.resource, "Extension-eRS-ReferralState-1")
            .and_then(|s| s["extension"].as_array())
            .and_then(|subs| subs.iter().find(|x| x["url"] == part))
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
        priority_of(&self.resource)
    }

    /// Changes the priority.
    pub fn set_priority(&mut self, code: &str) {
        set_priority_of(&mut self.resource, code);
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
        priority_of(&self.resource)
    }

    /// Changes the priority.
    pub fn set_priority(&mut self, code: &str) {
        set_priority_of(&mut self.resource, code);
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
