//! Referral endpoints: A004, A005, A006/A042, A007, A013, A014, A022, A028, A029 and the
//! write-call log.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

fn reject_body(reason: &str, comments: Option<&str>, pas: Option<bool>) -> Value {
    let mut p = vec![json!({"name": "rejectionReason", "valueCoding":
        coding("_baseurl_/STU3/CodeSystem/APPOINTMENT-CANCELLATION-REASON", reason)})];
    if let Some(c) = comments {
        p.push(json!({"name": "rejectionComments", "valueString": c}));
    }
    if let Some(b) = pas {
        p.push(json!({"name": "appointmentCancelledInPAS", "valueBoolean": b}));
    }
    parameters("eRS-RejectReferral-Parameters-1", json!(p))
}

fn review_body(outcome: &str, priority: Option<&str>) -> Value {
    let mut p = vec![
        json!({"name": "reviewOutcome", "valueCoding": coding(&format!("{CS}eRS-ReviewOutcome-1"), outcome)}),
        json!({"name": "reviewComments", "valueString": "reviewed"}),
    ];
    if let Some(pr) = priority {
        p.push(json!({"name": "reviewPriority", "valueCoding": coding(&format!("{CS}eRS-Priority-1"), pr)}));
    }
    parameters("eRS-RecordReviewOutcome-Parameters-1", json!(p))
}

#[tokio::test]
async fn read_referral_with_etag_history_and_headers() {
    let t = spawn().await;
    let r = t
        .user(Method::GET, "ReferralRequest/000000070001")
        .header("X-Correlation-ID", "corr-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "W/\"5\"");
    assert_eq!(r.headers()["x-correlation-id"], "corr-123");
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.headers()["content-type"], "application/fhir+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], "000000070001");
    let (s, _) = t.get_json("ReferralRequest/000000070001/_history/5").await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = t.get_json("ReferralRequest/000000070001/_history/4").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(ers_code(&body), "HISTORY_NOT_SUPPORTED");
    let (s, _) = t.get_json("ReferralRequest/000000099999").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, body) = t.get_json("ReferralRequest/000000080000").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(ers_code(&body), "INVALID_REQUEST_TYPE");
}

