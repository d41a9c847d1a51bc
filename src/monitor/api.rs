//! The JSON API behind a bearer token (`Authorization: Bearer …`, compared in constant
//! time; a 401 says nothing more): the dashboard's summary, a referral's timeline, the
//! message search, the parked / needs-action / dead-letter / alert lists, the replay of one
//! referral or of a filtered set (under new control ids linked to the originals, with a
//! dry run) and the re-drive of a dead letter, each recorded with the token's name.

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::{actions, MonitorState};
use crate::events::StatusClass;
use crate::ids::Ubrn;
use crate::store::{SearchFilter, StoreError};

/// The name of the token a request came with.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// Lets a request through only with one of the configured tokens.
pub async fn require_token(
    State(s): State<MonitorState>,
    mut req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .as_bytes()
        .to_vec();
    // Every token is compared (no early exit), each in constant time.
    let mut who = None;
    for t in s.tokens.iter() {
        let matches: bool = t.secret.expose_secret().as_bytes().ct_eq(&presented).into();
        if matches && !presented.is_empty() {
            who = Some(t.name.clone());
        }
    }
    match who {
        Some(name) => {
            req.extensions_mut().insert(Caller(name));
            next.run(req).await
        }
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
        )
            .into_response(),
    }
}

/// A store failure as a 500 whose body names the operation (never data).
pub(super) fn failed(e: StoreError) -> Response {
    tracing::warn!(error = %e, "monitor api query failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": e.to_string()})),
    )
        .into_response()
}

fn bad_request(why: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": why}))).into_response()
}

/// What the dashboard's first screen shows.
pub async fn summary(State(s): State<MonitorState>) -> Response {
    let store = &s.store;
    let now = chrono::Utc::now().timestamp_millis();
    let result = async {
        let flow = store.flow(now).await?;
        let published = store.published_counts().await?;
        let mut inbound = serde_json::Map::new();
        for (status, _, _, n) in store.inbound_counts().await? {
            let e = inbound.entry(status.as_str()).or_insert(json!(0));
            *e = json!(e.as_i64().unwrap_or(0) + n);
        }
        let facts = store.facts(now).await?;
        let alerts = store.open_alerts().await?;
        let health = super::health::health_view(&s).await?;
        let (code_misses, code_misses_total) = store.code_misses(20).await?;
        let queues =
            super::alerts::queue_depths(&s.pas, &s.queues, &s.events).await;
        Ok::<_, StoreError>(json!({
            "health": health,
            "code_misses": code_misses,
            "code_misses_total": code_misses_total,
            "queues": queues,
            "now_ms": now,
            "flow": flow,
            "published_by_type": published.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
            "inbound_by_status": inbound,
            "needs_action_open": facts.needs_action_open,
            "oldest_needs_action_ms": facts.oldest_needs_action_ms,
            "parked_open": facts.parked_open,
            "dead_letters": facts.dead_letters_waiting,
            "alerts_open": alerts,
            "oldest_awaiting_decision_ms": facts.oldest_awaiting_decision_ms,
            "ers_calls": ers_calls(&s),
        }))
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => failed(e),
    }
}

/// e-RS calls by status class, from the metrics (what the process saw since it started).
fn ers_calls(s: &MonitorState) -> Value {
    let m = s.events.metrics();
    let by_class: serde_json::Map<String, Value> = StatusClass::ALL
        .iter()
        .map(|c| {
            (
                c.as_str().to_string(),
                m.ers_calls_by_class[*c as usize].get(),
            )
        })
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| (c, json!(n)))
        .collect();
    json!({"by_status_class": by_class, "rate_limited": m.ers_rate_limited.get()})
}

pub async fn timeline(State(s): State<MonitorState>, Path(ubrn): Path<String>) -> Response {
    let Ok(ubrn) = Ubrn::parse(&ubrn) else {
        return bad_request("not a UBRN (12 digits)");
    };
    match s.store.timeline(&ubrn).await {
        Ok(t) => Json(json!({"ubrn": ubrn.to_string(), "stages": t})).into_response(),
        Err(e) => failed(e),
    }
}

