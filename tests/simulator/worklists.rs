//! A008 and A023 worklists: contents from referral states, filters, app-restricted rules.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const A008: &str = "ReferralRequest/$ers.fetchworklist";

fn service(id: &str) -> Value {
    json!([{"name": "service", "valueIdentifier": {"system": "http://fhir.nhs.net/Id/ers-service", "value": id}}])
}

#[tokio::test]
async fn referrals_for_review_and_slot_issues_follow_states() {
    let t = spawn().await;
    let (s, rfr) = t
        .post_json(
            A008,
            None,
            Some(&worklist_body("REFERRALS_FOR_REVIEW", json!([]))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rfr}");
    let ubrns = worklist_ubrns(&rfr);
    for u in [
        "000000070001",
        "000000070002",
        "000000070005",
        "000000070013",
    ] {
        assert!(ubrns.contains(&u.to_owned()), "{u} in {ubrns:?}");
    }
    assert!(
        !ubrns.contains(&"000000070000".to_owned()),
        "unbooked is not for review"
    );
    let item = &rfr["entry"][0]["extension"][0];
    assert_eq!(item["url"], "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-eRS-ReferralsforReview-WorkListItem-1");
    let version = item["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "referralRequestVersion")
        .unwrap();
    assert_eq!(version["valueInteger"], 5);
    assert!(rfr["contained"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == "Patient-9912003888"));
    let (_, asi) = t
        .post_json(
            A008,
            None,
            Some(&worklist_body("APPOINTMENT_SLOT_ISSUES", json!([]))),
        )
        .await;
    assert_eq!(worklist_ubrns(&asi), vec!["000000070003".to_owned()]);
    // Rejecting a referral takes it off the review list.
    let body = parameters(
        "eRS-RejectReferral-Parameters-1",
        json!([{"name": "rejectionReason", "valueCoding":
        coding("_baseurl_/STU3/CodeSystem/APPOINTMENT-CANCELLATION-REASON", "SERVICE_INAPPROPRIATE")}]),
    );
    let (s, _) = t
        .post_json(
            "ReferralRequest/000000070013/$ers.rejectReferral",
            Some("W/\"5\""),
            Some(&body),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, rfr) = t
        .post_json(
            A008,
            None,
            Some(&worklist_body("REFERRALS_FOR_REVIEW", json!([]))),
        )
        .await;
    assert!(!worklist_ubrns(&rfr).contains(&"000000070013".to_owned()));
}

#[tokio::test]
async fn filters_by_service_specialty_and_clinician() {
    let t = spawn().await;
    let (_, l) = t
        .post_json(
            A008,
            None,
            Some(&worklist_body("REFERRALS_FOR_REVIEW", service("21012"))),
        )
        .await;
    let mut u = worklist_ubrns(&l);
    u.sort();
    assert_eq!(
        u,
        vec![
            "000000070001",
            "000000070005",
            "000000070011",
            "000000070013"
        ]
    );
    let (_, l) = t
        .post_json(
            A008,
            None,
            Some(&worklist_body("REFERRALS_FOR_REVIEW", service("11016"))),
        )
        .await;
    assert_eq!(worklist_ubrns(&l), vec!["000000070002"]);
    let clinician = json!([
        {"name": "clinicianAssignedIndicator", "valueCodeableConcept": {"coding": [{"system": format!("{CS}eRS-AssignedIndicator-1"), "code": "ASSIGNED"}]}},
        {"name": "clinician", "valueIdentifier": {"system": "http://fhir.nhs.net/Id/sds-user-id", "value": "021600556514"}}
    ]);
    let (s, l) = t
        .post_json(
            A008,
            None,
            Some(&worklist_body("REFERRALS_FOR_REVIEW", clinician)),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let mut u = worklist_ubrns(&l);
    u.sort();
    assert_eq!(u, vec!["000000070001", "000000070005"]);
    let specialty = json!([
        {"name": "specialtyAssignedIndicator", "valueCodeableConcept": {"coding": [{"system": format!("{CS}eRS-AssignedIndicator-1"), "code": "ASSIGNED"}]}},
        {"name": "specialty", "valueCodeableConcept": {"coding": [{"system": "_baseUrl_/STU3/CodeSystem/SPECIALTY", "code": "ALLERGY"}]}}
    ]);
    let (s, l) = t
        .post_json(
            A008,
            None,
            Some(&worklist_body("REFERRALS_FOR_REVIEW", specialty)),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(worklist_ubrns(&l).is_empty());
    let bad = json!([{"name": "specialty", "valueCodeableConcept": {"coding": [{"system": "x", "code": "ALLERGY"}]}}]);
    t.post_rejected(
        A008,
        None,
        &worklist_body("REFERRALS_FOR_REVIEW", bad),
        "MISSING_VALUE",
    )
    .await;
}

#[tokio::test]
async fn worklist_request_errors() {
    let t = spawn().await;
    t.post_rejected(
        A008,
        None,
        &worklist_body("NOT_A_LIST", json!([])),
        "INVALID_CODE",
    )
    .await;
    let (s, b) = t
        .post_json(
            A008,
            None,
            Some(&worklist_body("AWAITING_BOOKING", json!([]))),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    t.post_rejected(
        A008,
        None,
        &parameters("eRS-FetchWorklist-Parameters-1", json!([])),
        "MISSING_VALUE",
    )
    .await;
    let r = t.post(A008, None, None).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = t
        .user(reqwest::Method::POST, A008)
        .header("Content-Type", "text/plain")
        .body(serde_json::to_vec(&worklist_body("REFERRALS_FOR_REVIEW", json!([]))).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn app_restricted_worklist_needs_service_and_budget() {
    let t = spawn().await;
    let token = t.app_token().await;
    let call = |body: Value| {
        t.http
            .post(t.stu3(A008))
            .bearer_auth(&token)
            .header("Content-Type", "application/fhir+json")
            .json(&body)
            .send()
    };
    let r = call(worklist_body("REFERRALS_FOR_REVIEW", json!([])))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = call(worklist_body("AWAITING_BOOKING", json!([])))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    for _ in 0..2 {
        let r = call(worklist_body("REFERRALS_FOR_REVIEW", service("21012")))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = call(worklist_body("REFERRALS_FOR_REVIEW", service("21012")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let r = call(worklist_body("APPOINTMENT_SLOT_ISSUES", service("11010")))
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "another service has its own budget"
    );
}

#[tokio::test]
async fn advice_worklist_lists_requests_awaiting_a_response() {
    let t = spawn().await;
    let path = "CommunicationRequest/$ers.fetchworklist";
    let (s, l) = t
        .post_json(
            path,
            None,
            Some(&worklist_body("ADVICE_AND_GUIDANCE_REQUESTS", json!([]))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{l}");
    assert_eq!(
        worklist_ubrns(&l),
        vec!["000000080000", "000000080001", "000000080002"]
    );
    let item = &l["entry"][0]["extension"][0];
    assert!(item["url"]
        .as_str()
        .unwrap()
        .ends_with("AdviceAndGuidanceRequests-WorkListItem-1"));
    t.post_rejected(
        path,
        None,
        &worklist_body("REFERRALS_FOR_REVIEW", json!([])),
        "INVALID_CODE",
    )
    .await;
}

#[tokio::test]
async fn generated_referrals_join_the_worklists() {
    let mut cfg = config();
    cfg.generate = 40;
    let t = spawn_with(cfg).await;
    let (_, l) = t
        .post_json(
            A008,
            None,
            Some(&worklist_body("REFERRALS_FOR_REVIEW", json!([]))),
        )
        .await;
    let ubrns = worklist_ubrns(&l);
    assert!(
        ubrns.iter().filter(|u| u.starts_with("0000001")).count() > 10,
        "{ubrns:?}"
    );
    let generated = ubrns.iter().find(|u| u.starts_with("0000001")).unwrap();
    let (s, r) = t.get_json(&format!("ReferralRequest/{generated}")).await;
    assert_eq!(s, StatusCode::OK);
    let nhs = r["subject"]["identifier"]["value"].as_str().unwrap();
    assert!(
        ers_bridge::simulator::generate::is_valid_nhs_number(nhs),
        "{nhs}"
    );
}

#[tokio::test]
async fn generated_attachments_download_through_a042() {
    let mut cfg = config();
    cfg.generate = 20;
    let t = spawn_with(cfg).await;
    let mut downloaded = 0;
    for n in 0..20 {
        let (_, r) = t
            .get_json(&format!("ReferralRequest/{:012}", 100_000 + n))
            .await;
        for c in r["contained"].as_array().unwrap() {
            let Some(url) = c["content"][0]["attachment"]["url"].as_str() else {
                continue;
            };
            let resp = t
                .http
                .get(format!("{}/R4/{url}", t.sim.fhir_base()))
                .bearer_auth(USER_TOKEN)
                .header("NHSD-eRS-Business-Function", SPC)
                .header("NHSD-End-User-Organisation-ODS", "R69")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT, "{url}");
            let location = resp.headers()["location"].to_str().unwrap().to_owned();
            let file = t.http.get(location).send().await.unwrap();
            assert_eq!(file.status(), StatusCode::OK);
            assert_eq!(
                file.headers()["content-type"],
                c["content"][0]["attachment"]["contentType"]
                    .as_str()
                    .unwrap()
            );
            assert!(!file.bytes().await.unwrap().is_empty());
            downloaded += 1;
        }
    }
    assert!(downloaded > 5, "only {downloaded} generated attachments");
}
