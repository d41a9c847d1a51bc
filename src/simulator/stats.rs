//! Request statistics for `GET /_admin/stats` (and `DELETE /_admin/stats` to reset):
//! counts of e-RS calls by operation id (`A004`, `A005`, `A008`, …, `A001`–`A003` for
//! legacy sessions, `TOKEN` for `/oauth2/token`, `OBJECT_STORE` for A042 download links,
//! `UNKNOWN` for FHIR paths that are no operation), by HTTP status, and the 429s issued
//! by cause, so tests and demos can print "e-RS calls by operation" and assert that no
//! rate limit was provoked. Admin calls and `GET /` are not counted.
//!
//! Counting is an axum middleware around the whole router, so every reply is counted
//! once with its final status, whichever layer produced it.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    extract::{Request, State},
    http::Method,
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;

use super::{
    routes::{Flavor, Op},
    Sim,
};

/// Counters since start (or the last reset).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// Calls counted.
    pub total: u64,
    /// Calls per operation id.
    pub by_operation: BTreeMap<String, u64>,
    /// Calls per HTTP status code.
    pub by_status: BTreeMap<u16, u64>,
    /// Calls per operation id and status code.
    pub by_operation_status: BTreeMap<String, BTreeMap<u16, u64>>,
    /// All 429 replies, whatever the cause.
    pub too_many_requests: u64,
    /// 429s from the per-client per-second rate limit (a client going too fast).
    pub rate_limited: u64,
    /// 429s from the app-restricted A008 daily budget per service.
    pub worklist_budget_exceeded: u64,
    /// 423s injected by the `locked_rate` fault.
    pub locked: u64,
    /// Object-store downloads (behind A042's redirect) that carried any of e-RS's
    /// credentials or context headers (`Authorization`, `NHSD-*`, `apikey`,
    /// `X-Correlation-ID`): the object store is another party, and a client must send it
    /// nothing of ours (issue 21). Should stay 0.
    pub object_store_with_credentials: u64,
    /// Successful reads answered with a corrupted body (the `corrupt_rate` fault).
    pub corrupted_bodies: u64,
}

/// Whether a request to the object store carries anything meant for e-RS only.
fn carries_credentials(headers: &axum::http::HeaderMap) -> bool {
    headers.keys().any(|k| {
        let k = k.as_str();
        k == "authorization" || k == "apikey" || k == "x-correlation-id" || k.starts_with("nhsd-")
    })
}

/// Which statistics key a request path belongs to; `None` for uncounted paths.
pub fn classify(method: &Method, path: &str) -> Option<String> {
    if let Some(rest) = path.strip_prefix("/referrals/FHIR/") {
        return Some(op_key(Op::parse(Flavor::Platform, method, rest)));
    }
    if let Some(rest) = path.strip_prefix("/ers-api/STU3/v1/") {
        return Some(op_key(Op::parse(Flavor::Legacy, method, rest)));
    }
    if path.starts_with("/ers-api/v1/ProfessionalSession") {
        let code = match *method {
            Method::POST => "A001",
            Method::PUT => "A002",
            Method::DELETE => "A003",
            _ => "UNKNOWN",
        };
        return Some(code.to_owned());
    }
    if path == "/oauth2/token" {
        return Some("TOKEN".to_owned());
    }
    if path.starts_with("/_objectstore/") {
        return Some("OBJECT_STORE".to_owned());
    }
    if path.starts_with("/ers-api/") || path.starts_with("/referrals/") {
        return Some("UNKNOWN".to_owned());
    }
    None
}

fn op_key(op: Option<Op>) -> String {
    op.map_or("UNKNOWN", |o| o.code()).to_owned()
}

/// Middleware counting every reply by operation and status.
pub async fn count(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let key = classify(req.method(), req.uri().path());
    if key.as_deref() == Some("OBJECT_STORE") && carries_credentials(req.headers()) {
        let mut s = sim.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.object_store_with_credentials += 1;
    }
    let resp = next.run(req).await;
    if let Some(key) = key {
        let status = resp.status().as_u16();
        let mut s = sim.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.total += 1;
        *s.by_operation.entry(key.clone()).or_default() += 1;
        *s.by_status.entry(status).or_default() += 1;
        *s.by_operation_status
            .entry(key)
            .or_default()
            .entry(status)
            .or_default() += 1;
        if status == 429 {
            s.too_many_requests += 1;
        }
    }
    resp
}

/// Adds one to a cause counter (`rate_limited`, `worklist_budget_exceeded`, `locked`).
pub fn note(sim: &Sim, f: impl FnOnce(&mut Stats)) {
    f(&mut sim.stats.lock().unwrap_or_else(|e| e.into_inner()));
}

/// `GET /_admin/stats`.
pub async fn get(State(sim): State<Arc<Sim>>) -> Response {
    let stats = sim.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let clients = sim
        .traffic
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .rate_windows();
    let mut v = serde_json::to_value(&stats).unwrap_or_default();
    v["rate_limit_clients"] = clients.into();
    Json(v).into_response()
}

/// `DELETE /_admin/stats`.
pub async fn reset(State(sim): State<Arc<Sim>>) -> axum::http::StatusCode {
    *sim.stats.lock().unwrap_or_else(|e| e.into_inner()) = Stats::default();
    axum::http::StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(
            classify(&get, "/referrals/FHIR/STU3/ReferralRequest/000000070001").as_deref(),
            Some("A005")
        );
        assert_eq!(
            classify(&post, "/ers-api/STU3/v1/ReferralRequest/$ers.fetchworklist").as_deref(),
            Some("A008")
        );
        assert_eq!(
            classify(&Method::PUT, "/ers-api/v1/ProfessionalSession/x").as_deref(),
            Some("A002")
        );
        assert_eq!(classify(&post, "/oauth2/token").as_deref(), Some("TOKEN"));
        assert_eq!(
            classify(&get, "/referrals/FHIR/STU3/Nope").as_deref(),
            Some("UNKNOWN")
        );
        assert_eq!(classify(&get, "/_admin/stats"), None);
        assert_eq!(classify(&get, "/"), None);
    }
}
