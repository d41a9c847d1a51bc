//! What goes on the wire in each auth mode, captured on a local stub: paths, auth and role
//! headers, `X-Correlation-ID`, `If-Match`, the signed JWT, the legacy session flow, the
//! A042 redirect (no credentials to the object store), refusals before sending, size caps.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{http::StatusCode, response::IntoResponse};
use ers_bridge::{
    config::MapEnv,
    ers::{ErsClient, ErsError, Operation},
    fhir::{
        requests::{
            CancelAppointmentActionLater, ConvertAdviceToReferral, FetchWorklist, GuidanceOutcome,
            Priority, RecordReviewOutcome, RejectReferral, ReviewOutcome, SendAdviceResponse,
        },
        worklist::ListSelector,
        Coding,
    },
};

use crate::helpers::{client, config_toml, example_json, example_reply, fhir, jwt_key, Seen, Stub};

/// Answers every e-RS path with a plausible official example.
pub(crate) fn canned(s: &Seen) -> axum::response::Response {
    let p = s.path.as_str();
    let ex = |rel: &str, etag| example_reply(&format!("stu3/{rel}"), etag);
    if p.contains("/CodeSystem/") {
        ex("getCodeSystem/responses/SpecialtyCodeSystem.json", None)
    } else if p.ends_with("$ers.fetchworklist") && p.contains("CommunicationRequest") {
        ex(
            "retrieveAdviceAndGuidanceWorklist/responses/AdviceAndGuidanceRequests.json",
            None,
        )
    } else if p.ends_with("$ers.fetchworklist") {
        ex("retrieveWorklist/responses/ReferralsForReview.json", None)
    } else if p.ends_with("$ers.generateCRI") || p.contains("/Binary/") {
        (
            [
                ("content-type", "application/pdf"),
                ("content-disposition", "attachment; filename=\"x.pdf\""),
            ],
            "%PDF-1.4 synthetic",
        )
            .into_response()
    } else if p.ends_with("$ers.sendCommunicationToRequester") {
        ex(
            "sendAdviceAndGuidanceResponse/responses/RequireFurtherInformation.json",
            None,
        )
    } else if p.contains("createFromCommunicationRequestActionLater") {
        ex(
            "convertAdviceAndGuidanceToReferral/responses/NoAttachments.json",
            None,
        )
    } else if p.contains("ReferralRequest/") {
        ex("retrieveReferralRequest/responses/BookedDBS.json", Some(6))
    } else if p.contains("CommunicationRequest/") {
        ex(
            "retrieveAdviceAndGuidanceRequest/responses/MinimalExample.json",
            Some(5),
        )
    } else if p.ends_with("/Communication") {
        ex(
            "retrieveAdviceAndGuidanceConversation/OneMessageEachWay.json",
            None,
        )
    } else if p.ends_with("/Task") {
        ex(
            "availableActionsForUserList/WithRecordReviewOutcome.json",
            None,
        )
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// Calls every provider operation once; returns (operation, result is ok).
async fn call_everything(c: &ErsClient) -> Vec<(Operation, Result<(), ErsError>)> {
    let u = "000000070001";
    let reason = Coding::new(
        "_baseurl_/STU3/CodeSystem/APPOINTMENT-CANCELLATION-REASON",
        "OTHER",
    );
    let mut wl = FetchWorklist::new(ListSelector::ReferralsForReview);
    wl.service = Some("21012".into());
    vec![
        (
            Operation::A004,
            c.reference_data("SPECIALTY").await.map(drop),
        ),
        (Operation::A005, c.referral(u, Some(6)).await.map(drop)),
        (
            Operation::A006,
            c.attachment_stu3("att-70000-70001").await.map(drop),
        ),
        (Operation::A007, c.clinical_info(u).await.map(drop)),
        (Operation::A008, c.worklist(&wl).await.map(drop)),
        (Operation::A013, c.accept(u, 6).await.map(drop)),
        (
            Operation::A014,
            c.reject(
                u,
                6,
                &RejectReferral {
                    reason,
                    comments: Some("c".into()),
                    appointment_cancelled_in_pas: None,
                },
            )
            .await
            .map(drop),
        ),
        (
            Operation::A022,
            c.cancel_action_later(
                u,
                6,
                &CancelAppointmentActionLater {
                    comments: "c".into(),
                    priority: None,
                    appointment_cancelled_in_pas: Some(true),
                    attachments: vec![],
                },
            )
            .await
            .map(drop),
        ),
        (Operation::A023, c.advice_worklist(None).await.map(drop)),
        (Operation::A024, c.advice_request(u, None).await.map(drop)),
        (Operation::A025, c.advice_conversation(u, 5).await.map(drop)),
        (
            Operation::A026,
            c.send_advice_response(
                u,
                5,
                &SendAdviceResponse {
                    outcome: GuidanceOutcome::RequireFurtherInformation,
                    recommendation: None,
                    guidance: "g".into(),
                    updated_priority: Priority::Routine,
                    attachments: vec![],
                },
            )
            .await
            .map(drop),
        ),
        (
            Operation::A027,
            c.convert_advice(&ConvertAdviceToReferral {
                ubrn: u.into(),
                version: 5,
                guidance: "g".into(),
                new_priority: Priority::Routine,
                review_comments: "r".into(),
                guidance_attachments: vec![],
                review_attachments: vec![],
            })
            .await
            .map(drop),
        ),
        (
            Operation::A028,
            c.record_review_outcome(
                u,
                6,
                &RecordReviewOutcome {
                    outcome: ReviewOutcome::AcceptReferBookLater,
                    comments: "c".into(),
                    priority: None,
                    attachments: vec![],
                },
            )
            .await
            .map(drop),
        ),
        (Operation::A029, c.available_actions(u, 6).await.map(drop)),
        (
            Operation::A042,
            c.attachment("c5d2d200-7613-4a4a-9b0d-5ab1d6e0e5a1")
                .await
                .map(drop),
        ),
    ]
}

fn expected_paths(prefix: &str) -> HashMap<Operation, (&'static str, String)> {
    let u = "000000070001";
    let s = |rest: String| format!("{prefix}/{rest}");
    HashMap::from([
        (Operation::A004, ("GET", s("CodeSystem/SPECIALTY".into()))),
        (
            Operation::A005,
            ("GET", s(format!("ReferralRequest/{u}/_history/6"))),
        ),
        (Operation::A006, ("GET", s("Binary/att-70000-70001".into()))),
        (
            Operation::A007,
            ("POST", s(format!("ReferralRequest/{u}/$ers.generateCRI"))),
        ),
        (
            Operation::A008,
            ("POST", s("ReferralRequest/$ers.fetchworklist".into())),
        ),
        (
            Operation::A013,
            (
                "POST",
                s(format!("ReferralRequest/{u}/$ers.acceptReferral")),
            ),
        ),
        (
            Operation::A014,
            (
                "POST",
                s(format!("ReferralRequest/{u}/$ers.rejectReferral")),
            ),
        ),
        (
            Operation::A023,
            ("POST", s("CommunicationRequest/$ers.fetchworklist".into())),
        ),
        (
            Operation::A024,
            ("GET", s(format!("CommunicationRequest/{u}"))),
        ),
        (Operation::A025, ("GET", s("Communication".into()))),
        (
            Operation::A026,
            (
                "POST",
                s(format!(
                    "CommunicationRequest/{u}/$ers.sendCommunicationToRequester"
                )),
            ),
        ),
        (
            Operation::A027,
            (
                "POST",
                s("ReferralRequest/$ers.createFromCommunicationRequestActionLater".into()),
            ),
        ),
        (
            Operation::A028,
            (
                "POST",
                s(format!("ReferralRequest/{u}/$ers.recordReviewOutcome")),
            ),
        ),
        (Operation::A029, ("GET", s("Task".into()))),
    ])
}

#[tokio::test]
async fn every_operation_has_its_path_method_and_headers() {
    let stub = Stub::spawn(|s, _| canned(s)).await;
    let c = client(
        &config_toml(&stub.base(), "", "mode = \"none\""),
        MapEnv::default(),
    );
    let results = call_everything(&c).await;
    for (op, r) in &results {
        assert!(
            r.is_ok(),
            "{op}: {:?}",
            r.as_ref().err().map(ToString::to_string)
        );
    }
    let seen = stub.seen();
    let paths = expected_paths("/referrals/FHIR/STU3");
    for (op, (method, path)) in &paths {
        let hit = seen
            .iter()
            .find(|s| &s.path == path)
            .unwrap_or_else(|| panic!("{op}: no request to {path}"));
        assert_eq!(hit.method.as_str(), *method, "{op}");
        let cid = hit.header("x-correlation-id").unwrap();
        assert!(
            uuid::Uuid::parse_str(cid).is_ok(),
            "{op}: correlation id {cid}"
        );
        assert!(hit.header("authorization").is_none());
        let writes_with_if_match = [
            Operation::A013,
            Operation::A014,
            Operation::A026,
            Operation::A028,
        ];
        if writes_with_if_match.contains(op) {
            let v = if *op == Operation::A026 { 5 } else { 6 };
            assert_eq!(
                hit.header("if-match"),
                Some(format!("W/\"{v}\"").as_str()),
                "{op}"
            );
        } else {
            assert_eq!(hit.header("if-match"), None, "{op}");
        }
        if !hit.body.is_empty() {
            assert_eq!(
                hit.header("content-type"),
                Some("application/fhir+json"),
                "{op}"
            );
        }
    }
    let a022 = seen
        .iter()
        .find(|s| s.path.ends_with("$ers.cancelAppointmentActionLater"))
        .unwrap();
    assert_eq!(a022.header("if-match"), Some("W/\"6\""));
    let a025 = seen
        .iter()
        .find(|s| s.path.ends_with("/Communication"))
        .unwrap();
    let q = a025.query.as_deref().unwrap();
    assert!(
        q.starts_with("based-on=CommunicationRequest%2F000000070001%2F_history%2F5"),
        "{q}"
    );
    assert_eq!(q.matches("_include=").count(), 3, "{q}");
    let a029 = seen.iter().find(|s| s.path.ends_with("/Task")).unwrap();
    assert_eq!(
        a029.query.as_deref(),
        Some("focus=ReferralRequest%2F000000070001%2F_history%2F6&intent=proposal&status=ready")
    );
    // Correlation ids are fresh per call.
    let ids: std::collections::HashSet<_> = seen
        .iter()
        .filter_map(|s| s.header("x-correlation-id"))
        .collect();
    assert_eq!(ids.len(), seen.len());
}

#[tokio::test]
async fn a_given_correlation_id_is_sent_and_reported() {
    let stub =
        Stub::spawn(|_, _| fhir(422, example_json("stu3/STU3-OperationOutcome.json"), None)).await;
    let c = client(
        &config_toml(&stub.base(), "", "mode = \"none\""),
        MapEnv::default(),
    );
    let id = uuid::Uuid::new_v4();
    let err = c
        .with_correlation_id(id)
        .referral("000000070001", None)
        .await
        .unwrap_err();
    assert_eq!(
        stub.seen()[0].header("x-correlation-id"),
        Some(id.to_string().as_str())
    );
    let api = err.api().unwrap();
    assert_eq!(api.correlation_id, id.to_string());
    assert_eq!(api.request_id.as_deref(), Some("stub-request-1"));
    assert_eq!(api.ers_code.as_deref(), Some("UNEXPECTED_FIELD"));
}

fn app_restricted_auth(token_url: Option<&str>) -> String {
    let mut s = format!(
        "mode = \"app-restricted\"\napi_key = \"test-api-key\"\nprivate_key_file = \"{}\"\nkid = \"test-kid\"\nrefresh_margin_secs = 60\n",
        jwt_key("private.pem")
    );
    if let Some(u) = token_url {
        s.push_str(&format!("token_url = \"{u}\"\n"));
    }
    s
}

/// A token endpoint that checks the client assertion like the NHS platform does.
fn token_endpoint(s: &Seen, token_url: &str, issued: &AtomicUsize) -> axum::response::Response {
    let form =
        reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(&s.body))).unwrap();
    let form: HashMap<_, _> = form.query_pairs().into_owned().collect();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    let jwt = &form["client_assertion"];
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS512);
    assert_eq!(header.kid.as_deref(), Some("test-kid"));
    let key =
        jsonwebtoken::DecodingKey::from_rsa_pem(&std::fs::read(jwt_key("public.pem")).unwrap())
            .unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS512);
    v.set_audience(&[token_url]);
    v.set_issuer(&["test-api-key"]);
    v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "test-api-key");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let exp = claims["exp"].as_i64().unwrap();
    assert!(
        exp <= chrono::Utc::now().timestamp() + 300,
        "exp more than 5 minutes ahead"
    );
    let n = issued.fetch_add(1, Ordering::SeqCst);
    axum::Json(serde_json::json!({
        "access_token": format!("access-token-{n}"),
        "expires_in": "600",
        "token_type": "Bearer",
        "issued_at": "1700000000000"
    }))
    .into_response()
}