#[tokio::test]
async fn reference_data_code_systems() {
    let t = spawn().await;
    for kind in [
        "SPECIALTY",
        "APPOINTMENT-CANCELLATION-REASON",
        "CLINIC-TYPE",
        "REFERRAL-CANCELLATION-REASON",
        "APPOINTMENT-NON-ATTENDANCE-REASON",
        "PRIORITY",
    ] {
        let (s, body) = t.get_json(&format!("CodeSystem/{kind}")).await;
        assert_eq!(s, StatusCode::OK, "{kind}");
        assert_eq!(body["resourceType"], "CodeSystem");
        assert_eq!(body["id"], kind);
    }
    let (_, acr) = t
        .get_json("CodeSystem/APPOINTMENT-CANCELLATION-REASON")
        .await;
    let other = acr["concept"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "OTHER")
        .unwrap();
    let props = other["property"].as_array().unwrap();
    assert!(props
        .iter()
        .any(|p| p["code"] == "commentIsMandatory" && p["valueBoolean"] == true));
    assert!(props
        .iter()
        .any(|p| p["valueCoding"]["code"] == "PROVIDER_REJECT"));
    let (s, _) = t.get_json("CodeSystem/NOPE").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn accept_checks_if_match_and_leaves_the_worklist() {
    let t = spawn().await;
    let path = "ReferralRequest/000000070001/$ers.acceptReferral";
    let (s, _) = t.post_json(path, None, None).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let (s, _) = t.post_json(path, Some("W/\"4\""), None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let r = t.post(path, Some("W/\"5\""), None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "W/\"6\"");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["meta"]["versionId"], "6");
    assert_eq!(state_of(&body).0, "BOOKED");
    let (s, body) = t.post_json(path, Some("W/\"6\""), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(ers_code(&body), "INVALID_REQUEST_STATE");
    let (_, list) = t
        .post_json(
            "ReferralRequest/$ers.fetchworklist",
            None,
            Some(&worklist_body("REFERRALS_FOR_REVIEW", json!([]))),
        )
        .await;
    assert!(!worklist_ubrns(&list).contains(&"000000070001".to_owned()));
    let calls = t.admin_calls().await;
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[2]["operation"], "A013");
    assert_eq!(calls[2]["ubrn"], "000000070001");
    assert_eq!(calls[2]["if_match"], "W/\"5\"");
}

#[tokio::test]
async fn reject_validates_reason_comments_and_ibs_flag() {
    let t = spawn().await;
    let dbs = "ReferralRequest/000000070001/$ers.rejectReferral";
    let ibs = "ReferralRequest/000000070002/$ers.rejectReferral";
    let m = Some("W/\"5\"");
    let empty = parameters("eRS-RejectReferral-Parameters-1", json!([]));
    let cases = [
        (dbs, empty, "MISSING_VALUE"),
        (dbs, reject_body("PATIENT_ILL", None, None), "INVALID_CODE"),
        (dbs, reject_body("OTHER", None, None), "MISSING_VALUE"),
        (
            dbs,
            reject_body("SERVICE_INAPPROPRIATE", None, Some(true)),
            "FIELD_NOT_PERMITTED",
        ),
        (
            ibs,
            reject_body("SERVICE_INAPPROPRIATE", None, None),
            "VALUE_IS_REQUIRED",
        ),
        (
            dbs,
            json!({"resourceType": "Parameters", "meta": {"profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/eRS-RejectReferral-Parameters-1"]},
                     "parameter": [{"name": "bogus", "valueString": "x"}]}),
            "UNEXPECTED_FIELD",
        ),
    ];
    for (path, body, code) in cases {
        let (s, out) = t.post_json(path, m, Some(&body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{code}: {out}");
        assert_eq!(ers_code(&out), code);
        assert_eq!(out["resourceType"], "OperationOutcome");
    }
    let (s, body) = t
        .post_json(
            ibs,
            m,
            Some(&reject_body("OTHER", Some("wrong service"), Some(true))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (state, reason) = state_of(&body);
    assert_eq!(
        (state.as_str(), reason.as_deref()),
        ("REJECTED", Some("OTHER"))
    );
    let appt = body["contained"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["resourceType"] == "Appointment")
        .unwrap();
    assert_eq!(appt["status"], "cancelled");
    t.post_rejected(
        ibs,
        Some("W/\"6\""),
        &reject_body("OTHER", Some("again"), Some(true)),
        "INVALID_REQUEST_STATE",
    )
    .await;
}

#[tokio::test]
async fn cancel_appointment_action_later() {
    let t = spawn().await;
    let body = parameters(
        "eRS-cancelAppointmentActionLater-Parameters-1",
        json!([{"name": "comments", "valueString": "clinic closed"},
               {"name": "priority", "valueCoding": coding(&format!("{CS}eRS-Priority-1"), "URGENT")}]),
    );
    let (s, out) = t
        .post_json(
            "ReferralRequest/000000070001/$ers.cancelAppointmentActionLater",
            Some("W/\"5\""),
            Some(&body),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(
        state_of(&out),
        (
            "TRIAGED_PROVIDER_TO_ACTION".into(),
            Some("CANCEL_APPOINTMENT_ACTION_LATER".into())
        )
    );
    assert_eq!(out["meta"]["versionId"], "6");
    t.post_rejected(
        "ReferralRequest/000000070000/$ers.cancelAppointmentActionLater",
        Some("W/\"5\""),
        &body,
        "INVALID_REQUEST_STATE",
    )
    .await;
    let no_comments = parameters("eRS-cancelAppointmentActionLater-Parameters-1", json!([]));
    t.post_rejected(
        "ReferralRequest/000000070005/$ers.cancelAppointmentActionLater",
        Some("W/\"5\""),
        &no_comments,
        "MISSING_VALUE",
    )
    .await;
}

/// `appointmentCancelledInPAS` on A022 as on A014: required for a referral booked into an
/// indirectly bookable service (70002), refused for a directly bookable one (70005); the
/// official minimal examples are each accepted on their service type.
#[tokio::test]
async fn cancel_appointment_action_later_checks_the_ibs_flag() {
    let t = spawn().await;
    let example = |name: &str| -> Value {
        let path =
            examples_dir().join(format!("cancelAppointmentActionLater/requests/{name}.json"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let (dbs, ibs) = (example("MinimalExampleDBS"), example("MinimalExampleIBS"));
    let path = |u: &str| format!("ReferralRequest/{u}/$ers.cancelAppointmentActionLater");
    let m = Some("W/\"5\"");
    t.post_rejected(&path("000000070002"), m, &dbs, "VALUE_IS_REQUIRED")
        .await;
    t.post_rejected(&path("000000070005"), m, &ibs, "FIELD_NOT_PERMITTED")
        .await;
    for (ubrn, body) in [("000000070002", &ibs), ("000000070005", &dbs)] {
        let (s, out) = t.post_json(&path(ubrn), m, Some(body)).await;
        assert_eq!(s, StatusCode::OK, "{ubrn}: {out}");
        assert_eq!(
            state_of(&out),
            (
                "TRIAGED_PROVIDER_TO_ACTION".into(),
                Some("CANCEL_APPOINTMENT_ACTION_LATER".into())
            ),
            "{ubrn}"
        );
    }
}

#[tokio::test]
async fn record_review_outcome_on_triage_and_deferred_referrals() {
    let t = spawn().await;
    let triage = "ReferralRequest/000000070013/$ers.recordReviewOutcome";
    t.post_rejected(
        triage,
        Some("W/\"5\""),
        &review_body("RETURN_TO_REFERRER_WITH_ADVICE", Some("URGENT")),
        "PRIORITY_NOT_CURRENT",
    )
    .await;
    t.post_rejected(
        triage,
        Some("W/\"5\""),
        &review_body("REFER_BOOK_NOW", None),
        "INVALID_CODE",
    )
    .await;
    let (s, out) = t
        .post_json(
            triage,
            Some("W/\"5\""),
            Some(&review_body("RETURN_TO_REFERRER_WITH_ADVICE", None)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(
        state_of(&out),
        (
            "TRIAGED_PROVIDER_TO_ACTION".into(),
            Some("RETURN_TO_REFERRER_WITH_ADVICE".into())
        )
    );
    let (s, out) = t
        .post_json(
            "ReferralRequest/000000070003/$ers.recordReviewOutcome",
            Some("W/\"5\""),
            Some(&review_body("ACCEPT_REFER_BOOK_LATER", Some("ROUTINE"))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    let prio = out["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"].as_str().unwrap().ends_with("ReferralPriority-1"))
        .unwrap();
    assert_eq!(prio["valueCodeableConcept"]["coding"][0]["code"], "ROUTINE");
    t.post_rejected(
        "ReferralRequest/000000070001/$ers.recordReviewOutcome",
        Some("W/\"5\""),
        &review_body("ACCEPT_REFER_BOOK_LATER", None),
        "INVALID_REQUEST_STATE",
    )
    .await;
}

#[tokio::test]
async fn clinical_information_pdf() {
    let t = spawn().await;
    let r = t
        .post("ReferralRequest/000000070001/$ers.generateCRI", None, None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let cd = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cd.starts_with("attachment; filename=\"000000070001_Clinical_Information_Summary_"),
        "{cd}"
    );
    let bytes = r.bytes().await.unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    let r = t
        .post("ReferralRequest/000000099999/$ers.generateCRI", None, None)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn attachments_download_by_a006_and_a042() {
    let t = spawn().await;
    let id = "719f6045-e791-4029-8e0f-1201c02b0a55";
    let r = t
        .user(Method::GET, &format!("Binary/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let a006 = r.bytes().await.unwrap();
    let r = t
        .http
        .get(format!("{}/R4/Binary/{id}", t.sim.fhir_base()))
        .bearer_auth(USER_TOKEN)
        .header("NHSD-eRS-Business-Function", SPC)
        .header("NHSD-End-User-Organisation-ODS", "R69")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{}/_objectstore/", t.sim.base_url())));
    let r = t.http.get(&location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), a006);
    // Unavailable attachments: STU3 and R4 error shapes.
    let (s, out) = t
        .get_json("Binary/5f0c1a2e-7d4b-4c61-9a0e-1b2c3d4e5f60")
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(ers_code(&out), "PENDING");
    let r = t
        .http
        .get(format!(
            "{}/R4/Binary/6a1d2b3f-8e5c-4d72-ab1f-2c3d4e5f6071",
            t.sim.fhir_base()
        ))
        .bearer_auth(USER_TOKEN)
        .header("NHSD-eRS-Business-Function", SPC)
        .header("NHSD-End-User-Organisation-ODS", "R69")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let out: Value = r.json().await.unwrap();
    assert_eq!(
        out["issue"][0]["details"]["coding"][0]["system"],
        "https://fhir.nhs.uk/CodeSystem/ers-error-codes"
    );
    assert_eq!(ers_code(&out), "THREATS_FOUND");
    let (s, _) = t
        .get_json("Binary/00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_seeded_available_attachment_downloads() {
    let t = spawn().await;
    for f in std::fs::read_dir(samples_dir().join("referrals")).unwrap() {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(f.unwrap().path()).unwrap()).unwrap();
        for c in v["contained"].as_array().unwrap() {
            if c["resourceType"] != "DocumentReference" {
                continue;
            }
            let att = &c["content"][0]["attachment"];
            let available = att["extension"][0]["valueCoding"]["code"] == "AVAILABLE";
            let url = att["url"].as_str().unwrap();
            let r = t.user(Method::GET, url).send().await.unwrap();
            if available {
                assert_eq!(r.status(), StatusCode::OK, "{url}");
                assert_eq!(
                    r.headers()["content-type"],
                    att["contentType"].as_str().unwrap()
                );
            } else {
                assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{url}");
            }
        }
    }
}

#[tokio::test]
async fn available_actions_for_user() {
    let t = spawn().await;
    let (s, b) = t
        .get_json("Task?focus=ReferralRequest/000000070013/_history/5&intent=proposal&status=ready")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b["entry"][0]["resource"]["code"]["coding"][0]["code"],
        "RECORD_REVIEW_OUTCOME"
    );
    let (s, b) = t
        .get_json("Task?focus=ReferralRequest/000000070001/_history/5&intent=proposal&status=ready")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["entry"].as_array().unwrap().len(), 0);
    let (s, b) = t
        .get_json("Task?focus=ReferralRequest/000000070013/_history/4&intent=proposal&status=ready")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(ers_code(&b), "HISTORY_NOT_SUPPORTED");
    let (s, _) = t.get_json("Task?intent=proposal").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn admin_adds_a_referral_at_run_time() {
    let t = spawn().await;
    let mut referral: Value = serde_json::from_str(
        &std::fs::read_to_string(samples_dir().join("referrals/booked-dbs.json")).unwrap(),
    )
    .unwrap();
    referral["id"] = json!("000000071234");
    let r = t
        .http
        .post(format!("{}/_admin/referrals", t.sim.base_url()))
        .json(&referral)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (s, b) = t.get_json("ReferralRequest/000000071234").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["id"], "000000071234");
    let r = t
        .http
        .post(format!("{}/_admin/referrals", t.sim.base_url()))
        .json(&json!({"resourceType": "Patient"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let page = t
        .http
        .get(t.sim.base_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("000000071234"));
}
