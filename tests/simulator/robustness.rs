//! Robustness features: 423 Locked fault on writes, 406 on `Accept` without JSON, the
//! worklist size cap, A023 filters, and bounded rate-limit state.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

const A008: &str = "ReferralRequest/$ers.fetchworklist";
const A023: &str = "CommunicationRequest/$ers.fetchworklist";

#[tokio::test]
async fn locked_rate_answers_423_on_writes_only() {
    let t = spawn().await;
    t.set_faults(json!({"locked_rate": 1.0})).await;
    let path = "ReferralRequest/000000070001/$ers.acceptReferral";
    let (s, b) = t.post_json(path, Some(&if_match(5)), None).await;
    assert_eq!(s, StatusCode::LOCKED, "{b}");
    assert_eq!(b["resourceType"], "OperationOutcome");
    assert_eq!(b["issue"][0]["code"], "lock-error");
    assert_eq!(ers_code(&b), "LOCKED");
    assert_eq!(
        b["meta"]["profile"][0],
        "https://fhir.nhs.uk/STU3/StructureDefinition/eRS-OperationOutcome-1"
    );
    // Reads and worklists are not locked; the write changed nothing.
    assert_eq!(t.version("000000070001").await, 5);
    let (s, _) = t
        .post_json(
            A008,
            None,
            Some(&worklist_body("REFERRALS_FOR_REVIEW", json!([]))),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let stats = t.stats().await;
    assert_eq!(stats["locked"], 1);
    assert_eq!(stats["by_status"]["423"], 1);

    let r = t
        .http
        .delete(format!("{}/_admin/faults", t.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (s, _) = t.post_json(path, Some(&if_match(5)), None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn accept_without_json_is_406_on_fhir_endpoints() {
    let t = spawn().await;
    let read = |accept: &'static str| {
        t.user(Method::GET, "ReferralRequest/000000070001")
            .header("Accept", accept)
            .send()
    };
    let r = read("application/fhir+xml").await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(r.text().await.unwrap().contains("application/fhir+xml"));
    for ok in ["application/fhir+json", "application/json", "*/*"] {
        assert_eq!(read(ok).await.unwrap().status(), StatusCode::OK, "{ok}");
    }
    let r = t
        .user(Method::POST, A008)
        .header("Accept", "text/html")
        .header("Content-Type", "application/fhir+json")
        .json(&worklist_body("REFERRALS_FOR_REVIEW", json!([])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
    // Attachments answer files: any Accept is fine.
    let r = t
        .user(Method::GET, "Binary/719f6045-e791-4029-8e0f-1201c02b0a55")
        .header("Accept", "application/pdf")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn worklists_over_the_size_cap_fail_with_502() {
    let t = spawn().await;
    let size = |l: &Value| serde_json::to_vec(l).unwrap().len();
    let (_, full) = t
        .post_json(
            A008,
            None,
            Some(&worklist_body("REFERRALS_FOR_REVIEW", json!([]))),
        )
        .await;
    let narrow_body = worklist_body(
        "REFERRALS_FOR_REVIEW",
        json!([{"name": "service", "valueIdentifier": {"system": "http://fhir.nhs.net/Id/ers-service", "value": "11016"}}]),
    );
    let (_, narrow) = t.post_json(A008, None, Some(&narrow_body)).await;
    assert_eq!(worklist_ubrns(&narrow).len(), 1);
    let (full_size, narrow_size) = (size(&full), size(&narrow));
    assert!(narrow_size < full_size);

    let mut cfg = config();
    cfg.max_worklist_bytes = (full_size + narrow_size) / 2;
    let small = spawn_with(cfg).await;
    let (s, b) = small
        .post_json(
            A008,
            None,
            Some(&worklist_body("REFERRALS_FOR_REVIEW", json!([]))),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    assert_eq!(ers_code(&b), "RESPONSE_TOO_LARGE");
    assert!(b["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains(&full_size.to_string()));
    let (s, l) = small.post_json(A008, None, Some(&narrow_body)).await;
    assert_eq!(s, StatusCode::OK, "filtered list fits: {l}");
    assert_eq!(l, narrow);
    assert_eq!(
        ers_bridge::simulator::SimConfig::default().max_worklist_bytes,
        10 * 1024 * 1024
    );
}

#[tokio::test]
async fn advice_worklist_filters_by_specialty_and_clinician() {
    let t = spawn().await;
    let mut request = sample_advice();
    request["id"] = json!("000000089998");
    for e in request["extension"].as_array_mut().unwrap() {
        if e["url"]
            .as_str()
            .unwrap()
            .ends_with("Extension-eRS-Specialty-1")
        {
            e["valueCoding"]["code"] = json!("DERMATOLOGY");
        }
    }
    request["recipient"]
        .as_array_mut()
        .unwrap()
        .push(json!({"identifier": {"system": "http://fhir.nhs.net/Id/sds-user-id", "value": "021600556514"}}));
    let (s, _) = t.admin_post("advice", Some(request)).await;
    assert_eq!(s, StatusCode::CREATED);

    let tr = &t;
    let fetch = |filters: Value| {
        let body = worklist_body("ADVICE_AND_GUIDANCE_REQUESTS", filters);
        async move {
            let (s, l) = tr.post_json(A023, None, Some(&body)).await;
            assert_eq!(s, StatusCode::OK, "{l}");
            worklist_ubrns(&l)
        }
    };
    let ind = |name: &str, code: &str| json!({"name": name, "valueCodeableConcept": {"coding": [{"system": format!("{CS}eRS-AssignedIndicator-1"), "code": code}]}});
    let specialty = json!({"name": "specialty", "valueCodeableConcept": {"coding": [{"system": "_baseUrl_/STU3/CodeSystem/SPECIALTY", "code": "DERMATOLOGY"}]}});
    let clinician = json!({"name": "clinician", "valueIdentifier": {"system": "http://fhir.nhs.net/Id/sds-user-id", "value": "021600556514"}});

    assert_eq!(
        fetch(json!([
            ind("specialtyAssignedIndicator", "ASSIGNED"),
            specialty
        ]))
        .await,
        vec!["000000089998"]
    );
    assert_eq!(
        fetch(json!([
            ind("clinicianAssignedIndicator", "ASSIGNED"),
            clinician
        ]))
        .await,
        vec!["000000089998"]
    );
    let unassigned = fetch(json!([ind("clinicianAssignedIndicator", "NOT_ASSIGNED")])).await;
    assert_eq!(
        unassigned,
        vec!["000000080000", "000000080001", "000000080002"]
    );
    assert_eq!(fetch(json!([])).await.len(), 4);
}

#[tokio::test]
async fn requests_with_unknown_tokens_are_rejected_and_counted() {
    // Pruning of the per-client rate windows is tested deterministically by the unit test
    // `windows_of_past_seconds_are_pruned`; over real HTTP only the counting is checked.
    let t = spawn().await;
    for i in 0..50 {
        let r = t
            .http
            .get(t.stu3("CodeSystem/PRIORITY"))
            .bearer_auth(format!("unknown-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let s = t.stats().await;
    assert_eq!(s["by_status"]["401"], 50);
}
