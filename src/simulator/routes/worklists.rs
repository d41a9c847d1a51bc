//! Worklists: A008 `ReferralRequest/$ers.fetchworklist` (provider lists
//! REFERRALS_FOR_REVIEW and APPOINTMENT_SLOT_ISSUES computed from the referrals' states, with
//! the service/specialty/clinician filters; referrer lists answered empty) and A023
//! `CommunicationRequest/$ers.fetchworklist` (A&G requests awaiting a provider response).
//! App-restricted A008 needs the `service` filter and has a daily budget per service.
//! A023 takes the same filters (service, specialty, clinician as a recipient practitioner).
//! Responses larger than `SimConfig::max_worklist_bytes` (10 MB) fail with 502
//! `RESPONSE_TOO_LARGE`: the spec says only that no successful response is returned, and
//! the API platform's gateway answers oversized responses with a 502.

use std::collections::BTreeSet;

use axum::{http::StatusCode, response::IntoResponse};
use serde_json::{json, Value};

use super::{referrals::awaiting_booked_review, Ctx, Reply};
use crate::simulator::{
    auth::Access,
    faults,
    outcome::{fhir_json, Reject},
    state::{extension, Advice, Referral, CS, SD},
    validate::{self, Params},
};

const PROVIDER_LISTS: &[&str] = &["REFERRALS_FOR_REVIEW", "APPOINTMENT_SLOT_ISSUES"];
const REFERRER_LISTS: &[&str] = &[
    "REJECTED_TRIAGE_RESPONSE",
    "ASSESSMENT_RETURNED_CANCELLED_DNA",
    "AWAITING_BOOKING",
    "LETTERS_OUTSTANDING",
];
const FILTERS: &[&str] = &[
    "service",
    "specialtyAssignedIndicator",
    "specialty",
    "location",
    "clinicianAssignedIndicator",
    "clinician",
];

/// The filters of a provider worklist request.
#[derive(Debug, Default)]
struct Filters {
    service: Option<String>,
    /// `Some(None)` = NOT_ASSIGNED, `Some(Some(code))` = that specialty.
    specialty: Option<Option<String>>,
    /// `Some(None)` = NOT_ASSIGNED, `Some(Some(id))` = that clinician.
    clinician: Option<Option<String>>,
}

fn list_type(p: &Params<'_>, system: &str, allowed: &[&str]) -> Result<String, Reject> {
    let Some((sys, code)) = p.codeable("listType")? else {
        return Err(Reject::unprocessable(
            "MISSING_VALUE",
            "parameter listType is required",
        ));
    };
    if !sys.ends_with(system) {
        return Err(Reject::unprocessable(
            "INVALID_CODE",
            format!("listType system must be {CS}{system}"),
        ));
    }
    if !allowed.contains(&code.as_str()) {
        return Err(Reject::unprocessable(
            "INVALID_CODE",
            format!("listType {code} is not a known worklist"),
        ));
    }
    Ok(code)
}

fn filters(p: &Params<'_>) -> Result<Filters, Reject> {
    let mut f = Filters::default();
    if let Some((sys, v)) = p.identifier("service")? {
        if sys != "http://fhir.nhs.net/Id/ers-service" {
            return Err(Reject::unprocessable(
                "INVALID_VALUE",
                "service must use system http://fhir.nhs.net/Id/ers-service",
            ));
        }
        f.service = Some(v);
    }
    f.specialty = assigned(
        p,
        "specialtyAssignedIndicator",
        p.codeable("specialty")?.map(|(_, c)| c),
        "specialty",
    )?;
    f.clinician = assigned(
        p,
        "clinicianAssignedIndicator",
        p.identifier("clinician")?.map(|(_, v)| v),
        "clinician",
    )?;
    Ok(f)
}

