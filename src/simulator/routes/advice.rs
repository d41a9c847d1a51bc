//! Advice and guidance (A&G): A024 read (with `_history/{version}`, latest only), A025
//! conversation, A026 send a response (moves the request to the referrer and adds a
//! `Communication`), A027 convert to a referral (creates a ReferralRequest with the A&G
//! UBRN in state TRIAGED_PROVIDER_TO_ACTION and closes the request).

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{check_history, check_if_match, searchset, split_versioned, Ctx, Reply};
use crate::simulator::{
    outcome::{fhir_json, Reject},
    routes::referrals::review_outcome,
    state::{
        bump_version, contained, extension, now_instant, priority_coding, Advice, World, CS, SD,
    },
    validate,
};

const PRIORITIES: &[&str] = &["ROUTINE", "URGENT", "TWO_WEEK_WAIT"];

fn find<'w>(w: &'w mut World, ubrn: &str) -> Result<&'w mut Advice, Reject> {
    if !w.advice.contains_key(ubrn) && w.referrals.contains_key(ubrn) {
        return Err(Reject::unprocessable(
            "INVALID_REQUEST_TYPE",
            format!("{ubrn} is a referral, not an advice and guidance request"),
        ));
    }
    w.advice
        .get_mut(ubrn)
        .ok_or_else(|| Reject::not_found(format!("no advice and guidance request {ubrn}")))
}

/// A024 `GET CommunicationRequest/{ubrn}[/_history/{version}]`.
pub async fn read(ctx: &Ctx<'_>, ubrn: &str, version: Option<&str>) -> Reply {
    let mut w = ctx.sim.world.lock().await;
    let a = find(&mut w, ubrn)?;
    check_history(version, a.version())?;
    Ok(fhir_json(StatusCode::OK, &a.resource, Some(a.version())))
}

/// A025 `GET Communication?based-on=CommunicationRequest/{ubrn}/_history/{version}`.
pub async fn conversation(ctx: &Ctx<'_>) -> Reply {
    let Some(based_on) = ctx.query_param("based-on") else {
        return Err(Reject::bad_request(
            "MISSING_PARAMETER",
            "based-on is required",
        ));
    };
    let Some((ubrn, version)) = split_versioned(based_on, "CommunicationRequest") else {
        return Err(Reject::bad_request(
            "INVALID_VALUE",
            "based-on must be CommunicationRequest/{ubrn}/_history/{version}",
        ));
    };
    let mut w = ctx.sim.world.lock().await;
    let a = find(&mut w, ubrn).map_err(|mut r| {
        if r.status == StatusCode::UNPROCESSABLE_ENTITY {
            r.status = StatusCode::BAD_REQUEST;
        }
        r
    })?;
    check_history(Some(version), a.version())?;
    let base = ctx.fhir_base();
    let mut entries: Vec<Value> = a
        .conversation
        .iter()
        .rev()
        .map(|c| {
            json!({"fullUrl": format!("{base}/Communication/{}", c["id"].as_str().unwrap_or("")),
                   "resource": c, "search": {"mode": "match"}})
        })
        .collect();
    let total = entries.len();
    let includes: Vec<&str> = ctx
        .query
        .iter()
        .filter(|(k, _)| k == "_include")
        .map(|(_, v)| v.as_str())
        .collect();
    if includes.iter().any(|i| i.contains("practitionerrole")) {
        for role in [
            "021600556514.R68.REFERRING-CLINICIAN",
            "021600556514.R69.SERVICE-PROVIDER-CLINICIAN",
        ] {
            let code = role.rsplit('.').next().unwrap_or("");
            entries.push(json!({
                "fullUrl": format!("{base}/PractitionerRole/{role}"),
                "resource": {
                    "id": role,
                    "meta": {"profile": [format!("{SD}eRS-PractitionerRole-1")]},
                    "resourceType": "PractitionerRole",
                    "practitioner": {"identifier": {"system": "http://fhir.nhs.net/Id/sds-user-id", "value": "021600556514"}},
                    "organization": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": role.split('.').nth(1).unwrap_or("")}},
                    "code": [{"coding": [{"system": format!("{CS}eRS-BusinessFunction-1"), "code": code.replace('-', "_")}]}],
                },
                "search": {"mode": "include"},
            }));
        }
    }
    let query = ctx
        .query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let bundle = searchset(
        format!("{base}/Communication?{query}"),
        entries,
        Some(total),
    );
    Ok(fhir_json(StatusCode::OK, &bundle, Some(a.version())))
}

