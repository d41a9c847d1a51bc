//! A&G endpoints: A024, A025, A026, A027.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

fn send_body(outcome: &str, recommendation: Option<&str>) -> Value {
    let mut p = vec![
        json!({"name": "guidanceOutcome", "valueCoding": coding(&format!("{CS}eRS-GuidanceResponseOutcome-1"), outcome)}),
    ];
    if let Some(r) = recommendation {
        p.push(json!({"name": "guidanceIntendedRecommendation", "valueCoding": coding(&format!("{CS}eRS-GuidanceIntendedRecommendation-1"), r)}));
    }
    p.push(json!({"name": "guidance", "valueString": "Try first-line treatment"}));
    p.push(json!({"name": "updatedPriority", "valueCoding": coding(&format!("{CS}eRS-Priority-1"), "ROUTINE")}));
    parameters(
        "eRS-SendCommunicationToRequester-Request-Parameters-1",
        json!(p),
    )
}

fn convert_body(from: &str) -> Value {
    parameters(
        "eRS-CreateFromCommunicationRequestActionLater-Request-Parameters-1",
        json!([
            {"name": "createFrom", "valueReference": {"reference": from}},
            {"name": "guidance", "valueString": "Converting to a referral"},
            {"name": "newReferralPriority", "valueCoding": coding(&format!("{CS}eRS-Priority-1"), "URGENT")},
            {"name": "reviewComments", "valueString": "Book into clinic"}
        ]),
    )
}

#[tokio::test]
async fn read_request_and_conversation() {
    let t = spawn().await;
    let r = t
        .user(reqwest::Method::GET, "CommunicationRequest/000000080000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "W/\"5\"");
    let (s, b) = t
        .get_json("CommunicationRequest/000000080000/_history/3")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(ers_code(&b), "HISTORY_NOT_SUPPORTED");
    let (s, b) = t.get_json("CommunicationRequest/000000070001").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(ers_code(&b), "INVALID_REQUEST_TYPE");
    let (s, b) = t
        .get_json("Communication?based-on=CommunicationRequest/000000080000/_history/5&_include=Communication:sender-practitionerrole:PractionerRole")
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["resourceType"], "Bundle");
    assert_eq!(b["type"], "searchset");
    assert_eq!(b["total"], 1);
    assert_eq!(b["entry"][0]["resource"]["resourceType"], "Communication");
    let (s, _) = t
        .get_json("Communication?based-on=CommunicationRequest/000000080000/_history/4")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = t.get_json("Communication").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn send_response_moves_request_to_referrer() {
    let t = spawn().await;
    let path = "CommunicationRequest/000000080000/$ers.sendCommunicationToRequester";
    t.post_rejected(
        path,
        Some("W/\"5\""),
        &send_body("RETURN_TO_REFERRER_WITH_ADVICE", None),
        "MISSING_VALUE",
    )
    .await;
    let (s, _) = t
        .post_json(
            path,
            None,
            Some(&send_body("REQUIRE_FURTHER_INFORMATION", None)),
        )
        .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let (s, _) = t
        .post_json(
            path,
            Some("W/\"1\""),
            Some(&send_body("REQUIRE_FURTHER_INFORMATION", None)),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, b) = t
        .post_json(
            path,
            Some("W/\"5\""),
            Some(&send_body(
                "RETURN_TO_REFERRER_WITH_ADVICE",
                Some("ADVICE_ONLY_NO_REFERRAL_RECOMMENDED"),
            )),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let updated = &b["parameter"][0]["resource"];
    assert_eq!(updated["meta"]["versionId"], "6");
    assert_eq!(
        updated["category"][0]["coding"][0]["code"],
        "REFERRER_TO_REVIEW_RESPONSE"
    );
    assert_eq!(
        b["parameter"][1]["resource"]["resourceType"],
        "Communication"
    );
    let (_, conv) = t
        .get_json("Communication?based-on=CommunicationRequest/000000080000/_history/6")
        .await;
    assert_eq!(conv["total"], 2);
    t.post_rejected(
        path,
        Some("W/\"6\""),
        &send_body("REQUIRE_FURTHER_INFORMATION", None),
        "INVALID_REQUEST_STATE",
    )
    .await;
    let (_, l) = t
        .post_json(
            "CommunicationRequest/$ers.fetchworklist",
            None,
            Some(&worklist_body("ADVICE_AND_GUIDANCE_REQUESTS", json!([]))),
        )
        .await;
    assert!(!worklist_ubrns(&l).contains(&"000000080000".to_owned()));
}

#[tokio::test]
async fn convert_creates_a_referral_with_the_advice_ubrn() {
    let t = spawn().await;
    let path = "ReferralRequest/$ers.createFromCommunicationRequestActionLater";
    let (s, _) = t
        .post_json(
            path,
            None,
            Some(&convert_body(
                "CommunicationRequest/000000080001/_history/4",
            )),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    t.post_rejected(
        path,
        None,
        &convert_body("CommunicationRequest/000000089999/_history/1"),
        "REFERENCE_NOT_FOUND",
    )
    .await;
    let r = t
        .post(
            path,
            None,
            Some(&convert_body(
                "CommunicationRequest/000000080001/_history/5",
            )),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().contains_key("etag"));
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["id"], "000000080001");
    assert_eq!(
        state_of(&b),
        (
            "TRIAGED_PROVIDER_TO_ACTION".into(),
            Some("PROVIDER_CONVERTED_ADVICE_AND_GUIDANCE_ADMIN_TO_REFER".into())
        )
    );
    let (s, _) = t.get_json("ReferralRequest/000000080001").await;
    assert_eq!(s, StatusCode::OK);
    let (_, a) = t.get_json("CommunicationRequest/000000080001").await;
    assert_eq!(a["category"][0]["coding"][0]["code"], "ADVICE_CONVERTED");
    t.post_rejected(
        path,
        None,
        &convert_body("CommunicationRequest/000000080001/_history/6"),
        "INVALID_REQUEST_STATE",
    )
    .await;
    let calls = t.admin_calls().await;
    assert!(calls.iter().all(|c| c["operation"] == "A027"));
    assert_eq!(calls.last().unwrap()["ubrn"], "000000080001");
}

#[tokio::test]
async fn admin_adds_an_advice_request_at_run_time() {
    let t = spawn().await;
    let mut request = sample_advice();
    request["id"] = json!("000000089999");
    let (s, _) = t.admin_post("advice", Some(request)).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(t.advice_version("000000089999").await, 5);
    let (_, l) = t
        .post_json(
            "CommunicationRequest/$ers.fetchworklist",
            None,
            Some(&worklist_body("ADVICE_AND_GUIDANCE_REQUESTS", json!([]))),
        )
        .await;
    assert!(worklist_ubrns(&l).contains(&"000000089999".to_owned()));
}
