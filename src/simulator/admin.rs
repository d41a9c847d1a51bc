//! Test hooks under `/_admin/` (no auth, not rate limited):
//!
//! - `GET /` or `GET /_admin`: a plain-text page listing the UBRNs and their states.
//! - `POST /_admin/referrals` (ReferralRequest JSON) and `POST /_admin/advice`
//!   (CommunicationRequest JSON): add or replace a resource at run time (201).
//! - `GET /_admin/calls`, `DELETE /_admin/calls`: the write calls received.
//! - `POST /_admin/faults` (JSON [`Faults`]), `DELETE /_admin/faults`: injected faults.
//! - `GET /_admin/requests`: requests per second, for rate checks.

use std::{fmt::Write as _, sync::Arc};

use axum::{
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::{faults::Faults, Sim};

/// `GET /`: what is seeded and how to use the hooks.
pub async fn index(State(sim): State<Arc<Sim>>) -> Response {
    let w = sim.world.lock().await;
    let mut page = String::new();
    let base = &sim.base_url;
    let _ = writeln!(page, "e-RS simulator at {base}\n");
    let _ = writeln!(page, "STU3 base:   {base}/referrals/FHIR/STU3");
    let _ = writeln!(page, "legacy base: {base}/ers-api/STU3/v1");
    let _ = writeln!(page, "token URL:   {base}/oauth2/token\n");
    let _ = writeln!(page, "referrals ({}):", w.referrals.len());
    for (u, r) in &w.referrals {
        let (sid, sname) = r.service();
        let _ = writeln!(
            page,
            "  {u}  v{}  {}{}  {}  service {sid} {sname}",
            r.version(),
            r.state(),
            if r.accepted { " (accepted)" } else { "" },
            r.priority()
        );
    }
    let _ = writeln!(page, "\nadvice and guidance requests ({}):", w.advice.len());
    for (u, a) in &w.advice {
        let _ = writeln!(
            page,
            "  {u}  v{}  {}  service {}",
            a.version(),
            a.category(),
            a.service()
        );
    }
    let _ = writeln!(
        page,
        "\nadmin: POST /_admin/referrals, POST /_admin/advice, GET|DELETE /_admin/calls, \
         POST|DELETE /_admin/faults, GET /_admin/requests (see docs/simulator.md)"
    );
    page.into_response()
}

fn parse(body: &Bytes) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("body is not JSON: {e}")})),
            )
                .into_response(),
        )
    })
}

/// `POST /_admin/referrals`.
pub async fn add_referral(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let v = match parse(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match sim.world.lock().await.insert_referral(v) {
        Ok(ubrn) => (StatusCode::CREATED, Json(json!({"ubrn": ubrn}))).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

/// `POST /_admin/advice`.
pub async fn add_advice(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let v = match parse(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match sim.world.lock().await.insert_advice(v) {
        Ok(ubrn) => (StatusCode::CREATED, Json(json!({"ubrn": ubrn}))).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

/// `GET /_admin/calls`.
pub async fn calls(State(sim): State<Arc<Sim>>) -> Response {
    Json(sim.world.lock().await.calls.clone()).into_response()
}

/// `DELETE /_admin/calls`.
pub async fn clear_calls(State(sim): State<Arc<Sim>>) -> StatusCode {
    sim.world.lock().await.calls.clear();
    StatusCode::NO_CONTENT
}

/// `POST /_admin/faults`: replaces the faults (fields left out are 0).
pub async fn set_faults(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("invalid faults: {e}")})),
            )
                .into_response()
        }
    };
    let mut t = sim.traffic.lock().unwrap_or_else(|e| e.into_inner());
    t.set_faults(faults);
    Json(t.faults.clone()).into_response()
}

/// `DELETE /_admin/faults`.
pub async fn reset_faults(State(sim): State<Arc<Sim>>) -> StatusCode {
    sim.traffic
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .set_faults(Faults::default());
    StatusCode::NO_CONTENT
}

/// `GET /_admin/requests`: `[{"second": s, "count": n}]`, seconds since start.
pub async fn requests(State(sim): State<Arc<Sim>>) -> Response {
    let t = sim.traffic.lock().unwrap_or_else(|e| e.into_inner());
    let v: Vec<Value> = t
        .per_second
        .iter()
        .map(|(s, n)| json!({"second": s, "count": n}))
        .collect();
    Json(v).into_response()
}
