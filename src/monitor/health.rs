//! `/health/live` (fails once a pipeline task has died: restart the process),
//! `/health/ready` (the broker connected, the store writable, e-RS accepting the bridge's
//! credentials; the JSON body says which part fails) and `/metrics` (the event hub's
//! families; the store-backed gauges are set by the alert evaluation). All open, no token.

use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::MonitorState;

/// The pipeline tasks that stopped while the bridge was meant to be running.
#[derive(Debug, Default)]
pub struct Liveness {
    dead: Mutex<Vec<String>>,
}

impl Liveness {
    /// Records that a task stopped before shutdown.
    pub fn task_died(&self, what: &str) {
        self.dead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what.to_string());
    }

    /// The tasks that died, empty when all are alive.
    pub fn dead(&self) -> Vec<String> {
        self.dead.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub async fn live(State(s): State<MonitorState>) -> Response {
    let dead = s.liveness.dead();
    if dead.is_empty() {
        (StatusCode::OK, Json(json!({"live": true}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"live": false, "dead_tasks": dead})),
        )
            .into_response()
    }
}

/// Each part checked with a short timeout, so a hung broker cannot hang the probe.
pub async fn ready(State(s): State<MonitorState>) -> Response {
    let t = Duration::from_secs(2);
    let broker = match tokio::time::timeout(t, s.pas.ensure_connected()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(match e.refusal() {
            Some(fix) => format!("{e} ({fix})"),
            None => e.to_string(),
        }),
        Err(_) => Err("no answer from the broker within 2s".into()),
    };
    let now = chrono::Utc::now().timestamp_millis().to_string();
    let store =
        match tokio::time::timeout(t, s.store.set_state_value("monitor.ready_probe", &now)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the store did not take a write within 2s".into()),
        };
    let ers = if s.events.metrics().ers_auth_failing.get() == 0 {
        Ok(())
    } else {
        Err("e-RS refuses the bridge's credentials (401/403)".to_string())
    };
    let part = |r: &Result<(), String>| match r {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e}),
    };
    let ok = broker.is_ok() && store.is_ok() && ers.is_ok();
    // Not a readiness check: an instance that leads nothing is still ready to.
    let held = s.cluster.held_names();
    let body = json!({
        "ready": ok,
        "checks": {"broker": part(&broker), "store": part(&store), "ers_auth": part(&ers)},
        "instance": {
            "id": s.cluster.instance_id(),
            "holder": s.cluster.holder(),
            "live_instances": s.cluster.live_instances(),
            "holds_anything": !held.is_empty(),
            "claims": held.iter().filter(|n| n.starts_with("ubrn:")).count(),
            "leases": held.iter().filter(|n| !n.starts_with("ubrn:")).collect::<Vec<_>>(),
        },
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// The exposition only: the store-backed gauges are set by the alert evaluation every
/// `[alerts] evaluate_secs`, so a scrape costs no store query. OpenMetrics when the
/// scraper asks for it (`Accept: application/openmetrics-text`, as Prometheus does), else
/// the Prometheus text format 0.0.4 that every consumer reads.
pub async fn metrics(State(s): State<MonitorState>, headers: header::HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            s.events.encode(),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            s.events.metrics().encode_prometheus_text(),
        )
            .into_response()
    }
}

/// What the dashboard's health strip shows: the broker (or MLLP link), e-RS (credentials
/// accepted, last 2xx answer), the store (it answered this read) and each worklist's last
/// successful poll, with a list e-RS refuses for good named with its answer.
pub async fn health_view(s: &MonitorState) -> Result<serde_json::Value, crate::store::StoreError> {
    let m = s.events.metrics();
    let polled = s.store.last_polls().await?;
    let refused = s.store.lists_refused().await?;
    let mut polls: std::collections::BTreeMap<(String, String), serde_json::Value> = polled
        .into_iter()
        .map(|((service, list), ms)| {
            let v = json!({"service": service, "list": list, "last_ms": ms, "refused": null});
            ((service, list), v)
        })
        .collect();
    for r in refused {
        let e = polls
            .entry((r.service.clone(), r.list.clone()))
            .or_insert_with(|| json!({"service": r.service, "list": r.list, "last_ms": null}));
        e["refused"] = json!(r.error);
    }
    let connected = s.pas.is_connected().await;
    let refused_login = m.broker_refused.get() == 1;
    let last_ers = m.last_ers_success.get();
    Ok(json!({
        "broker": {
            "what": s.pas.describe(),
            "ok": connected && !refused_login,
            "connected": connected,
            "refused": refused_login,
        },
        "ers": {
            "auth_ok": m.ers_auth_failing.get() == 0,
            "last_success_ms": (last_ers > 0).then_some(last_ers * 1000),
        },
        "store": {"ok": true},
        "polls": polls.into_values().collect::<Vec<_>>(),
    }))
}