/// Combines an `…AssignedIndicator` with its value: a value needs ASSIGNED, NOT_ASSIGNED
/// forbids a value.
fn assigned(
    p: &Params<'_>,
    indicator: &str,
    value: Option<String>,
    name: &str,
) -> Result<Option<Option<String>>, Reject> {
    let ind = p.codeable(indicator)?.map(|(_, c)| c);
    match (ind.as_deref(), value) {
        (None, None) => Ok(None),
        (Some("ASSIGNED"), Some(v)) => Ok(Some(Some(v))),
        (Some("ASSIGNED"), None) => Err(Reject::unprocessable(
            "MISSING_VALUE",
            format!("{name} is required when {indicator} is ASSIGNED"),
        )),
        (Some("NOT_ASSIGNED"), None) => Ok(Some(None)),
        (Some("NOT_ASSIGNED"), Some(_)) => Err(Reject::unprocessable(
            "INVALID_VALUE",
            format!("{name} must not be given when {indicator} is NOT_ASSIGNED"),
        )),
        (None, Some(_)) => Err(Reject::unprocessable(
            "MISSING_VALUE",
            format!("{indicator} is required with {name}"),
        )),
        (Some(other), _) => Err(Reject::unprocessable(
            "INVALID_CODE",
            format!("{indicator} {other} must be ASSIGNED or NOT_ASSIGNED"),
        )),
    }
}

fn list(contained: Vec<Value>, entries: Vec<Value>) -> Value {
    let mut l = json!({
        "meta": {"profile": [format!("{SD}eRS-FetchWorklist-List-1")]},
        "resourceType": "List",
        "status": "current",
        "mode": "snapshot",
    });
    // Moved in, not through `json!`, which would deep-copy every item (`to_value`).
    l["entry"] = Value::Array(entries);
    if !contained.is_empty() {
        l["contained"] = Value::Array(contained);
    }
    l
}

/// Reads an A008/A023 `eRS-FetchWorklist-Parameters-1` body (`listType` and the filters).
fn fetch_params(body: &Value) -> Result<Params<'_>, Reject> {
    let mut names = vec!["listType"];
    names.extend_from_slice(FILTERS);
    validate::request(body, "eRS-FetchWorklist-Parameters-1", &names)
}

/// A008 `POST ReferralRequest/$ers.fetchworklist`.
pub async fn referrals(ctx: &Ctx<'_>) -> Reply {
    let body = ctx.json_body()?;
    let p = fetch_params(&body)?;
    let all_lists: Vec<&str> = PROVIDER_LISTS
        .iter()
        .chain(REFERRER_LISTS)
        .copied()
        .collect();
    let kind = list_type(&p, "/eRS-ReferralListSelector-1", &all_lists)?;
    let provider_list = PROVIDER_LISTS.contains(&kind.as_str());
    match &ctx.access {
        Access::App if !provider_list => {
            return Err(Reject::forbidden(format!(
                "application-restricted clients may only fetch REFERRALS_FOR_REVIEW or APPOINTMENT_SLOT_ISSUES, not {kind}"
            )))
        }
        Access::User { role, .. } if provider_list != role.starts_with("SERVICE_PROVIDER") => {
            return Err(Reject::unprocessable(
                "INVALID_VALUE",
                format!("worklist {kind} is not available to business function {role}"),
            ))
        }
        _ => {}
    }
    if !provider_list {
        if let Some(f) = FILTERS.iter().find(|f| !p.all(f).is_empty()) {
            return Err(Reject::unprocessable(
                "UNEXPECTED_FIELD",
                format!("filter {f} is only allowed on provider worklists"),
            ));
        }
        return Ok(fhir_json(StatusCode::OK, &list(vec![], vec![]), None));
    }
    let f = filters(&p)?;
    if let Some(service) = &f.service {
        if faults::worklist_refused(ctx.sim, service) {
            return Err(Reject::unprocessable(
                "INVALID_VALUE",
                format!("service {service} is not available to this application"),
            ));
        }
    }
    if matches!(ctx.access, Access::App) {
        let Some(service) = &f.service else {
            return Err(Reject::unprocessable(
                "MISSING_VALUE",
                "the service filter is mandatory for application-restricted worklist calls",
            ));
        };
        faults::check_worklist_budget(ctx.sim, service)?;
    }
    let w = ctx.sim.world.lock().await;
    let selected = w.referrals.values().filter(|r| {
        let on_list = match kind.as_str() {
            "REFERRALS_FOR_REVIEW" => awaiting_booked_review(r) || r.state() == "AWAITING_TRIAGE",
            _ => r.state() == "DEFERRED_TO_PROVIDER",
        };
        on_list && matches_filters(r, &f)
    });
    let rfr = kind == "REFERRALS_FOR_REVIEW";
    let mut patients = BTreeSet::new();
    let mut clinicians = BTreeSet::new();
    let mut entries = Vec::new();
    for r in selected {
        if rfr {
            patients.insert(r.nhs_number().to_owned());
            if let Some(c) = r.clinician() {
                clinicians.insert(c);
            }
            entries.push(rfr_item(r));
        } else {
            entries.push(asi_item(r));
        }
    }
    let mut contained: Vec<Value> = clinicians
        .into_iter()
        .map(|c| json!({"id": format!("Practitioner-{c}"), "meta": {"profile": [format!("{SD}eRS-Practitioner-1")]},
             "resourceType": "Practitioner", "identifier": [{"system": "http://fhir.nhs.net/Id/sds-user-id", "value": c}]}))
        .collect();
    contained.extend(patients.into_iter().map(|n| json!({"id": format!("Patient-{n}"), "meta": {"profile": [format!("{SD}eRS-Patient-1")]},
             "resourceType": "Patient", "identifier": [{"system": "http://fhir.nhs.net/Id/nhs-number", "value": n}]})));
    sized(ctx, &list(contained, entries))
}