#[tokio::test(start_paused = true)]
async fn app_restricted_signs_jwt_caches_and_refreshes_the_token() {
    let issued = Arc::new(AtomicUsize::new(0));
    let issued2 = issued.clone();
    let token_url = Arc::new(std::sync::OnceLock::<String>::new());
    let tu = token_url.clone();
    let stub = Stub::spawn(move |s, _| {
        if s.path == "/oauth2/token" {
            token_endpoint(s, tu.get().unwrap(), &issued2)
        } else {
            canned(s)
        }
    })
    .await;
    token_url
        .set(format!("http://{}/oauth2/token", stub.addr))
        .unwrap();
    // The token URL defaults to <origin of base_url>/oauth2/token.
    let c = client(
        &config_toml(&stub.base(), "", &app_restricted_auth(None)),
        MapEnv::default(),
    );
    c.referral("000000070001", None).await.unwrap();
    c.referral("000000070001", None).await.unwrap();
    assert_eq!(c.token_fetch_count(), Some(1), "token cached");
    let api: Vec<_> = stub
        .seen()
        .into_iter()
        .filter(|s| s.path != "/oauth2/token")
        .collect();
    for s in &api {
        assert_eq!(s.header("authorization"), Some("Bearer access-token-0"));
        for h in [
            "nhsd-ers-business-function",
            "nhsd-end-user-organisation-ods",
            "nhsd-ers-on-behalf-of-user-id",
        ] {
            assert!(s.header(h).is_none(), "{h} sent in app-restricted mode");
        }
    }
    // 600 s lifetime, 60 s margin: still cached at 539 s, refreshed at 541 s.
    tokio::time::advance(Duration::from_secs(539)).await;
    c.referral("000000070001", None).await.unwrap();
    assert_eq!(c.token_fetch_count(), Some(1));
    tokio::time::advance(Duration::from_secs(2)).await;
    c.referral("000000070001", None).await.unwrap();
    assert_eq!(c.token_fetch_count(), Some(2), "refreshed before expiry");
    let last = stub.seen().into_iter().last().unwrap();
    assert_eq!(last.header("authorization"), Some("Bearer access-token-1"));
    // Forbidden operations are refused before anything is sent.
    let before = stub.seen().len();
    let e = c
        .reject(
            "000000070001",
            6,
            &RejectReferral {
                reason: Coding::new("s", "OTHER"),
                comments: None,
                appointment_cancelled_in_pas: None,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ErsError::NotAllowed {
                operation: Operation::A014,
                ..
            }
        ),
        "{e}"
    );
    assert!(c.advice_worklist(None).await.is_err());
    // A worklist without a service filter is refused in this mode too.
    assert!(matches!(
        c.worklist(&FetchWorklist::new(ListSelector::ReferralsForReview))
            .await,
        Err(ErsError::InvalidInput { .. })
    ));
    assert_eq!(stub.seen().len(), before);
}