pub async fn search(State(s): State<MonitorState>, Query(f): Query<SearchFilter>) -> Response {
    match s.store.search(&f).await {
        Ok(p) => Json(p).into_response(),
        Err(StoreError::Decode { .. }) => bad_request("bad cursor: use the previous page's next"),
        Err(e) => failed(e),
    }
}

pub async fn parked(State(s): State<MonitorState>) -> Response {
    match s.store.parked().await {
        Ok(items) => Json(
            items
                .iter()
                .map(|p| {
                    json!({"ubrn": p.ubrn.to_string(), "version": p.version.as_i64(),
                           "reason": p.reason, "parked_at_ms": p.parked_at_ms})
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => failed(e),
    }
}

pub async fn needs_action(State(s): State<MonitorState>) -> Response {
    match s.store.inbound_needing_action().await {
        Ok(items) => Json(
            items
                .iter()
                .map(actions::needs_action_view)
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => failed(e),
    }
}

/// The body of a resolve: what the person did (kept with the record and the audit).
#[derive(Debug, serde::Deserialize)]
pub struct ResolveBody {
    pub note: String,
}

fn not_open(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": format!("{id} is not an open needs-action record")})),
    )
        .into_response()
}

/// Closes a needs-action record with the caller's note (a person dealt with it in e-RS),
/// recorded as theirs.
pub async fn resolve_needs_action(
    State(s): State<MonitorState>,
    Extension(Caller(who)): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<ResolveBody>,
) -> Response {
    let Ok(control_id) = crate::ids::ControlId::parse(&id) else {
        return bad_request("not a control id (MSH-10)");
    };
    let note = body.note.trim();
    if note.is_empty() {
        return bad_request("a note saying what was done is required");
    }
    let now = chrono::Utc::now().timestamp_millis();
    match actions::resolve_needs_action(&s.store, &control_id, note, &who, now).await {
        Ok(true) => Json(json!({"resolved": id, "by": who, "at_ms": now})).into_response(),
        Ok(false) => not_open(&id),
        Err(e) => failed(e),
    }
}

/// Puts a needs-action record back to be tried now: the running bridge's retry loop takes
/// it from the store (recorded as the caller's).
pub async fn retry_needs_action(
    State(s): State<MonitorState>,
    Extension(Caller(who)): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let Ok(control_id) = crate::ids::ControlId::parse(&id) else {
        return bad_request("not a control id (MSH-10)");
    };
    let now = chrono::Utc::now().timestamp_millis();
    match actions::retry_needs_action(&s.store, &control_id, &who, now).await {
        Ok(true) => Json(json!({"queued": id, "by": who, "at_ms": now})).into_response(),
        Ok(false) => not_open(&id),
        Err(e) => failed(e),
    }
}

/// Every code-table miss (most recently seen first, at most 1,000) and how many in all.
pub async fn code_misses(State(s): State<MonitorState>) -> Response {
    match s.store.code_misses(1000).await {
        Ok((items, total)) => Json(json!({"items": items, "total": total})).into_response(),
        Err(e) => failed(e),
    }
}

pub async fn dead_letters(State(s): State<MonitorState>) -> Response {
    match s.store.dead_letters(200).await {
        Ok(items) => Json(items).into_response(),
        Err(e) => failed(e),
    }
}

pub async fn alerts(State(s): State<MonitorState>) -> Response {
    match s.store.open_alerts().await {
        Ok(items) => Json(items).into_response(),
        Err(e) => failed(e),
    }
}

/// The bridges sharing this store: each process seen in the last hour with its
/// heartbeat (live when within the lease time), the leases held now and by whom, and
/// which process answered.
pub async fn cluster(State(s): State<MonitorState>) -> Response {
    let c = &s.cluster;
    let instances = match s.store.instances(3_600_000).await {
        Ok(i) => i,
        Err(e) => return failed(e),
    };
    let leases = match s.store.leases().await {
        Ok(l) => l,
        Err(e) => return failed(e),
    };
    let live_ms = i64::try_from(c.live_window().as_millis()).unwrap_or(i64::MAX);
    let instances: Vec<_> = instances
        .into_iter()
        .map(|i| {
            let held: Vec<&str> = leases
                .iter()
                .filter(|l| l.holder == i.holder)
                .map(|l| l.name.as_str())
                .collect();
            json!({
                "holder": i.holder,
                "instance": i.instance,
                "host": i.host,
                "pid": i.pid,
                "version": i.version,
                "started_ms": i.started_ms,
                "heartbeat_ms": i.heartbeat_ms,
                "heartbeat_age_ms": i.now_ms - i.heartbeat_ms,
                "live": i.left_ms.is_none() && i.now_ms - i.heartbeat_ms < live_ms,
                "left_ms": i.left_ms,
                "claims": held.iter().filter(|n| n.starts_with("ubrn:")).count(),
                "leases": held.iter().filter(|n| !n.starts_with("ubrn:")).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({
        "this": {"instance": c.instance_id(), "holder": c.holder(), "shared_store": c.is_shared(),
                 "calls_per_sec": c.rate_share(), "live_instances": c.live_instances()},
        "instances": instances,
        "leases": leases.iter().filter(|l| !l.name.starts_with("ubrn:")).collect::<Vec<_>>(),
        "claims_held": leases.iter().filter(|l| l.name.starts_with("ubrn:")).count(),
    }))
    .into_response()
}

/// Sends a dead letter's body back to the inbound queue once (a second re-drive of the
/// same one is refused), recording who did it.
pub async fn redrive(
    State(s): State<MonitorState>,
    Extension(Caller(who)): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    use super::actions::{redrive, RedriveError};
    let now = chrono::Utc::now().timestamp_millis();
    let Some(publisher) = s.pas.broker() else {
        return (
            StatusCode::CONFLICT,
            Json(json!({"error": "a re-drive puts the message back on the inbound queue: this bridge has no broker"})),
        )
            .into_response();
    };
    match redrive(&s.store, publisher, &s.inbound_queue, &id, &who, now).await {
        Ok(()) => Json(json!({"redriven": id, "by": who, "at_ms": now})).into_response(),
        Err(RedriveError::Store(e)) => failed(e),
        Err(e) => {
            let code = match e {
                RedriveError::NotFound(_) => StatusCode::NOT_FOUND,
                RedriveError::Broker(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::CONFLICT,
            };
            (code, Json(json!({"error": e.to_string()}))).into_response()
        }
    }
}

/// `?dry_run=true` on the replay endpoints: say what would be replayed, publish nothing.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct DryRun {
    pub dry_run: bool,
}

/// Replays one referral's latest version under new control ids.
pub async fn replay_one(
    State(s): State<MonitorState>,
    Extension(Caller(who)): Extension<Caller>,
    Path(ubrn): Path<String>,
    Query(q): Query<DryRun>,
) -> Response {
    let Ok(ubrn) = Ubrn::parse(&ubrn) else {
        return bad_request("not a UBRN (12 digits)");
    };
    let results = actions::replay(&s.outbound, &s.store, &who, &[ubrn], q.dry_run).await;
    Json(json!({"dry_run": q.dry_run, "results": results})).into_response()
}

/// Replays every referral with an outbound message matching the filter (the search's
/// fields; at most 500 referrals per request).
pub async fn replay_filtered(
    State(s): State<MonitorState>,
    Extension(Caller(who)): Extension<Caller>,
    Query(q): Query<DryRun>,
    Json(f): Json<SearchFilter>,
) -> Response {
    let ubrns = match actions::ubrns_matching(&s.store, &f).await {
        Ok(u) => u,
        Err(StoreError::Decode { .. }) => return bad_request("bad cursor"),
        Err(e) => return failed(e),
    };
    let results = actions::replay(&s.outbound, &s.store, &who, &ubrns, q.dry_run).await;
    Json(json!({"dry_run": q.dry_run, "results": results})).into_response()
}