/// The worklist reply, or 502 when it is bigger than the configured cap.
fn sized(ctx: &Ctx<'_>, list: &Value) -> Reply {
    let bytes = serde_json::to_vec(list).unwrap_or_default();
    let max = ctx.sim.cfg.max_worklist_bytes;
    if bytes.len() > max {
        tracing::warn!(
            bytes = bytes.len(),
            max,
            "worklist response too large, failing like the api platform"
        );
        return Err(Reject::new(
            StatusCode::BAD_GATEWAY,
            "too-costly",
            "RESPONSE_TOO_LARGE",
            format!(
                "worklist response of {} bytes exceeds the {max}-byte limit; narrow it with filters",
                bytes.len()
            ),
        ));
    }
    let mut resp = (StatusCode::OK, bytes).into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/fhir+json"),
    );
    Ok(resp)
}

fn matches_filters(r: &Referral, f: &Filters) -> bool {
    if let Some(s) = &f.service {
        if &r.service().0 != s {
            return false;
        }
    }
    match &f.specialty {
        Some(Some(code)) if r.specialty()["code"].as_str() != Some(code.as_str()) => return false,
        Some(None) if r.specialty()["code"].is_string() => return false,
        _ => {}
    }
    match &f.clinician {
        Some(Some(id)) if r.clinician().as_deref() != Some(id.as_str()) => false,
        Some(None) => r.clinician().is_none(),
        _ => true,
    }
}

fn cc(system: &str, code: &str) -> Value {
    json!({"coding": [{"system": system, "code": code}]})
}

fn service_ref(id: &str, display: &str) -> Value {
    json!({"identifier": {"system": "http://fhir.nhs.net/Id/ers-service", "value": id}, "display": display})
}

fn specialty_cc(r: &Referral) -> Value {
    let s = r.specialty();
    cc(
        s["system"]
            .as_str()
            .unwrap_or("_baseUrl_/STU3/CodeSystem/SPECIALTY"),
        s["code"].as_str().unwrap_or(""),
    )
}

fn pathway_start(r: &Referral) -> String {
    r.date_ext("Extension-eRS-eReferralPathwayStart-1")
        .or_else(|| r.date_ext("Extension-eRS-ClinicalInfoFirstSubmitted-1"))
        .unwrap_or_else(|| "2021-06-11T12:00:00.000Z".to_owned())
}

