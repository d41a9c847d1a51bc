//! The auth modes on the wire, captured on a local recording server: the signed JWT and token cache
//! (app-restricted), role headers and token re-reading (user-restricted), and the legacy
//! session flow (A001/A002, headers on every call, A003 on shutdown).

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
    ers::{ErsError, Operation},
    fhir::{
        requests::{FetchWorklist, RejectReferral},
        worklist::ListSelector,
        Coding,
    },
};

use crate::helpers::{
    client, config_toml, example_json, fhir, jwt_key, ubrn, ver, RecordingServer, Seen,
};
use crate::wire::{call_everything, canned, expected_paths};

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
    let server = RecordingServer::spawn(move |s, _| {
        if s.path == "/oauth2/token" {
            token_endpoint(s, tu.get().unwrap(), &issued2)
        } else {
            canned(s)
        }
    })
    .await;
    token_url
        .set(format!("http://{}/oauth2/token", server.addr))
        .unwrap();
    // The token URL defaults to <origin of base_url>/oauth2/token.
    let c = client(
        &config_toml(&server.base(), "", &app_restricted_auth(None)),
        MapEnv::default(),
    );
    c.referral(&ubrn("000000070001"), None).await.unwrap();
    c.referral(&ubrn("000000070001"), None).await.unwrap();
    assert_eq!(c.token_fetch_count(), Some(1), "token cached");
    let api: Vec<_> = server
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
    c.referral(&ubrn("000000070001"), None).await.unwrap();
    assert_eq!(c.token_fetch_count(), Some(1));
    tokio::time::advance(Duration::from_secs(2)).await;
    c.referral(&ubrn("000000070001"), None).await.unwrap();
    assert_eq!(c.token_fetch_count(), Some(2), "refreshed before expiry");
    let last = server.seen().into_iter().last().unwrap();
    assert_eq!(last.header("authorization"), Some("Bearer access-token-1"));
    // Forbidden operations are refused before anything is sent.
    let before = server.seen().len();
    let e = c
        .reject(
            &ubrn("000000070001"),
            ver(6),
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
    assert_eq!(server.seen().len(), before);
}

#[tokio::test]
async fn app_restricted_refetches_the_token_after_a_401() {
    let issued = Arc::new(AtomicUsize::new(0));
    let issued2 = issued.clone();
    let token_url = Arc::new(std::sync::OnceLock::<String>::new());
    let tu = token_url.clone();
    let server = RecordingServer::spawn(move |s, _| {
        if s.path == "/oauth2/token" {
            token_endpoint(s, tu.get().unwrap(), &issued2)
        } else if s.header("authorization") == Some("Bearer access-token-0") {
            fhir(401, example_json("stu3/STU3-Unauthorised.json"), None)
        } else {
            canned(s)
        }
    })
    .await;
    let url = format!("http://{}/oauth2/token", server.addr);
    token_url.set(url.clone()).unwrap();
    let c = client(
        &config_toml(&server.base(), "", &app_restricted_auth(Some(&url))),
        MapEnv::default(),
    );
    c.referral(&ubrn("000000070001"), None).await.unwrap();
    assert_eq!(c.token_fetch_count(), Some(2));
}

#[tokio::test]
async fn user_restricted_sends_role_headers_and_rereads_the_token_file() {
    let server = RecordingServer::spawn(|s, _| canned(s)).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "user-token-one\n").unwrap();
    let auth = format!(
        "mode = \"user-restricted\"\ntoken_file = \"{}\"\nbusiness_function = \"SERVICE_PROVIDER_CLINICIAN_ADMIN\"\nods_code = \"R69\"\non_behalf_of_user_id = \"021600556514\"",
        token.display()
    );
    let c = client(&config_toml(&server.base(), "", &auth), MapEnv::default());
    c.referral(&ubrn("000000070001"), None).await.unwrap();
    std::fs::write(&token, "user-token-number-two\n").unwrap();
    c.referral(&ubrn("000000070001"), None).await.unwrap();
    let seen = server.seen();
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
    let server = RecordingServer::spawn(|s, _| canned(s)).await;
    let auth = "mode = \"user-restricted\"\ntoken_env = \"ERS_TOKEN\"\nbusiness_function = \"SERVICE_PROVIDER_CLINICIAN\"\nods_code = \"R69\"";
    let c = client(
        &config_toml(&server.base(), "", auth),
        MapEnv::from_pairs([("ERS_TOKEN", "env-token")]),
    );
    c.accept(&ubrn("000000070001"), ver(6)).await.unwrap();
    let s = &server.seen()[0];
    assert_eq!(s.header("authorization"), Some("Bearer env-token"));
    assert_eq!(
        s.header("nhsd-ers-business-function"),
        Some("SERVICE_PROVIDER_CLINICIAN")
    );
    assert!(s.header("nhsd-ers-on-behalf-of-user-id").is_none());
}

