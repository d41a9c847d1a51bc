//! Legacy professional sessions (deprecated e-RS API, HSCN + smartcard): A001 create
//! (`POST /ers-api/v1/ProfessionalSession`), A002 select role (`PUT …/{id}`) and A003 delete
//! (`DELETE …/{id}`), all checked against `XAPI_ASID`; the session id is then sent as
//! `HTTP_X_SESSION_KEY` ([`super::auth::authenticate_legacy`]).

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::{
    auth::{check_asid, header, Session, H_SESSION},
    outcome::Reject,
    Sim,
};

fn session_json(id: &str, permission: Option<(String, String)>) -> Value {
    let perm = |bf: &str| json!({"businessFunction": bf, "orgIdentifier": "R69", "orgName": "SIMULATED TRUST"});
    json!({
        "typeInfo": "uk.nhs.ers.xapi.dto.v1.session.ProfessionalSession",
        "id": id,
        "token": "sim-smartcard-token",
        "user": {
            "identifier": "021600556514",
            "firstName": "Sim",
            "lastName": "Clinician",
            "middleName": null,
            "permissions": [
                perm("SERVICE_PROVIDER_CLINICIAN"),
                perm("SERVICE_PROVIDER_CLINICIAN_ADMIN"),
                perm("SERVICE_PROVIDER_ADMIN"),
                perm("REFERRING_CLINICIAN"),
            ],
        },
        "permission": permission.map(|(bf, org)| json!({"businessFunction": bf, "orgIdentifier": org, "orgName": "SIMULATED TRUST"})),
    })
}

/// A001 `POST /ers-api/v1/ProfessionalSession`: creates a session without a role.
pub async fn create_session(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_asid(&sim, &headers) {
        return r.into_response();
    }
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    if parsed.as_ref().and_then(|b| b["token"].as_str()).is_none() {
        return Reject::bad_request("MISSING_VALUE", "token is required").into_response();
    }
    let id = format!("pro-xapi-session_{}", uuid::Uuid::new_v4());
    sim.auth
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .sessions
        .insert(id.clone(), Session { permission: None });
    (StatusCode::CREATED, Json(session_json(&id, None))).into_response()
}

/// A002 `PUT /ers-api/v1/ProfessionalSession/{id}`: selects one of the user's roles.
pub async fn select_role(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_asid(&sim, &headers) {
        return r.into_response();
    }
    if header(&headers, H_SESSION).as_deref() != Some(id.as_str()) {
        return Reject::unauthorised("HTTP_X_SESSION_KEY does not match the session")
            .into_response();
    }
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let bf = parsed["permission"]["businessFunction"]
        .as_str()
        .unwrap_or("");
    let org = parsed["permission"]["orgIdentifier"].as_str().unwrap_or("");
    let offered = session_json(&id, None);
    let ok = offered["user"]["permissions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["businessFunction"] == bf && p["orgIdentifier"] == org);
    if !ok {
        return Reject::forbidden(format!(
            "permission {bf}@{org} is not one of the user's permissions"
        ))
        .into_response();
    }
    let mut auth = sim.auth.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s) = auth.sessions.get_mut(&id) else {
        return Reject::unauthorised("unknown professional session").into_response();
    };
    s.permission = Some((bf.to_owned(), org.to_owned()));
    Json(session_json(&id, s.permission.clone())).into_response()
}

/// A003 `DELETE /ers-api/v1/ProfessionalSession/{id}`: ends the session.
pub async fn delete_session(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_asid(&sim, &headers) {
        return r.into_response();
    }
    let removed = sim
        .auth
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .sessions
        .remove(&id);
    match removed {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => Reject::unauthorised("unknown professional session").into_response(),
    }
}