#[tokio::test]
async fn app_restricted_refetches_the_token_after_a_401() {
    let issued = Arc::new(AtomicUsize::new(0));
    let issued2 = issued.clone();
    let token_url = Arc::new(std::sync::OnceLock::<String>::new());
    let tu = token_url.clone();
    let stub = Stub::spawn(move |s, _| {
        if s.path == "/oauth2/token" {
            token_endpoint(s, tu.get().unwrap(), &issued2)
        } else if s.header("authorization") == Some("Bearer access-token-0") {
            fhir(401, example_json("stu3/STU3-Unauthorised.json"), None)
        } else {
            canned(s)
        }
    })
    .await;
    let url = format!("http://{}/oauth2/token", stub.addr);
    token_url.set(url.clone()).unwrap();
    let c = client(
        &config_toml(&stub.base(), "", &app_restricted_auth(Some(&url))),
        MapEnv::default(),
    );
    c.referral("000000070001", None).await.unwrap();
    assert_eq!(c.token_fetch_count(), Some(2));
}

#[tokio::test]
async fn user_restricted_sends_role_headers_and_rereads_the_token_file() {
    let stub = Stub::spawn(|s, _| canned(s)).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "user-token-one\n").unwrap();
    let auth = format!(
        "mode = \"user-restricted\"\ntoken_file = \"{}\"\nbusiness_function = \"SERVICE_PROVIDER_CLINICIAN_ADMIN\"\nods_code = \"R69\"\non_behalf_of_user_id = \"021600556514\"",
        token.display()
    );
    let c = client(&config_toml(&stub.base(), "", &auth), MapEnv::default());
    c.referral("000000070001", None).await.unwrap();
    std::fs::write(&token, "user-token-number-two\n").unwrap();
    c.referral("000000070001", None).await.unwrap();
    let seen = stub.seen();
    assert_eq!(
        seen[0].header("authorization"),
        Some("Bearer user-token-one")
    );
    assert_eq!(
        seen[1].header("authorization"),
        Some("Bearer user-token-number-two")
    );
    for s in &seen {
        assert_eq!(
            s.header("nhsd-ers-business-function"),
            Some("SERVICE_PROVIDER_CLINICIAN_ADMIN")
        );
        assert_eq!(s.header("nhsd-end-user-organisation-ods"), Some("R69"));
        assert_eq!(
            s.header("nhsd-ers-on-behalf-of-user-id"),
            Some("021600556514")
        );
    }
    // Every provider operation is allowed.
    for (op, r) in call_everything(&c).await {
        assert!(r.is_ok(), "{op}: {:?}", r.err().map(|e| e.to_string()));
    }
}