#[tokio::test]
async fn legacy_session_is_created_role_selected_used_and_deleted() {
    let server = RecordingServer::spawn(|s, _| match (s.method.as_str(), s.path.as_str()) {
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
    let base = format!("http://{}/ers-api", server.addr);
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
    let seen = server.seen();
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
    let server = RecordingServer::spawn(|_, _| {
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
        &config_toml(&format!("http://{}/ers-api", server.addr), "", auth),
        MapEnv::from_pairs([("SSO", "t")]),
    );
    let e = c.referral(&ubrn("000000070001"), None).await.unwrap_err();
    assert!(
        e.to_string().contains("SERVICE_PROVIDER_CLINICIAN@R01"),
        "{e}"
    );
    assert!(!e.to_string().contains("pro-xapi-session"), "{e}");
}

/// The error `ErsClient::new` gives for a config at `base` with the `[ers.auth]` lines `auth`.
fn client_error(base: &str, auth: &str) -> ers_bridge::ers::ErsError {
    let cfg =
        ers_bridge::config::load_str("t.toml", &config_toml(base, "", auth), &MapEnv::default())
            .unwrap();
    ers_bridge::ers::ErsClient::new(&cfg.ers, std::sync::Arc::new(MapEnv::default())).unwrap_err()
}

#[test]
fn legacy_client_certificate_problems_name_the_key() {
    let auth = "mode = \"legacy-session\"\nasid = \"200000000001\"\nsession_token_env = \"SSO\"\nbusiness_function = \"SERVICE_PROVIDER_CLINICIAN\"\nods_code = \"R69\"\nclient_cert_file = \"/nonexistent/client.crt\"\nclient_key_file = \"/nonexistent/client.key\"";
    let e = client_error("https://api.dev1.ers.ncrs.nhs.uk/ers-api", auth);
    assert!(e.to_string().contains("ers.auth.client_cert_file"), "{e}");
    // A file that is not PEM is refused too, naming the problem.
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = (dir.path().join("c.crt"), dir.path().join("c.key"));
    std::fs::write(&crt, "not a certificate").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let auth = auth
        .replace("/nonexistent/client.crt", crt.to_str().unwrap())
        .replace("/nonexistent/client.key", key.to_str().unwrap());
    let e = client_error("https://api.dev1.ers.ncrs.nhs.uk/ers-api", &auth);
    assert!(e.to_string().contains("client certificate or key"), "{e}");
}

#[test]
fn app_restricted_key_problems_name_the_key() {
    let auth = "mode = \"app-restricted\"\napi_key = \"k\"\nprivate_key_file = \"/nonexistent/jwt.pem\"\nkid = \"kid\"";
    let e = client_error("https://api.service.nhs.uk/referrals/FHIR", auth);
    assert!(e.to_string().contains("ers.auth.private_key_file"), "{e}");
    let auth = auth.replace("/nonexistent/jwt.pem", &jwt_key("public.pem"));
    let e = client_error("https://api.service.nhs.uk/referrals/FHIR", &auth);
    assert!(e.to_string().contains("not an RSA private key"), "{e}");
    assert!(e.to_string().contains("public.pem"), "{e}");
}

/// The token endpoint refuses the key (a wrong API key or signing key): the call fails
/// as a permanent auth error and e-RS authentication is reported failing (the gauge that
/// `/health/ready` and the `ers_auth_failing` alert read), as a 401 from e-RS is; a later
/// successful call clears it.
#[tokio::test(flavor = "multi_thread")]
async fn app_restricted_refused_credentials_are_reported_failing() {
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let r2 = refuse.clone();
    let server = RecordingServer::spawn(move |s, _| {
        if s.path == "/oauth2/token" {
            if r2.load(Ordering::SeqCst) {
                return (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(serde_json::json!({"error": "invalid_client",
                        "error_description": "Invalid API key"})),
                )
                    .into_response();
            }
            return axum::Json(serde_json::json!({"access_token": "t", "expires_in": "599",
                "token_type": "Bearer"}))
            .into_response();
        }
        canned(s)
    })
    .await;
    let events = ers_bridge::events::Events::new();
    let c = client(
        &config_toml(&server.base(), "", &app_restricted_auth(None)),
        MapEnv::default(),
    )
    .with_events(events.clone());
    let e = c.referral(&ubrn("000000070001"), None).await.unwrap_err();
    assert!(
        matches!(
            e,
            ErsError::Auth {
                retryable: false,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(events.metrics().ers_auth_failing.get(), 1);
    refuse.store(false, Ordering::SeqCst);
    c.referral(&ubrn("000000070001"), None).await.unwrap();
    assert_eq!(events.metrics().ers_auth_failing.get(), 0);
}

/// A user token that e-RS no longer accepts (expired, revoked) in user-restricted mode: the
/// client reads the token file again and repeats the call once, and no more; then it is a
/// permanent auth error that says what to replace, and e-RS authentication is reported
/// failing (`/health/ready`, the `ers_auth_failing` alert) until a new token works.
#[tokio::test(flavor = "multi_thread")]
async fn user_restricted_expired_token_is_reported_once_with_the_fix() {
    let server = RecordingServer::spawn(|s, _| {
        if s.header("authorization") == Some("Bearer expired-user-token") {
            return fhir(401, example_json("stu3/STU3-Unauthorised.json"), None);
        }
        canned(s)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "expired-user-token\n").unwrap();
    let auth = format!(
        "mode = \"user-restricted\"\ntoken_file = \"{}\"\nbusiness_function = \"SERVICE_PROVIDER_CLINICIAN\"\nods_code = \"R69\"",
        token.display()
    );
    let events = ers_bridge::events::Events::new();
    let c = client(&config_toml(&server.base(), "", &auth), MapEnv::default())
        .with_events(events.clone());
    let e = c.referral(&ubrn("000000070001"), None).await.unwrap_err();
    assert!(!e.is_retryable(), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("token_file"), "names what to replace: {text}");
    assert!(
        !text.contains("expired-user-token"),
        "no secret in errors: {text}"
    );
    assert_eq!(
        server.seen().len(),
        2,
        "the call and one repeat after re-reading"
    );
    assert_eq!(events.metrics().ers_auth_failing.get(), 1);

    std::fs::write(&token, "fresh-user-token\n").unwrap();
    c.referral(&ubrn("000000070001"), None).await.unwrap();
    assert_eq!(events.metrics().ers_auth_failing.get(), 0);
}
