//! Authentication and access modes of the simulator, as the e-RS API platform and the
//! legacy API enforce them:
//!
//! - `POST /oauth2/token`: client credentials with a signed-JWT client assertion (RS512,
//!   header `kid`, `iss` = `sub` = API key, `aud` = the token URL, `exp` at most 5 minutes
//!   ahead, single-use `jti`); issues app-restricted bearer tokens that expire.
//! - User-restricted bearer tokens (configured list) with the role headers
//!   `NHSD-eRS-Business-Function`, `NHSD-End-User-Organisation-ODS` and the on-behalf-of rule.
//! - Legacy professional sessions (A001 create, A002 select role, A003 delete) with
//!   `XAPI_ASID` and `HTTP_X_SESSION_KEY`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::{outcome::Reject, routes::Op, Sim};

/// Role header names of the API platform.
pub const H_BUSINESS_FUNCTION: &str = "nhsd-ers-business-function";
/// ODS code header.
pub const H_ODS: &str = "nhsd-end-user-organisation-ods";
/// On-behalf-of header.
pub const H_OBO: &str = "nhsd-ers-on-behalf-of-user-id";
/// Legacy ASID header.
pub const H_ASID: &str = "xapi_asid";
/// Legacy session header.
pub const H_SESSION: &str = "http_x_session_key";

/// The user-restricted business functions e-RS knows.
const ROLES: &[&str] = &[
    "REFERRING_CLINICIAN",
    "REFERRING_CLINICIAN_ADMIN",
    "REFERRING_ADMIN",
    "COMMISSIONER",
    "SERVICE_PROVIDER_CLINICIAN_ADMIN",
    "SERVICE_PROVIDER_CLINICIAN",
    "SERVICE_PROVIDER_ADMIN",
    "INFORMATION_ANALYST",
    "BOOKING_MANAGER",
    "ADDITIONAL_REQUIREMENTS_MANAGER",
];

/// Tokens, sessions and replay protection.
#[derive(Debug, Default)]
pub struct AuthState {
    /// App-restricted access tokens and their expiry.
    pub app_tokens: HashMap<String, tokio::time::Instant>,
    /// `jti` values already used (replay protection) with their assertion's `exp`; pruned
    /// once expired, since an expired assertion is refused anyway.
    pub seen_jti: HashMap<String, i64>,
    /// Legacy professional sessions by id.
    pub sessions: HashMap<String, Session>,
}

/// A legacy professional session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The role selected by A002 (`None` until then).
    pub permission: Option<(String, String)>,
}

/// Who is calling and in which mode.
#[derive(Debug, Clone)]
pub enum Access {
    /// Application-restricted (signed-JWT token).
    App,
    /// User-restricted (platform token or legacy session) acting in `role` at `ods`.
    User {
        /// Business function.
        role: String,
        /// ODS code of the organisation.
        ods: String,
        /// On-behalf-of SDS user id (SPCA only).
        obo: Option<String>,
    },
}

impl Access {
    /// The user's role, if user-restricted.
    pub fn role(&self) -> Option<&str> {
        match self {
            Access::App => None,
            Access::User { role, .. } => Some(role),
        }
    }
}

/// The rate-limit key of a request: its bearer token, session key or "anonymous".
pub fn client_key(headers: &HeaderMap) -> String {
    if let Some(t) = bearer(headers) {
        return format!("bearer:{t}");
    }
    if let Some(s) = header(headers, H_SESSION) {
        return format!("session:{s}");
    }
    "anonymous".to_owned()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    header(headers, "authorization")
        .and_then(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_owned()))
}

/// A header as a trimmed, non-empty string.
pub fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Works out the access mode of an API-platform request (401/400/403 on failure).
pub fn authenticate_platform(sim: &Sim, headers: &HeaderMap) -> Result<Access, Reject> {
    let Some(token) = bearer(headers) else {
        if sim.cfg.auth.require_auth {
            return Err(Reject::unauthorised(
                "missing or invalid authorization header",
            ));
        }
        return user_from_headers(headers, true);
    };
    let expiry = {
        let auth = sim.auth.lock().unwrap_or_else(|e| e.into_inner());
        auth.app_tokens.get(&token).copied()
    };
    if let Some(expiry) = expiry {
        if tokio::time::Instant::now() >= expiry {
            return Err(Reject::unauthorised("access token expired"));
        }
        for h in [H_BUSINESS_FUNCTION, H_ODS, H_OBO] {
            if headers.contains_key(h) {
                return Err(Reject::forbidden(format!(
                    "header {h} is not allowed in application-restricted mode"
                )));
            }
        }
        return Ok(Access::App);
    }
    if sim.cfg.auth.user_tokens.contains(&token) {
        return user_from_headers(headers, false);
    }
    Err(Reject::unauthorised("invalid access token"))
}