#[tokio::test]
async fn user_restricted_clinician_sends_no_obo_and_env_token() {
    let stub = Stub::spawn(|s, _| canned(s)).await;
    let auth = "mode = \"user-restricted\"\ntoken_env = \"ERS_TOKEN\"\nbusiness_function = \"SERVICE_PROVIDER_CLINICIAN\"\nods_code = \"R69\"";
    let c = client(
        &config_toml(&stub.base(), "", auth),
        MapEnv::from_pairs([("ERS_TOKEN", "env-token")]),
    );
    c.accept("000000070001", 6).await.unwrap();
    let s = &stub.seen()[0];
    assert_eq!(s.header("authorization"), Some("Bearer env-token"));
    assert_eq!(
        s.header("nhsd-ers-business-function"),
        Some("SERVICE_PROVIDER_CLINICIAN")
    );
    assert!(s.header("nhsd-ers-on-behalf-of-user-id").is_none());
}

#[tokio::test]
async fn legacy_session_is_created_role_selected_used_and_deleted() {
    let stub = Stub::spawn(|s, _| match (s.method.as_str(), s.path.as_str()) {
        ("POST", "/ers-api/v1/ProfessionalSession") => (
            StatusCode::CREATED,
            [("content-type", "application/json")],
            std::fs::read_to_string(crate::helpers::example("legacy-ers-api/A001_Response.json"))
                .unwrap(),
        )
            .into_response(),
        ("PUT", _) => {
            let mut v = s.json();
            assert!(v["permission"].is_object());
            v["permission"]["orgName"] = "NHST_X3".into();
            axum::Json(v).into_response()
        }
        ("DELETE", _) => StatusCode::NO_CONTENT.into_response(),
        _ => canned(s),
    })
    .await;
    let auth = "mode = \"legacy-session\"\nasid = \"200000000001\"\nsession_token_env = \"SSO\"\nbusiness_function = \"SERVICE_PROVIDER_CLINICIAN\"\nods_code = \"R01\"";
    let base = format!("http://{}/ers-api", stub.addr);
    let c = client(
        &config_toml(&base, "", auth),
        MapEnv::from_pairs([("SSO", "smartcard-sso-token")]),
    );
    assert!(!c.has_session().await);
    let results = call_everything(&c).await;
    for (op, r) in &results {
        match op {
            Operation::A042 => assert!(
                matches!(r, Err(ErsError::NotAllowed { .. })),
                "A042 has no legacy endpoint"
            ),
            _ => assert!(
                r.is_ok(),
                "{op}: {:?}",
                r.as_ref().err().map(ToString::to_string)
            ),
        }
    }
    assert!(c.has_session().await);
    c.shutdown().await.unwrap();
    assert!(!c.has_session().await);
    let seen = stub.seen();
    let key = "pro-xapi-session_222c42c7-820f-4f9b-92fb-3add4b1db9f7";
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].json()["token"], "smartcard-sso-token");
    assert_eq!(
        seen[0].json()["typeInfo"],
        "uk.nhs.ers.xapi.dto.v1.session.ProfessionalSession"
    );
    assert_eq!(seen[0].header("xapi_asid"), Some("200000000001"));
    assert!(seen[0].header("http_x_session_key").is_none());
    assert_eq!(seen[1].method, "PUT");
    assert_eq!(
        seen[1].path,
        format!("/ers-api/v1/ProfessionalSession/{key}")
    );
    assert_eq!(
        seen[1].json()["permission"],
        serde_json::json!({"businessFunction": "SERVICE_PROVIDER_CLINICIAN", "orgIdentifier": "R01"})
    );
    let last = seen.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        (
            "DELETE",
            format!("/ers-api/v1/ProfessionalSession/{key}").as_str()
        )
    );
    // One session for all calls; every call carries ASID and the key under /STU3/v1.
    assert_eq!(
        seen.iter()
            .filter(|s| s.method == "POST" && s.path.ends_with("ProfessionalSession"))
            .count(),
        1
    );
    let paths = expected_paths("/ers-api/STU3/v1");
    for (op, (_, path)) in paths {
        let hit = seen
            .iter()
            .find(|s| s.path == path)
            .unwrap_or_else(|| panic!("{op}: no request to {path}"));
        assert_eq!(hit.header("xapi_asid"), Some("200000000001"), "{op}");
        assert_eq!(hit.header("http_x_session_key"), Some(key), "{op}");
        assert!(hit.header("authorization").is_none());
    }
    assert!(seen
        .iter()
        .any(|s| s.path.ends_with("$ers.CancelAppointmentActionLater")));
}