/// Adds A&G response attachments to a request's contained resources.
fn add_docs(w: &mut World, ubrn: &str, docs: &[Value]) -> Vec<Value> {
    let mut refs = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let mut doc = doc.clone();
        let id = format!("DocumentReference-G{}-{}", uuid::Uuid::new_v4().simple(), i);
        doc["id"] = json!(id);
        w.index_document(&doc, ubrn);
        refs.push(json!({"contentReference": {"reference": format!("DocumentReference/{id}")}}));
        if let Some(a) = w.advice.get_mut(ubrn) {
            if !a.resource["contained"].is_array() {
                a.resource["contained"] = json!([]);
            }
            if let Some(arr) = a.resource["contained"].as_array_mut() {
                arr.push(doc);
            }
        }
    }
    refs
}

/// A026 `POST CommunicationRequest/{ubrn}/$ers.sendCommunicationToRequester`.
pub async fn send(ctx: &Ctx<'_>, ubrn: &str) -> Reply {
    let body = ctx.json_body();
    let mut w = ctx.sim.world.lock().await;
    let a = find(&mut w, ubrn)?;
    check_if_match(ctx.headers, a.version())?;
    let body = body?;
    let p = validate::request(
        &body,
        "eRS-SendCommunicationToRequester-Request-Parameters-1",
        &[
            "guidanceOutcome",
            "guidanceIntendedRecommendation",
            "guidance",
            "updatedPriority",
            "guidanceAttachmentFile",
        ],
    )?;
    let outcome = p.required_coding(
        "guidanceOutcome",
        "/eRS-GuidanceResponseOutcome-1",
        Some(&[
            "RETURN_TO_REFERRER_WITH_ADVICE",
            "REQUIRE_FURTHER_INFORMATION",
            "PROVIDER_CONVERTED",
        ]),
    )?;
    if outcome == "PROVIDER_CONVERTED" {
        return Err(Reject::unprocessable(
            "INAPPROPRIATE_VALUE",
            "guidanceOutcome PROVIDER_CONVERTED is recorded by converting the request (A027)",
        ));
    }
    let recommendation = p.coding(
        "guidanceIntendedRecommendation",
        "/eRS-GuidanceIntendedRecommendation-1",
        Some(&[
            "ADVICE_ONLY_NO_REFERRAL_RECOMMENDED",
            "ADVICE_FOLLOWED_BY_REFERRAL_IF_REQUIRED",
            "REFERRAL_RECOMMENDED",
            "OTHER",
        ]),
    )?;
    match (outcome.as_str(), &recommendation) {
        ("RETURN_TO_REFERRER_WITH_ADVICE", None) => {
            return Err(Reject::unprocessable(
                "MISSING_VALUE",
                "guidanceIntendedRecommendation is required with RETURN_TO_REFERRER_WITH_ADVICE",
            ))
        }
        ("REQUIRE_FURTHER_INFORMATION", Some(_)) => return Err(Reject::unprocessable(
            "INAPPROPRIATE_VALUE",
            "guidanceIntendedRecommendation is only allowed with RETURN_TO_REFERRER_WITH_ADVICE",
        )),
        _ => {}
    }
    let guidance = p.required_string("guidance", 8000)?;
    let priority = p.required_coding("updatedPriority", "/eRS-Priority-1", Some(PRIORITIES))?;
    let docs = p.documents("guidanceAttachmentFile", "GUIDANCE_RESPONSE")?;
    if a.category() != "PROVIDER_RESPONSE_REQUIRED" {
        return Err(Reject::unprocessable(
            "INVALID_REQUEST_STATE",
            format!(
                "advice request {ubrn} is {}, not awaiting a provider response",
                a.category()
            ),
        ));
    }
    a.set_category(if outcome == "RETURN_TO_REFERRER_WITH_ADVICE" {
        "REFERRER_TO_REVIEW_RESPONSE"
    } else {
        "REFERRER_TO_SUBMIT_FURTHER_INFORMATION"
    });
    a.set_priority(&priority);
    let version = bump_version(&mut a.resource);
    let payload = add_docs(&mut w, ubrn, &docs);
    let mut comm = w.communication(ubrn, version, "RESPONDER", &guidance, &now_instant());
    if !payload.is_empty() {
        comm["payload"] = json!(payload);
    }
    let a = find(&mut w, ubrn)?;
    a.conversation.push(comm.clone());
    let reply = json!({
        "meta": {"profile": [format!("{SD}eRS-SendCommunicationToRequester-Response-Parameters-1")]},
        "resourceType": "Parameters",
        "parameter": [
            {"name": "updatedCommunicationRequest", "resource": a.resource},
            {"name": "createdCommunication", "resource": comm},
        ],
    });
    Ok(fhir_json(StatusCode::OK, &reply, Some(version)))
}