/// Reads and checks the role headers of a user-restricted request.
fn user_from_headers(headers: &HeaderMap, lenient: bool) -> Result<Access, Reject> {
    let role = header(headers, H_BUSINESS_FUNCTION);
    let ods = header(headers, H_ODS);
    let (role, ods) = match (role, ods, lenient) {
        (Some(r), Some(o), _) => (r, o),
        (r, o, true) => (
            r.unwrap_or_else(|| "SERVICE_PROVIDER_CLINICIAN".into()),
            o.unwrap_or_else(|| "R69".into()),
        ),
        (None, _, false) => {
            return Err(Reject::bad_request(
                "MISSING_HEADER",
                "Missing or Empty NHSD-eRS-Business-Function header.",
            ))
        }
        (_, None, false) => {
            return Err(Reject::bad_request(
                "MISSING_HEADER",
                "Missing or Empty NHSD-End-User-Organisation-ODS header.",
            ))
        }
    };
    if !ROLES.contains(&role.as_str()) {
        return Err(Reject::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "NO_ACCESS",
            "User does not have the required Business Function at the specified Organisation.",
        ));
    }
    let obo = header(headers, H_OBO);
    match (&obo, role == "SERVICE_PROVIDER_CLINICIAN_ADMIN") {
        (None, true) => {
            return Err(Reject::forbidden(
                "NHSD-eRS-On-Behalf-Of-User-ID is required for SERVICE_PROVIDER_CLINICIAN_ADMIN",
            ))
        }
        (Some(id), true) if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(Reject::forbidden(format!(
                "On Behalf Of User ID ({id}) is not a valid SDS user id"
            )))
        }
        (Some(id), false) => {
            return Err(Reject::forbidden(format!(
                "On Behalf Of User ID ({id}) is not permitted for Business Function ({role})"
            )))
        }
        _ => {}
    }
    Ok(Access::User { role, ods, obo })
}

/// Works out the access mode of a legacy request from its ASID and session.
pub fn authenticate_legacy(sim: &Sim, headers: &HeaderMap) -> Result<Access, Reject> {
    let session = header(headers, H_SESSION);
    if session.is_none() && !sim.cfg.auth.require_auth {
        return user_from_headers(headers, true);
    }
    check_asid(sim, headers)?;
    let Some(key) = session else {
        return Err(Reject::unauthorised("missing HTTP_X_SESSION_KEY"));
    };
    let auth = sim.auth.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s) = auth.sessions.get(&key) else {
        return Err(Reject::unauthorised(
            "unknown or deleted professional session",
        ));
    };
    match &s.permission {
        Some((role, ods)) => Ok(Access::User {
            role: role.clone(),
            ods: ods.clone(),
            obo: None,
        }),
        None => Err(Reject::forbidden(
            "professional session has no selected role (call A002 first)",
        )),
    }
}

pub(crate) fn check_asid(sim: &Sim, headers: &HeaderMap) -> Result<(), Reject> {
    match header(headers, H_ASID) {
        Some(a) if a == sim.cfg.auth.asid => Ok(()),
        Some(_) => Err(Reject::forbidden("XAPI_ASID is not recognised")),
        None => Err(Reject::forbidden("missing XAPI_ASID header")),
    }
}