fn rfr_item(r: &Referral) -> Value {
    let (sid, sname) = r.service();
    let mut subs = vec![
        json!({"url": "priority", "valueCodeableConcept": cc(&format!("{CS}eRS-Priority-1"), r.priority())}),
        json!({"url": "specialty", "valueCodeableConcept": specialty_cc(r)}),
        json!({"url": "patient", "valueReference": {"reference": format!("#Patient-{}", r.nhs_number())}}),
    ];
    subs.push(json!({"url": "eReferralPathwayStart", "valueDateTime": pathway_start(r)}));
    subs.push(json!({"url": "clinicalInfoPrinted", "valueBoolean": false}));
    let context = r.context_status();
    subs.push(
        json!({"url": "requestContextStatus", "valueCodeableConcept": {"coding": [{
        "system": format!("{CS}eRS-RequestContextStatus-1"), "code": context,
        "display": crate::simulator::referrer::context_display(context)}]}}),
    );
    let submitted = r
        .date_ext("Extension-eRS-ClinicalInfoFirstSubmitted-1")
        .unwrap_or_else(|| pathway_start(r));
    subs.push(json!({"url": "clinicalInfoFirstSubmitted", "valueDateTime": submitted}));
    let updated = r
        .date_ext("Extension-eRS-ClinicalInfoLastUpdated-1")
        .unwrap_or_else(|| submitted.clone());
    subs.push(json!({"url": "clinicalInfoLastUpdated", "valueDateTime": updated}));
    let triage = r.state() == "AWAITING_TRIAGE";
    subs.push(
        json!({"url": "referralType", "valueCodeableConcept": cc(&format!("{CS}eRS-ReferralType-1"),
        if triage { "TRIAGE_DEFERRAL" } else { "APPOINTMENT" })}),
    );
    if !triage {
        if let Some(start) = crate::simulator::state::contained(&r.resource, "Appointment")
            .next()
            .and_then(|a| a["start"].as_str())
        {
            subs.push(json!({"url": "appointmentStart", "valueDateTime": start}));
        }
    }
    if let Some(c) = r.clinician() {
        subs.push(json!({"url": "allocatedClinician", "valueReference": {"reference": format!("#Practitioner-{c}")}}));
    }
    subs.push(json!({"url": "service", "valueReference": service_ref(&sid, &sname)}));
    subs.push(json!({"url": "referralRequestVersion", "valueInteger": r.version()}));
    json!({
        "extension": [{"extension": subs, "url": format!("{SD}Extension-eRS-ReferralsforReview-WorkListItem-1")}],
        "item": {"reference": format!("ReferralRequest/{}", r.ubrn())},
    })
}

fn asi_item(r: &Referral) -> Value {
    let (sid, sname) = r.service();
    let start = pathway_start(r);
    let mut subs = vec![
        json!({"url": "priority", "valueCodeableConcept": cc(&format!("{CS}eRS-Priority-1"), r.priority())}),
        json!({"url": "specialty", "valueCodeableConcept": specialty_cc(r)}),
        json!({"url": "patient", "valueReference": {"identifier": {"system": "http://fhir.nhs.net/Id/nhs-number", "value": r.nhs_number()}}}),
    ];
    if let Some(c) = r.clinician() {
        subs.push(json!({"url": "namedClinician", "valueReference": {"identifier": {"system": "http://fhir.nhs.net/Id/sds-user-id", "value": c}}}));
    }
    let contact = start.get(..10).unwrap_or("2021-06-14").to_owned();
    subs.extend([
        json!({"url": "eReferralPathwayStart", "valueDateTime": start}),
        json!({"url": "clinicalInfoPrinted", "valueBoolean": false}),
        json!({"url": "ubrnReceived", "valueDateTime": start}),
        json!({"url": "patientContactExpected", "valueDate": contact}),
        json!({"url": "clinicalInformationStatus", "valueCodeableConcept": cc(&format!("{CS}eRS-ClinicalInformationStatus-1"), "PRESENT")}),
        json!({"url": "reason", "valueCodeableConcept": cc(&format!("{CS}eRS-ReviewReason-1"), r.state_reason().unwrap_or("NO_SLOTS_AT_SERVICE"))}),
        json!({"url": "service", "valueReference": service_ref(&sid, &sname)}),
    ]);
    json!({
        "extension": [{"extension": subs, "url": format!("{SD}Extension-eRS-AppointmentSlotIssues-WorkListItem-1")}],
        "item": {"reference": format!("ReferralRequest/{}", r.ubrn())},
    })
}

/// A023 `POST CommunicationRequest/$ers.fetchworklist`.
pub async fn advice(ctx: &Ctx<'_>) -> Reply {
    let body = ctx.json_body()?;
    let p = fetch_params(&body)?;
    list_type(
        &p,
        "/eRS-CommunicationListSelector-1",
        &["ADVICE_AND_GUIDANCE_REQUESTS"],
    )?;
    let f = filters(&p)?;
    let w = ctx.sim.world.lock().await;
    let entries: Vec<Value> = w
        .advice
        .values()
        .filter(|a| a.category() == "PROVIDER_RESPONSE_REQUIRED")
        .filter(|a| advice_matches(a, &f))
        .map(advice_item)
        .collect();
    sized(ctx, &list(vec![], entries))
}