#[tokio::test]
async fn legacy_session_refuses_a_role_the_user_does_not_hold() {
    let stub = Stub::spawn(|_, _| {
        (
            StatusCode::CREATED,
            std::fs::read_to_string(crate::helpers::example("legacy-ers-api/A001_Response.json"))
                .unwrap(),
        )
            .into_response()
    })
    .await;
    let auth = "mode = \"legacy-session\"\nasid = \"200000000001\"\nsession_token_env = \"SSO\"\nbusiness_function = \"SERVICE_PROVIDER_ADMIN\"\nods_code = \"R01\"";
    let c = client(
        &config_toml(&format!("http://{}/ers-api", stub.addr), "", auth),
        MapEnv::from_pairs([("SSO", "t")]),
    );
    let e = c.referral("000000070001", None).await.unwrap_err();
    assert!(
        e.to_string().contains("SERVICE_PROVIDER_CLINICIAN@R01"),
        "{e}"
    );
    assert!(!e.to_string().contains("pro-xapi-session"), "{e}");
}

#[tokio::test]
async fn attachment_redirect_sends_no_credentials_to_the_object_store() {
    let store = Stub::spawn(|_, _| {
        ([("content-type", "application/pdf")], vec![7u8; 4096]).into_response()
    })
    .await;
    let store_url = format!("http://{}/ObjectStore/d497bbe3", store.addr);
    let api = Stub::spawn(move |_, _| {
        (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", store_url.clone())],
            "",
        )
            .into_response()
    })
    .await;
    let auth = "mode = \"user-restricted\"\ntoken_env = \"T\"\nbusiness_function = \"SERVICE_PROVIDER_CLINICIAN\"\nods_code = \"R69\"";
    let c = client(
        &config_toml(&api.base(), "max_attachment_bytes = 5000", auth),
        MapEnv::from_pairs([("T", "secret-bearer")]),
    );
    let bin = c
        .attachment("c5d2d200-7613-4a4a-9b0d-5ab1d6e0e5a1")
        .await
        .unwrap();
    assert_eq!(bin.bytes.len(), 4096);
    assert_eq!(bin.content_type.as_deref(), Some("application/pdf"));
    assert_eq!(
        api.seen()[0].path,
        "/referrals/FHIR/R4/Binary/c5d2d200-7613-4a4a-9b0d-5ab1d6e0e5a1"
    );
    assert_eq!(
        api.seen()[0].header("authorization"),
        Some("Bearer secret-bearer")
    );
    let s = &store.seen()[0];
    for (name, _) in s.headers.iter() {
        let n = name.as_str();
        assert!(
            !(n == "authorization"
                || n.starts_with("nhsd-")
                || n == "x-correlation-id"
                || n == "xapi_asid"),
            "{n} sent to the object store"
        );
    }
    // Over the cap: refused.
    let small = client(
        &config_toml(&api.base(), "max_attachment_bytes = 1000", auth),
        MapEnv::from_pairs([("T", "secret-bearer")]),
    );
    let e = small
        .attachment("c5d2d200-7613-4a4a-9b0d-5ab1d6e0e5a1")
        .await
        .unwrap_err();
    assert!(matches!(e, ErsError::TooLarge { limit: 1000, .. }), "{e}");
}

#[tokio::test]
async fn worklists_above_the_size_cap_are_refused() {
    let stub = Stub::spawn(|s, _| canned(s)).await;
    let c = client(
        &config_toml(&stub.base(), "max_worklist_bytes = 1000", "mode = \"none\""),
        MapEnv::default(),
    );
    let e = c
        .worklist(&FetchWorklist::new(ListSelector::ReferralsForReview))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ErsError::TooLarge {
                operation: Operation::A008,
                ..
            }
        ),
        "{e}"
    );
    assert!(!e.is_retryable());
}