/// Checks that `access` may call `op` (403 otherwise).
pub fn authorize(access: &Access, op: &Op) -> Result<(), Reject> {
    let code = op.code();
    match access {
        Access::App => {
            if matches!(code, "A014" | "A022" | "A023" | "A026" | "A027") {
                return Err(Reject::forbidden(format!(
                    "{code} is not available to application-restricted clients"
                )));
            }
            Ok(())
        }
        Access::User { role, .. } => {
            const SPC: &str = "SERVICE_PROVIDER_CLINICIAN";
            const SPCA: &str = "SERVICE_PROVIDER_CLINICIAN_ADMIN";
            const SPA: &str = "SERVICE_PROVIDER_ADMIN";
            let allowed: &[&str] = match code {
                "A013" | "A014" | "A022" | "A026" | "A027" | "A028" => &[SPC, SPCA],
                "A023" => &[SPC, SPA, SPCA],
                "A008" => &[
                    SPC,
                    SPA,
                    SPCA,
                    "REFERRING_CLINICIAN",
                    "REFERRING_CLINICIAN_ADMIN",
                    "REFERRING_ADMIN",
                ],
                _ => &[
                    SPC,
                    SPCA,
                    "REFERRING_CLINICIAN",
                    "REFERRING_CLINICIAN_ADMIN",
                ],
            };
            if allowed.contains(&role.as_str()) {
                Ok(())
            } else {
                Err(Reject::forbidden(format!(
                    "business function {role} may not call {code}"
                )))
            }
        }
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// `POST /oauth2/token`: client credentials with a signed-JWT client assertion.
pub async fn token(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("body is not a form: {e}"),
            )
        }
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is missing or invalid",
        );
    }
    if form.get("client_assertion_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing or invalid client_assertion_type - must be 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'",
        );
    }
    let Some(assertion) = form.get("client_assertion") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing client_assertion",
        );
    };
    match check_assertion(&sim, &headers, assertion) {
        Ok(()) => {}
        Err(description) => {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &description)
        }
    }
    let access_token = uuid::Uuid::new_v4().simple().to_string();
    let ttl = sim.cfg.auth.token_ttl_secs;
    {
        let mut auth = sim.auth.lock().unwrap_or_else(|e| e.into_inner());
        let now = tokio::time::Instant::now();
        auth.app_tokens.retain(|_, exp| *exp > now);
        auth.app_tokens.insert(
            access_token.clone(),
            tokio::time::Instant::now() + std::time::Duration::from_secs(ttl),
        );
    }
    Json(json!({
        "access_token": access_token,
        "expires_in": ttl.to_string(),
        "token_type": "Bearer",
        "issued_at": chrono::Utc::now().timestamp_millis().to_string(),
    }))
    .into_response()
}

/// Verifies a client assertion; the error is the `error_description`.
fn check_assertion(sim: &Sim, headers: &HeaderMap, jwt: &str) -> Result<(), String> {
    use jsonwebtoken::{decode, decode_header, Algorithm, Validation};
    let Some(key) = &sim.decoding_key else {
        return Err("no public key is registered for this application".into());
    };
    let head = decode_header(jwt).map_err(|e| format!("Malformed JWT in client_assertion: {e}"))?;
    if head.alg != Algorithm::RS512 {
        return Err("Invalid 'alg' header in client_assertion JWT - must be 'RS512'".into());
    }
    if head.kid.as_deref() != Some(sim.cfg.auth.kid.as_str()) {
        return Err("Invalid 'kid' header in client_assertion JWT - no matching public key".into());
    }
    let api_key = &sim.cfg.auth.api_key;
    let mut auds = vec![format!("{}/oauth2/token", sim.base_url)];
    if let Some(host) = header(headers, "host") {
        auds.push(format!("http://{host}/oauth2/token"));
    }
    let mut v = Validation::new(Algorithm::RS512);
    v.leeway = 0;
    v.set_audience(&auds);
    v.set_issuer(&[api_key]);
    v.sub = Some(api_key.clone());
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let data = decode::<Value>(jwt, key, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidIssuer | ErrorKind::InvalidSubject => {
                "Invalid 'iss'/'sub' claims in client_assertion JWT".to_owned()
            }
            ErrorKind::InvalidAudience => {
                "Missing or invalid 'aud' claim in client_assertion JWT".to_owned()
            }
            ErrorKind::ExpiredSignature => "client_assertion JWT has expired".to_owned(),
            ErrorKind::InvalidSignature => "Invalid signature in client_assertion JWT".to_owned(),
            other => format!("invalid client_assertion JWT: {other:?}"),
        }
    })?;
    let exp = data.claims["exp"].as_i64().unwrap_or(0);
    let now = chrono::Utc::now().timestamp();
    if exp > now + 300 + 5 {
        return Err(
            "Invalid 'exp' claim in client_assertion JWT - must be less than 5 minutes in the future"
                .into(),
        );
    }
    let Some(jti) = data.claims["jti"].as_str() else {
        return Err("Missing 'jti' claim in client_assertion JWT".into());
    };
    let mut auth = sim.auth.lock().unwrap_or_else(|e| e.into_inner());
    if auth.seen_jti.contains_key(jti) {
        return Err("Non-unique 'jti' claim in client_assertion JWT".into());
    }
    auth.seen_jti.retain(|_, e| *e >= now);
    auth.seen_jti.insert(jti.to_owned(), exp);
    Ok(())
}
