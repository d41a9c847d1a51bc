//! Test hooks under `/_admin/` (no auth, not rate limited):
//!
//! - `GET /` or `GET /_admin`: a plain-text page listing the UBRNs and their states.
//! - `POST /_admin/referrals` (ReferralRequest JSON) and `POST /_admin/advice`
//!   (CommunicationRequest JSON): add a resource at run time (201), or replace one whose
//!   UBRN exists when the new `meta.versionId` is higher (200; else 409).
//! - `POST /_admin/referrals/{ubrn}/change|cancel`: referrer-side events ([`super::referrer`]).
//! - `GET /_admin/stats`, `DELETE /_admin/stats`: request counters ([`super::stats`]).
//! - `GET /_admin/calls`, `DELETE /_admin/calls`: the write calls received.
//! - `POST /_admin/faults` (JSON [`Faults`]), `DELETE /_admin/faults`: injected faults.
//! - `GET /_admin/requests`: requests per second, for rate checks.
//! - `GET /_admin/polls`: every A008 call (service, list, times, `User-Agent`).

use std::{fmt::Write as _, sync::Arc};

use axum::{
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::{faults::Faults, state::version_of, Sim};

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
         POST|DELETE /_admin/faults, GET /_admin/requests, GET /_admin/polls, GET|DELETE /_admin/stats, \
         POST /_admin/referrals/{{ubrn}}/change, POST /_admin/referrals/{{ubrn}}/cancel \
         (see docs/simulator.md)"
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

/// Which kind of resource an admin upsert is for.
#[derive(Clone, Copy)]
enum Kind {
    Referral,
    Advice,
}

/// Adds a resource, or replaces an existing one only when its `meta.versionId` is higher
/// than the current version (a resource without a version counts as version 1).
async fn upsert(sim: &Sim, kind: Kind, body: &Bytes) -> Response {
    let v = match parse(body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let mut w = sim.world.lock().await;
    let ubrn = v["id"].as_str().unwrap_or("").to_owned();
    let new_version = match version_of(&v) {
        0 => 1,
        n => n,
    };
    let current = match kind {
        Kind::Referral => w.referrals.get(&ubrn).map(|r| r.version()),
        Kind::Advice => w.advice.get(&ubrn).map(|a| a.version()),
    };
    if let Some(current) = current {
        if new_version <= current {
            return (
                StatusCode::CONFLICT,
                Json(json!({"error": format!(
                    "{ubrn} exists at version {current}; a replacement needs a higher meta.versionId, got {new_version}"
                )})),
            )
                .into_response();
        }
    }
    let inserted = match kind {
        Kind::Referral => w.insert_referral(v),
        Kind::Advice => w.insert_advice(v),
    };
    match inserted {
        Ok(ubrn) => {
            let status = if current.is_some() {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            (
                status,
                Json(json!({"ubrn": ubrn, "replaced": current.is_some()})),
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

/// `POST /_admin/referrals`.
pub async fn add_referral(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    upsert(&sim, Kind::Referral, &body).await
}

/// `POST /_admin/advice`.
pub async fn add_advice(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    upsert(&sim, Kind::Advice, &body).await
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

/// `GET /_admin/polls`: every A008 call (the last 20,000) with its service, list, times
/// and `User-Agent`.
pub async fn polls(State(sim): State<Arc<Sim>>) -> Response {
    let t = sim.traffic.lock().unwrap_or_else(|e| e.into_inner());
    Json(t.polls.iter().collect::<Vec<_>>()).into_response()
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
