//! Referrer-side events that the provider API cannot cause, driven through admin hooks so
//! end-to-end tests can exercise what the outbound pipeline sees when a referrer acts:
//!
//! - `POST /_admin/referrals/{ubrn}/change` with `{"priority": "URGENT"}` and/or
//!   `{"letter_changed": true}`: the referrer changes the priority or the clinical
//!   information. The version and ETag are bumped, the priority extension is updated, and
//!   the worklist item's `requestContextStatus` becomes PRIORITY_CHANGED, LETTER_CHANGED or
//!   PRIORITY_AND_LETTER_CHANGED (flags accumulate). The referral stays on its worklist.
//!   `{"touch": true}` alone bumps the version with no content change (e-RS bookkeeping,
//!   such as another system's update to something no decision depends on).
//! - `POST /_admin/referrals/{ubrn}/cancel` with an optional `{"reason": "..."}`: the
//!   referrer cancels. `status` becomes `cancelled`, the state `CANCELLED_REFERRAL` (the
//!   reason as the state's `comments`), any appointment is cancelled and the version bumped.
//!   The referral leaves the worklists (they are computed from state) and A005 still
//!   returns it; provider writes on it answer 422 `INVALID_REQUEST_STATE`.
//!
//! Both answer 200 with `{"ubrn", "version", "state", "priority"}`, 404 for an unknown
//! UBRN, 400 for a bad body and 409 when the referral is already cancelled.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    state::{bump_version, now_instant, set_extension, Referral, World, SD},
    Sim,
};

/// Body of `POST /_admin/referrals/{ubrn}/change`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Change {
    /// New priority: `ROUTINE`, `URGENT` or `TWO_WEEK_WAIT`.
    pub priority: Option<String>,
    /// Whether the referrer changed the clinical information (the referral letter).
    pub letter_changed: bool,
    /// A new version with no content change (bookkeeping).
    pub touch: bool,
}

/// Body of `POST /_admin/referrals/{ubrn}/cancel`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cancel {
    /// Free-text reason, kept as the state's `comments`.
    pub reason: Option<String>,
}

const PRIORITIES: &[&str] = &["ROUTINE", "URGENT", "TWO_WEEK_WAIT"];

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// Parses an optional JSON body (empty means all defaults); the error is the 400 reply.
fn parse_body<T: for<'de> Deserialize<'de> + Default>(body: &Bytes) -> Result<T, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("invalid body: {e}"))))
}

/// The referral `ubrn` unless it is unknown (404) or cancelled (409, "referral {ubrn}
/// {cancelled}"); the error is the reply.
fn live_referral<'w>(
    w: &'w mut World,
    ubrn: &str,
    cancelled: &str,
) -> Result<&'w mut Referral, Box<Response>> {
    let Some(r) = w.referrals.get_mut(ubrn) else {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            format!("no referral {ubrn}"),
        )));
    };
    if r.state() == "CANCELLED_REFERRAL" {
        return Err(Box::new(error(
            StatusCode::CONFLICT,
            format!("referral {ubrn} {cancelled}"),
        )));
    }
    Ok(r)
}

fn summary(r: &Referral) -> Response {
    Json(json!({
        "ubrn": r.ubrn(),
        "version": r.version(),
        "state": r.state(),
        "priority": r.priority(),
        "requestContextStatus": r.context_status(),
    }))
    .into_response()
}

/// `POST /_admin/referrals/{ubrn}/change`.
pub async fn change(
    State(sim): State<Arc<Sim>>,
    Path(ubrn): Path<String>,
    body: Bytes,
) -> Response {
    let change: Change = match parse_body(&body) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if change.priority.is_none() && !change.letter_changed && !change.touch {
        return error(
            StatusCode::BAD_REQUEST,
            "give priority and/or letter_changed: true (or touch: true)",
        );
    }
    if let Some(p) = &change.priority {
        if !PRIORITIES.contains(&p.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("priority {p} must be one of {}", PRIORITIES.join(", ")),
            );
        }
    }
    let mut w = sim.world.lock().await;
    let r = match live_referral(&mut w, &ubrn, "is cancelled") {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if let Some(p) = &change.priority {
        r.set_priority(p);
        r.priority_changed = true;
    }
    apply_change(r, change.letter_changed);
    tracing::debug!(ubrn = %ubrn, version = r.version(), "referrer changed referral");
    summary(r)
}

/// A new version of the referral, with the letter changed when `letter` (the clinical
/// information's last-updated time moves), else a bookkeeping change only.
pub fn apply_change(r: &mut Referral, letter: bool) {
    if letter {
        r.letter_changed = true;
        let now = now_instant();
        set_extension(
            &mut r.resource,
            "Extension-eRS-ClinicalInfoLastUpdated-1",
            json!({"url": format!("{SD}Extension-eRS-ClinicalInfoLastUpdated-1"), "valueDateTime": now}),
        );
    }
    bump_version(&mut r.resource);
}

/// `POST /_admin/referrals/{ubrn}/cancel`.
pub async fn cancel(
    State(sim): State<Arc<Sim>>,
    Path(ubrn): Path<String>,
    body: Bytes,
) -> Response {
    let cancel: Cancel = match parse_body(&body) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let mut w = sim.world.lock().await;
    let r = match live_referral(&mut w, &ubrn, "is already cancelled") {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    r.set_state("CANCELLED_REFERRAL", None, cancel.reason.as_deref());
    r.resource["status"] = Value::from("cancelled");
    if r.appointment_status().is_some() {
        r.set_appointment_status("cancelled");
    }
    bump_version(&mut r.resource);
    tracing::debug!(ubrn = %ubrn, version = r.version(), "referrer cancelled referral");
    summary(r)
}

impl Referral {
    /// The worklist item's `requestContextStatus` code from the referrer-side change flags.
    pub fn context_status(&self) -> &'static str {
        match (self.priority_changed, self.letter_changed) {
            (true, true) => "PRIORITY_AND_LETTER_CHANGED",
            (true, false) => "PRIORITY_CHANGED",
            (false, true) => "LETTER_CHANGED",
            (false, false) => "NEVER_REVIEWED",
        }
    }
}

/// Display text of a `eRS-RequestContextStatus-1` code.
pub fn context_display(code: &str) -> &'static str {
    match code {
        "PRIORITY_AND_LETTER_CHANGED" => "Priority and Letter Changed",
        "PRIORITY_CHANGED" => "Priority Changed",
        "LETTER_CHANGED" => "Letter Changed",
        _ => "Never Reviewed",
    }
}