fn advice_specialty(a: &Advice) -> Option<&str> {
    extension(&a.resource, "Extension-eRS-Specialty-1")
        .and_then(|e| e["valueCoding"]["code"].as_str())
}

/// The SDS ids of practitioners among the request's recipients (the assigned clinician).
fn advice_clinicians(a: &Advice) -> Vec<&str> {
    a.resource["recipient"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let id = if r["identifier"].is_object() {
                &r["identifier"]
            } else {
                &r["extension"][0]["valueReference"]["identifier"]
            };
            (id["system"] == "http://fhir.nhs.net/Id/sds-user-id")
                .then(|| id["value"].as_str())
                .flatten()
        })
        .collect()
}

fn advice_matches(a: &Advice, f: &Filters) -> bool {
    if f.service.as_ref().is_some_and(|s| *s != a.service()) {
        return false;
    }
    match &f.specialty {
        Some(Some(code)) if advice_specialty(a) != Some(code.as_str()) => return false,
        Some(None) if advice_specialty(a).is_some() => return false,
        _ => {}
    }
    let clinicians = advice_clinicians(a);
    match &f.clinician {
        Some(Some(id)) => clinicians.contains(&id.as_str()),
        Some(None) => clinicians.is_empty(),
        None => true,
    }
}

fn advice_item(a: &Advice) -> Value {
    let spec = extension(&a.resource, "Extension-eRS-Specialty-1")
        .map(|e| e["valueCoding"].clone())
        .unwrap_or(Value::Null);
    let referrer = a.resource["requester"]["agent"]["extension"][0]["valueReference"]["reference"]
        .as_str()
        .and_then(|r| r.split('.').nth(1))
        .unwrap_or("021600556514")
        .to_owned();
    let sent = |c: Option<&Value>| {
        c.and_then(|c| c["sent"].as_str())
            .unwrap_or("2021-09-08T13:17:27.655Z")
            .to_owned()
    };
    let first = sent(a.conversation.first());
    let last = sent(a.conversation.last());
    let clinic_type = crate::simulator::state::contained(&a.resource, "Parameters")
        .flat_map(|p| p["parameter"].as_array().into_iter().flatten())
        .find(|p| p["name"] == "clinicType")
        .map(|p| p["valueCoding"].clone());
    let mut subs = vec![
        json!({"url": "priority", "valueCodeableConcept": cc(&format!("{CS}eRS-Priority-1"), a.priority())}),
        json!({"url": "specialty", "valueCodeableConcept": cc(spec["system"].as_str().unwrap_or("_baseUrl_/STU3/CodeSystem/SPECIALTY"), spec["code"].as_str().unwrap_or(""))}),
        json!({"url": "patient", "valueReference": {"identifier": a.resource["subject"]["identifier"].clone()}}),
        json!({"url": "category", "valueCodeableConcept": cc(&format!("{CS}eRS-AdviceAndGuidanceStatus-1"), a.category())}),
        json!({"url": "adviceFirstRequested", "valueDateTime": first}),
        json!({"url": "adviceLastUpdated", "valueDateTime": last}),
        json!({"url": "referrer", "valueReference": {"identifier": {"system": "http://fhir.nhs.net/Id/sds-user-id", "value": referrer}}}),
        json!({"url": "service", "valueReference": {"identifier": {"system": "http://fhir.nhs.net/Id/ers-service", "value": a.service()}}}),
    ];
    if let Some(ct) = clinic_type {
        subs.push(
            json!({"url": "clinicType", "valueCodeableConcept": {"coding": [{
            "system": "_baseUrl_/STU3/CodeSystem/CLINIC-TYPE", "code": ct["code"]}]}}),
        );
    }
    subs.push(json!({"url": "communicationRequestVersion", "valueInteger": a.version()}));
    json!({
        "extension": [{"extension": subs, "url": format!("{SD}Extension-eRS-AdviceAndGuidanceRequests-WorkListItem-1")}],
        "item": {"reference": format!("CommunicationRequest/{}", a.ubrn())},
    })
}
