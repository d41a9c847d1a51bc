//! Token endpoint, access modes (app- and user-restricted) and legacy professional sessions.

use ers_bridge::simulator::{SimAuth, SimConfig};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn signed_jwt_token_is_issued_and_accepted() {
    let t = spawn().await;
    let jwt = assertion(&claims(&t.sim.token_url()), "sim-kid");
    let resp = t.token_request(&jwt).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], "600");
    let token = body["access_token"].as_str().unwrap();
    let r = t
        .http
        .get(t.stu3("ReferralRequest/000000070001"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_assertions_are_rejected() {
    let t = spawn().await;
    let url = t.sim.token_url();
    let good = claims(&url);
    let mut cases: Vec<(&str, Value, &str)> = Vec::new();
    let mut c = good.clone();
    c["aud"] = json!("https://api.service.nhs.uk/oauth2/token");
    cases.push(("aud", c, "sim-kid"));
    let mut c = good.clone();
    c["iss"] = json!("other-key");
    cases.push(("iss", c, "sim-kid"));
    let mut c = good.clone();
    c["exp"] = json!(chrono::Utc::now().timestamp() + 3600);
    cases.push(("exp", c, "sim-kid"));
    let mut c = good.clone();
    c["exp"] = json!(chrono::Utc::now().timestamp() - 60);
    cases.push(("expired", c, "sim-kid"));
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("jti");
    cases.push(("jti", c, "sim-kid"));
    cases.push(("kid", good.clone(), "other-kid"));
    for (what, claims, kid) in cases {
        let resp = t.token_request(&assertion(&claims, kid)).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client", "{what}");
    }
    let resp = t
        .http
        .post(t.sim.token_url())
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn replayed_jti_is_rejected() {
    let t = spawn().await;
    let jwt = assertion(&claims(&t.sim.token_url()), "sim-kid");
    assert_eq!(t.token_request(&jwt).await.status(), StatusCode::OK);
    let again = t.token_request(&jwt).await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    let body: Value = again.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap().contains("jti"));
}

#[tokio::test]
async fn issued_tokens_expire() {
    let mut cfg = config();
    cfg.auth.token_ttl_secs = 0;
    let t = spawn_with(cfg).await;
    let token = t.app_token().await;
    let r = t
        .http
        .get(t.stu3("ReferralRequest/000000070001"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn app_restricted_cannot_call_user_only_operations_or_send_role_headers() {
    let t = spawn().await;
    let token = t.app_token().await;
    for path in [
        "ReferralRequest/000000070001/$ers.rejectReferral",
        "ReferralRequest/000000070001/$ers.cancelAppointmentActionLater",
        "CommunicationRequest/$ers.fetchworklist",
        "CommunicationRequest/000000080000/$ers.sendCommunicationToRequester",
        "ReferralRequest/$ers.createFromCommunicationRequestActionLater",
    ] {
        let r = t
            .http
            .post(t.stu3(path))
            .bearer_auth(&token)
            .header("If-Match", "W/\"5\"")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let r = t
        .http
        .get(t.stu3("ReferralRequest/000000070001"))
        .bearer_auth(&token)
        .header("NHSD-eRS-Business-Function", SPC)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A013 is allowed in app-restricted mode.
    let r = t
        .http
        .post(t.stu3("ReferralRequest/000000070001/$ers.acceptReferral"))
        .bearer_auth(&token)
        .header("If-Match", "W/\"5\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn user_restricted_needs_role_headers_and_obo_rules() {
    let t = spawn().await;
    let url = t.stu3("ReferralRequest/000000070001");
    let r = t.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = t.http.get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = t
        .http
        .get(&url)
        .bearer_auth(USER_TOKEN)
        .header("NHSD-eRS-Business-Function", SPC)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(ers_code(&body), "MISSING_HEADER");
    let (read, accept) = (
        "ReferralRequest/000000070001",
        "ReferralRequest/000000070001/$ers.acceptReferral",
    );
    let (spca, referrer, app) = (
        "SERVICE_PROVIDER_CLINICIAN_ADMIN",
        "REFERRING_CLINICIAN",
        "PROVIDER_AUTHORISED_APPLICATION",
    );
    let (obo, v5) = (Some("021600556514"), Some("W/\"5\""));
    // (method, path, role, on-behalf-of user, If-Match, expected status).
    let cases = [
        // SPCA without OBO, SPC with OBO: both 403; SPCA with OBO is allowed.
        (Method::GET, read, spca, None, None, StatusCode::FORBIDDEN),
        (Method::GET, read, SPC, obo, None, StatusCode::FORBIDDEN),
        (Method::GET, read, spca, obo, None, StatusCode::OK),
        // A referrer may read but not accept.
        (
            Method::POST,
            accept,
            referrer,
            None,
            v5,
            StatusCode::FORBIDDEN,
        ),
        (Method::GET, read, app, None, None, StatusCode::FORBIDDEN),
    ];
    for (method, path, role, obo, if_match, expected) in cases {
        let mut req = t.user_as(method.clone(), path, role);
        if let Some(user) = obo {
            req = req.header("NHSD-eRS-On-Behalf-Of-User-ID", user);
        }
        if let Some(v) = if_match {
            req = req.header("If-Match", v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(
            r.status(),
            expected,
            "{method} {path} as {role} (obo {obo:?})"
        );
    }
}

#[tokio::test]
async fn legacy_professional_session_flow() {
    let t = spawn().await;
    let base = t.sim.legacy_base();
    let asid = "200000000001";
    let r = t
        .http
        .post(format!("{base}/v1/ProfessionalSession"))
        .header("XAPI_ASID", asid)
        .json(&json!({"typeInfo": "uk.nhs.ers.xapi.dto.v1.session.ProfessionalSession", "token": "sso"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let session: Value = r.json().await.unwrap();
    let id = session["id"].as_str().unwrap().to_owned();
    assert!(session["permission"].is_null());
    let read = |key: Option<String>, asid: &'static str| {
        let mut req = t
            .http
            .get(format!("{base}/STU3/v1/ReferralRequest/000000070001"))
            .header("XAPI_ASID", asid);
        if let Some(k) = key {
            req = req.header("HTTP_X_SESSION_KEY", k);
        }
        req.send()
    };
    assert_eq!(
        read(Some(id.clone()), asid).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        read(None, asid).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let mut selected = session.clone();
    selected["permission"] = json!({"businessFunction": SPC, "orgIdentifier": "R69"});
    let r = t
        .http
        .put(format!("{base}/v1/ProfessionalSession/{id}"))
        .header("XAPI_ASID", asid)
        .header("HTTP_X_SESSION_KEY", &id)
        .json(&selected)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = read(Some(id.clone()), asid).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.headers()["etag"], "W/\"5\"");
    assert_eq!(
        read(Some(id.clone()), "999").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // The legacy spelling of A022 is routed.
    let r = t
        .http
        .post(format!(
            "{base}/STU3/v1/ReferralRequest/000000070001/$ers.CancelAppointmentActionLater"
        ))
        .header("XAPI_ASID", asid)
        .header("HTTP_X_SESSION_KEY", &id)
        .header("If-Match", "W/\"5\"")
        .json(&parameters(
            "eRS-cancelAppointmentActionLater-Parameters-1",
            json!([{"name": "comments", "valueString": "rebook please"}]),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = t
        .http
        .delete(format!("{base}/v1/ProfessionalSession/{id}"))
        .header("XAPI_ASID", asid)
        .header("HTTP_X_SESSION_KEY", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        read(Some(id), asid).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn no_auth_mode_defaults_to_provider_clinician() {
    let t = spawn_with(SimConfig {
        auth: SimAuth {
            require_auth: false,
            ..SimAuth::default()
        },
        ..config()
    })
    .await;
    let r = t
        .http
        .get(t.stu3("ReferralRequest/000000070001"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = t
        .http
        .post(t.stu3("ReferralRequest/000000070001/$ers.acceptReferral"))
        .header("If-Match", "W/\"5\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn token_endpoint_without_public_key_is_401() {
    let mut cfg = config();
    cfg.auth.public_key_pem = None;
    let t = spawn_with(cfg).await;
    let jwt = assertion(&claims(&t.sim.token_url()), "sim-kid");
    assert_eq!(
        t.token_request(&jwt).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