/// A027 `POST ReferralRequest/$ers.createFromCommunicationRequestActionLater`.
pub async fn convert(ctx: &Ctx<'_>) -> Reply {
    let body = ctx.json_body()?;
    let p = validate::request(
        &body,
        "eRS-CreateFromCommunicationRequestActionLater-Request-Parameters-1",
        &[
            "createFrom",
            "guidance",
            "newReferralPriority",
            "reviewComments",
            "guidanceAttachmentFile",
            "reviewAttachmentFile",
        ],
    )?;
    let Some(from) = p.reference("createFrom") else {
        return Err(Reject::unprocessable(
            "MISSING_VALUE",
            "parameter createFrom is required",
        ));
    };
    let Some((ubrn, version)) = split_versioned(&from, "CommunicationRequest") else {
        return Err(Reject::unprocessable(
            "INVALID_VALUE",
            "createFrom must be CommunicationRequest/{ubrn}/_history/{version}",
        ));
    };
    let guidance = p.required_string("guidance", 8000)?;
    let priority = p.required_coding("newReferralPriority", "/eRS-Priority-1", Some(PRIORITIES))?;
    let comments = p.required_string("reviewComments", 2000)?;
    let guidance_docs = p.documents("guidanceAttachmentFile", "GUIDANCE_RESPONSE")?;
    let review_docs = p.documents("reviewAttachmentFile", "PROVIDER")?;
    let mut w = ctx.sim.world.lock().await;
    if w.referrals.contains_key(ubrn) {
        return Err(Reject::unprocessable(
            "INVALID_REQUEST_STATE",
            format!("a referral with UBRN {ubrn} already exists"),
        ));
    }
    let Some(a) = w.advice.get_mut(ubrn) else {
        return Err(Reject::unprocessable(
            "REFERENCE_NOT_FOUND",
            format!("no advice and guidance request {ubrn}"),
        ));
    };
    if version.parse::<u64>().ok() != Some(a.version()) {
        return Err(Reject::conflict(format!(
            "Version supplied ({version}) does not match current version ({})",
            a.version()
        )));
    }
    if a.category() != "PROVIDER_RESPONSE_REQUIRED" || !a.conversion_authorised() {
        return Err(Reject::unprocessable(
            "INVALID_REQUEST_STATE",
            format!(
                "advice request {ubrn} ({}) is not awaiting a response with conversion authorised",
                a.category()
            ),
        ));
    }
    a.set_category("ADVICE_CONVERTED");
    a.resource["status"] = json!("completed");
    let version = bump_version(&mut a.resource);
    let advice_json = a.resource.clone();
    let payload = add_docs(&mut w, ubrn, &guidance_docs);
    let mut comm = w.communication(ubrn, version, "RESPONDER", &guidance, &now_instant());
    if !payload.is_empty() {
        comm["payload"] = json!(payload);
    }
    if let Some(a) = w.advice.get_mut(ubrn) {
        a.conversation.push(comm);
    }
    let referral = referral_from_advice(&advice_json, &priority, &comments, &review_docs);
    w.insert_referral(referral)
        .map_err(|e| Reject::internal(e.to_string()))?;
    let r = &w.referrals[ubrn];
    Ok(fhir_json(
        StatusCode::CREATED,
        &r.resource,
        Some(r.version()),
    ))
}

