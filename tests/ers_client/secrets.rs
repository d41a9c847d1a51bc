//! Secrets of a configured client (API key, private key, access/bearer tokens, SSO token,
//! session key) never appear in its `Debug` output, in errors, or in captured logs (all
//! levels, all crates).

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use axum::{http::StatusCode, response::IntoResponse};
use ers_bridge::{config::MapEnv, ers::ErsClient};

use crate::helpers::{
    client, config_toml, example, example_json, fhir, jwt_key, ubrn, ver, RecordingServer,
};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const API_KEY: &str = "api-key-SECRET-1";
const ACCESS_TOKEN: &str = "access-token-SECRET-2";
const BEARER: &str = "bearer-SECRET-3";
const SSO: &str = "sso-SECRET-4";
const SESSION: &str = "pro-xapi-session_SECRET-5";

/// A server that plays token endpoint, legacy session endpoint and e-RS (answering errors
/// for half the calls so error paths are logged too).
async fn server() -> RecordingServer {
    RecordingServer::spawn(|s, n| match (s.method.as_str(), s.path.as_str()) {
        (_, "/oauth2/token") => axum::Json(serde_json::json!({
            "access_token": ACCESS_TOKEN, "expires_in": "600", "token_type": "Bearer"
        }))
        .into_response(),
        ("POST", "/ers-api/v1/ProfessionalSession") => {
            let mut v: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(example("legacy-ers-api/A001_Response.json")).unwrap(),
            )
            .unwrap();
            v["id"] = SESSION.into();
            v["token"] = SSO.into();
            (StatusCode::CREATED, axum::Json(v)).into_response()
        }
        ("PUT", _) => axum::Json(s.json()).into_response(),
        ("DELETE", _) => StatusCode::NO_CONTENT.into_response(),
        _ if n % 2 == 0 => fhir(401, example_json("stu3/STU3-Unauthorised.json"), None),
        _ => crate::helpers::example_reply(
            "stu3/retrieveReferralRequest/responses/Unbooked.json",
            Some(5),
        ),
    })
    .await
}

fn clients(server: &RecordingServer, dir: &std::path::Path) -> Vec<ErsClient> {
    let token_file = dir.join("token");
    std::fs::write(&token_file, BEARER).unwrap();
    let app = format!(
        "mode = \"app-restricted\"\napi_key = \"{API_KEY}\"\nprivate_key_file = \"{}\"\nkid = \"k\"",
        jwt_key("private.pem")
    );
    let user = format!(
        "mode = \"user-restricted\"\ntoken_file = \"{}\"\nbusiness_function = \"SERVICE_PROVIDER_CLINICIAN\"\nods_code = \"R69\"",
        token_file.display()
    );
    let legacy = "mode = \"legacy-session\"\nasid = \"200000000001\"\nsession_token_env = \"SSO\"\nbusiness_function = \"SERVICE_PROVIDER_CLINICIAN\"\nods_code = \"R01\"";
    let env = || MapEnv::from_pairs([("SSO", SSO)]);
    let retry = "[ers.retry]\nmax_attempts = 2\nbase_delay_ms = 1";
    vec![
        client(&config_toml(&server.base(), retry, &app), env()),
        client(&config_toml(&server.base(), retry, &user), env()),
        client(
            &config_toml(&format!("http://{}/ers-api", server.addr), retry, legacy),
            env(),
        ),
    ]
}

fn assert_clean(what: &str, text: &str) {
    let private_key = std::fs::read_to_string(jwt_key("private.pem")).unwrap();
    let key_line = private_key.lines().nth(1).unwrap();
    for secret in [
        API_KEY,
        ACCESS_TOKEN,
        BEARER,
        SSO,
        SESSION,
        "SECRET",
        key_line,
    ] {
        assert!(
            !text.contains(secret),
            "{what} contains a secret ({secret}):\n{text}"
        );
    }
}

#[test]
fn secrets_never_reach_debug_errors_or_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // Global, not scoped: with a thread-local subscriber, callsites first hit by other tests
    // running in parallel can keep a cached "never" interest and log nothing here. This is
    // the only test in the binary that installs a subscriber.
    tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = server().await;
        let dir = tempfile::tempdir().unwrap();
        let mut outputs = String::new();
        for c in clients(&server, dir.path()) {
            outputs.push_str(&format!("{c:?}\n{c:#?}\n"));
            for _ in 0..3 {
                match c.referral(&ubrn("000000070000"), None).await {
                    Ok(r) => outputs.push_str(&format!("{:?}\n", r.version)),
                    Err(e) => outputs.push_str(&format!("{e}\n{e:?}\n")),
                }
            }
            if let Err(e) = c.accept(&ubrn("000000070000"), ver(1)).await {
                outputs.push_str(&format!("{e}\n{e:?}\n"));
            }
            c.shutdown().await.unwrap();
            outputs.push_str(&format!("{c:?}\n"));
        }
        // The legacy flow really ran (so the session key was in play).
        assert!(server.seen().iter().any(|s| s.method == "DELETE"));
        assert!(server.seen().iter().any(|s| s.path == "/oauth2/token"));
        assert_clean("debug and error output", &outputs);
    });
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("e-rs call"), "nothing was logged:\n{logs}");
    assert_clean("the logs", &logs);
}