/// Builds the ReferralRequest A027 creates from an A&G request.
fn referral_from_advice(a: &Value, priority: &str, comments: &str, docs: &[Value]) -> Value {
    let ubrn = a["id"].as_str().unwrap_or("");
    let specialty = extension(a, "Extension-eRS-Specialty-1")
        .map(|e| e["valueCoding"].clone())
        .unwrap_or(Value::Null);
    let service = a["recipient"][0]["extension"][0]["valueReference"]["identifier"].clone();
    let mut contained_res: Vec<Value> = contained(a, "Parameters")
        .chain(contained(a, "List"))
        .cloned()
        .collect();
    contained_res.push(json!({
        "id": "appointment",
        "meta": {"versionId": "0", "profile": [format!("{SD}eRS-Appointment-1"), "https://fhir.hl7.org.uk/STU3/StructureDefinition/CareConnect-Appointment-1"]},
        "language": "en",
        "resourceType": "Appointment",
        "status": "proposed",
        "description": "e-Referral Appointment",
        "incomingReferral": [{"reference": format!("ReferralRequest/{ubrn}/_history/1")}],
        "participant": [
            {"actor": {"identifier": service, "display": "Advice Only"}, "status": "needs-action"},
            {"actor": {"identifier": a["subject"]["identifier"].clone()}, "status": "needs-action"},
        ],
    }));
    let mut supporting = vec![json!({"reference": format!("CommunicationRequest/{ubrn}")})];
    for (i, d) in docs.iter().enumerate() {
        let mut d = d.clone();
        let id = format!("DocumentReference-C{}", i + 1);
        d["id"] = json!(id);
        if let Some(att) = d["content"][0]["attachment"].as_object_mut() {
            att.entry("contentType")
                .or_insert_with(|| json!("application/pdf"));
        }
        supporting.push(json!({"reference": format!("#{id}")}));
        contained_res.push(d);
    }
    json!({
        "id": ubrn,
        "meta": {"versionId": "1", "profile": [format!("{SD}eRS-ReferralRequest-1")]},
        "resourceType": "ReferralRequest",
        "extension": [
            {"url": format!("{SD}Extension-eRS-Appointment-1"), "valueReference": {"reference": "#appointment"}},
            {"url": format!("{SD}Extension-eRS-ClinicalInfoFirstSubmitted-1"), "valueDateTime": now_instant()},
            {"url": format!("{SD}Extension-eRS-ReferralPriority-1"), "valueCodeableConcept": {"coding": [priority_coding(priority)]}},
            {"url": format!("{SD}Extension-eRS-ReferralShortlist-1"), "valueReference": {"reference": "#shortlist"}},
            {"url": format!("{SD}Extension-eRS-Commissioning-Rule-Org-1"), "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "R69"}},
            {"url": format!("{SD}Extension-eRS-ReferralState-1"), "extension": [
                {"url": "state", "valueCoding": {"system": format!("{CS}eRS-ReferralState-1"), "code": "TRIAGED_PROVIDER_TO_ACTION", "display": "Triaged - Provider To Action"}},
                {"url": "reason", "valueCoding": review_outcome("PROVIDER_CONVERTED_ADVICE_AND_GUIDANCE_ADMIN_TO_REFER")},
                {"url": "comments", "valueString": comments},
            ]},
        ],
        "contained": contained_res,
        "status": "active",
        "intent": "plan",
        "specialty": {"coding": [specialty]},
        "subject": a["subject"].clone(),
        "supportingInfo": supporting,
        "identifier": [{"system": "https://fhir.nhs.uk/Id/ers-request-id", "value": format!("r.{}", uuid::Uuid::new_v4())}],
    })
}
