//! Injected faults (latency, 500s, 503s with `Retry-After`, 429s, hung requests, attachments
//! kept `PENDING`) set through `/_admin/faults`, and the per-client rate limit (more than
//! `rate_limit_per_sec` requests in one second → 429) with per-second request counts for
//! `/_admin/requests`. Time is tokio time so paused-clock tests can advance it.
//!
//! For long runs the per-client windows are pruned whenever a new second starts (only
//! the current second's windows matter), and the A008 budget keeps only today's counts.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{outcome::Reject, Sim};

/// Faults applied to every e-RS call (not to admin, token or object-store calls).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Fixed extra latency per request.
    pub latency_ms: u64,
    /// Random extra latency, uniform in `0..=latency_jitter_ms`.
    pub latency_jitter_ms: u64,
    /// Share of requests answered 500.
    pub error_500_rate: f64,
    /// Share of requests answered 503 with `Retry-After`.
    pub error_503_rate: f64,
    /// `Retry-After` seconds on injected 503s (0 is sent as 1).
    pub retry_after_secs: u64,
    /// Share of requests answered 429.
    pub error_429_rate: f64,
    /// Share of requests that hang (an hour) until the client gives up.
    pub hang_rate: f64,
    /// Attachments answer 422 `PENDING` for this many seconds after the faults are set.
    pub attachments_pending_secs: u64,
    /// Share of writes (A013, A014, A022, A026, A027, A028) answered 423 Locked, as e-RS
    /// does when another user or system is updating the same resource.
    pub locked_rate: f64,
    /// The next this-many writes are applied but answered 502, as if the response was lost
    /// on the way back (the client cannot tell whether the write happened).
    pub lose_write_responses: u32,
    /// Writes are applied (and logged) at once but answered only after this many
    /// milliseconds: the window in which a bridge can be killed after e-RS changed state
    /// and before it recorded the result.
    pub hold_write_responses_ms: u64,
    /// The next this-many writes find the referral changed by someone else just before
    /// they arrive (a new version, so their `If-Match` answers 409): a bookkeeping change,
    /// or the referral letter when `change_before_writes_letter`.
    pub change_before_writes: u32,
    /// See `change_before_writes`.
    pub change_before_writes_letter: bool,
    /// A008 for these services answers 422 `INVALID_VALUE` for good, as e-RS does for a
    /// service the application may not read: a worklist refused, not an outage.
    pub refuse_worklist_services: Vec<String>,
    /// Share of successful reads answered with a corrupted body instead (issue 21), one of
    /// [`CORRUPTIONS`] at random: truncated JSON, `meta.versionId` missing, fields of the
    /// wrong type, an HTML page.
    pub corrupt_rate: f64,
    /// The operations `corrupt_rate` applies to (e-RS codes such as `A005`); empty: A005
    /// and A008.
    pub corrupt_ops: Vec<String>,
    /// A008 answers padded with this many MiB of extra JSON (a worklist over the client's
    /// size cap).
    pub worklist_pad_mib: u64,
    /// Every attachment (A006, and the object store behind A042) served this many MiB
    /// larger than its content: A006 refuses it over 5 MB as e-RS does, and the object
    /// store sends it whole, over a client's `max_attachment_bytes` when large enough.
    pub attachment_pad_mib: u64,
}

/// The ways [`mutate`] corrupts a body, in the order of its random pick.
pub const CORRUPTIONS: [&str; 4] = ["truncated", "no-version", "wrong-types", "html"];

/// Takes one "changed before the write" from the fault's budget: `Some(letter)` when this
/// write is to find the referral changed.
pub fn take_change_before_write(sim: &Sim) -> Option<bool> {
    let mut t = sim.traffic.lock().unwrap_or_else(|e| e.into_inner());
    if t.faults.change_before_writes > 0 {
        t.faults.change_before_writes -= 1;
        Some(t.faults.change_before_writes_letter)
    } else {
        None
    }
}

/// Takes one "response lost" from the fault's budget; true when this write's response is
/// to be lost.
pub fn take_lost_response(sim: &Sim) -> bool {
    let mut t = sim.traffic.lock().unwrap_or_else(|e| e.into_inner());
    if t.faults.lose_write_responses > 0 {
        t.faults.lose_write_responses -= 1;
        true
    } else {
        false
    }
}

/// How long an applied write's response is held back.
pub fn write_hold(sim: &Sim) -> Duration {
    let t = sim.traffic.lock().unwrap_or_else(|e| e.into_inner());
    Duration::from_millis(t.faults.hold_write_responses_ms)
}

/// Mutable traffic state: faults, rate-limit windows and counters.
#[derive(Debug, Default)]
pub struct Traffic {
    /// The faults in force.
    pub faults: Faults,
    /// When attachments stop being `PENDING` (set from `attachments_pending_secs`).
    pub pending_until: Option<tokio::time::Instant>,
    /// Per client: (second index, requests in that second). Only windows of the current
    /// second are kept ([`Traffic::prune`]).
    windows: HashMap<String, (u64, u32)>,
    /// The second index windows were last pruned at.
    pruned_at: u64,
    /// Requests per second index since start, for `/_admin/requests`.
    pub per_second: BTreeMap<u64, u32>,
    /// App-restricted A008 calls per (day index, service id).
    pub worklist_calls: HashMap<(u64, String), u32>,
    /// Every A008 call, oldest first (the last [`MAX_POLLS`]), for `/_admin/polls`.
    pub polls: std::collections::VecDeque<PollRecord>,
}

/// How many A008 calls `/_admin/polls` keeps.
pub const MAX_POLLS: usize = 20_000;

/// One A008 call: when it started and ended (wall clock, ms), which service and list it
/// asked for, and the client's `User-Agent` (which names the bridge instance), so a test
/// can check that one instance at a time polls each list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PollRecord {
    pub started_ms: i64,
    pub ended_ms: i64,
    pub service: String,
    pub list: String,
    pub agent: String,
}

impl PollRecord {
    /// `(service, list, user agent)` of an A008 request.
    pub fn describe(headers: &axum::http::HeaderMap, body: &[u8]) -> (String, String, String) {
        let agent = headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let parsed: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let (mut service, mut list) = (String::new(), String::new());
        for p in parsed["parameter"].as_array().into_iter().flatten() {
            match p["name"].as_str() {
                Some("listType") => {
                    list = p["valueCodeableConcept"]["coding"][0]["code"]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                }
                Some("service") => {
                    service = p["valueIdentifier"]["value"]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                }
                _ => {}
            }
        }
        (service, list, agent)
    }
}

/// Appends to the A008 log, dropping the oldest beyond [`MAX_POLLS`].
pub fn log_poll(sim: &Sim, record: PollRecord) {
    let mut t = sim.traffic.lock().unwrap_or_else(|e| e.into_inner());
    if t.polls.len() >= MAX_POLLS {
        t.polls.pop_front();
    }
    t.polls.push_back(record);
}

impl Traffic {
    /// Replaces the faults.
    pub fn set_faults(&mut self, faults: Faults) {
        self.pending_until = (faults.attachments_pending_secs > 0).then(|| {
            tokio::time::Instant::now() + Duration::from_secs(faults.attachments_pending_secs)
        });
        self.faults = faults;
    }

    /// Number of clients with a live rate-limit window (for `/_admin/stats`).
    pub fn rate_windows(&self) -> usize {
        self.windows.len()
    }

    /// Drops rate-limit windows of past seconds and A008 budgets of past days, once per
    /// new second.
    pub fn prune(&mut self, second: u64) {
        if second == self.pruned_at {
            return;
        }
        self.pruned_at = second;
        self.windows.retain(|_, w| w.0 == second);
        let day = second / 86_400;
        self.worklist_calls.retain(|(d, _), _| *d == day);
    }

    /// Whether attachments are currently forced to `PENDING`.
    pub fn attachments_pending(&self) -> bool {
        self.pending_until
            .is_some_and(|t| tokio::time::Instant::now() < t)
    }
}

/// Counts the request and applies the per-client rate limit.
pub fn check_rate(sim: &Sim, client: &str) -> Result<(), Reject> {
    let second = sim.started.elapsed().as_secs();
    let mut t = sim.traffic.lock().unwrap_or_else(|e| e.into_inner());
    *t.per_second.entry(second).or_default() += 1;
    while t.per_second.len() > 600 {
        t.per_second.pop_first();
    }
    t.prune(second);
    let w = t.windows.entry(client.to_owned()).or_insert((second, 0));
    if w.0 != second {
        *w = (second, 0);
    }
    w.1 += 1;
    if w.1 > sim.cfg.rate_limit_per_sec {
        drop(t);
        super::stats::note(sim, |s| s.rate_limited += 1);
        return Err(Reject::too_many(format!(
            "more than {} requests per second",
            sim.cfg.rate_limit_per_sec
        )));
    }
    Ok(())
}

/// Whether A008 for `service` is to be refused for good (`refuse_worklist_services`).
pub fn worklist_refused(sim: &Sim, service: &str) -> bool {
    let t = sim.traffic.lock().unwrap_or_else(|e| e.into_inner());
    t.faults
        .refuse_worklist_services
        .iter()
        .any(|s| s == service)
}

/// Counts an app-restricted A008 call for `service` against the daily budget.
pub fn check_worklist_budget(sim: &Sim, service: &str) -> Result<(), Reject> {
    let day = sim.started.elapsed().as_secs() / 86_400;
    let mut t = sim.traffic.lock().unwrap_or_else(|e| e.into_inner());
    let n = t
        .worklist_calls
        .entry((day, service.to_owned()))
        .or_default();
    *n += 1;
    if *n > sim.cfg.worklist_calls_per_service_per_day {
        drop(t);
        super::stats::note(sim, |s| s.worklist_budget_exceeded += 1);
        return Err(Reject::too_many(format!(
            "application-restricted worklist limit of {} calls per day for service {service} exceeded",
            sim.cfg.worklist_calls_per_service_per_day
        )));
    }
    Ok(())
}

/// Applies latency and the random error faults to one request; `write` says whether it
/// is a write (only writes can be answered 423).
pub async fn apply(sim: &Sim, write: bool) -> Result<(), Reject> {
    let f = {
        let t = sim.traffic.lock().unwrap_or_else(|e| e.into_inner());
        t.faults.clone()
    };
    if f == Faults::default() {
        return Ok(());
    }
    let (jitter, roll) = {
        let mut rng = rand::rng();
        let jitter = if f.latency_jitter_ms > 0 {
            rng.random_range(0..=f.latency_jitter_ms)
        } else {
            0
        };
        (jitter, rng.random::<f64>())
    };
    let delay = f.latency_ms + jitter;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut edge = f.hang_rate;
    if roll < edge {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return Err(Reject::new(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "TIMEOUT",
            "simulated hung request",
        ));
    }
    edge += f.error_500_rate;
    if roll < edge {
        return Err(Reject::internal("simulated internal error"));
    }
    edge += f.error_503_rate;
    if roll < edge {
        return Err(Reject::unavailable(f.retry_after_secs.max(1)));
    }
    edge += f.error_429_rate;
    if roll < edge {
        return Err(Reject::too_many("simulated rate limit"));
    }
    if write {
        edge += f.locked_rate;
        if roll < edge {
            super::stats::note(sim, |s| s.locked += 1);
            return Err(Reject::new(
                axum::http::StatusCode::LOCKED,
                "lock-error",
                "LOCKED",
                "the resource is being updated by another user or system (simulated); fetch it again and retry later",
            ));
        }
    }
    Ok(())
}

/// A successful read's response as the `corrupt_rate` and `worklist_pad_mib` faults
/// would have it (unchanged when neither applies to operation `code`).
pub async fn mutate(
    sim: &Sim,
    code: &str,
    r: axum::response::Response,
) -> axum::response::Response {
    let (rate, ops, pad) = {
        let t = sim.traffic.lock().unwrap_or_else(|e| e.into_inner());
        let f = &t.faults;
        (f.corrupt_rate, f.corrupt_ops.clone(), f.worklist_pad_mib)
    };
    let applies = if ops.is_empty() {
        matches!(code, "A005" | "A008")
    } else {
        ops.iter().any(|o| o == code)
    };
    let corruption = {
        let mut rng = rand::rng();
        (applies && rate > 0.0 && rng.random::<f64>() < rate)
            .then(|| rng.random_range(0..CORRUPTIONS.len()))
    };
    let pad = if code == "A008" { pad } else { 0 };
    if corruption.is_none() && pad == 0 {
        return r;
    }
    let (mut parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, 256 << 20)
        .await
        .unwrap_or_default();
    let out = match corruption {
        Some(kind) => {
            super::stats::note(sim, |s| s.corrupted_bodies += 1);
            corrupt(&bytes, kind)
        }
        None => padded(&bytes, pad),
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    axum::response::Response::from_parts(parts, axum::body::Body::from(out))
}

/// `bytes` corrupted the [`CORRUPTIONS`]`[kind]` way.
fn corrupt(bytes: &[u8], kind: usize) -> Vec<u8> {
    let json = || serde_json::from_slice::<serde_json::Value>(bytes).unwrap_or_default();
    match CORRUPTIONS[kind % CORRUPTIONS.len()] {
        "truncated" => bytes[..bytes.len() / 2].to_vec(),
        "no-version" => {
            let mut v = json();
            if let Some(meta) = v.get_mut("meta").and_then(|m| m.as_object_mut()) {
                meta.remove("versionId");
            }
            if let Some(entries) = v.get_mut("entry").and_then(|e| e.as_array_mut()) {
                entries.truncate(entries.len() / 2);
            }
            serde_json::to_vec(&v).unwrap_or_default()
        }
        "wrong-types" => {
            let mut v = json();
            v["meta"]["versionId"] = serde_json::json!([1, 2]);
            v["id"] = serde_json::json!(42);
            if v.get("entry").is_some() {
                v["entry"] = serde_json::json!("not a list");
            }
            serde_json::to_vec(&v).unwrap_or_default()
        }
        _ => b"<html><body><h1>502 Bad Gateway</h1></body></html>".to_vec(),
    }
}

/// `bytes` (a JSON object) with a `padding` member of `mib` MiB.
fn padded(bytes: &[u8], mib: u64) -> Vec<u8> {
    let mut v = serde_json::from_slice::<serde_json::Value>(bytes).unwrap_or_default();
    v["padding"] = serde_json::Value::String("x".repeat((mib as usize) << 20));
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The attachment bytes as the `attachment_pad_mib` fault would serve them: `bytes`
/// followed by that many MiB of spaces (unchanged without the fault).
pub fn padded_attachment(sim: &Sim, mut bytes: Vec<u8>) -> Vec<u8> {
    let pad = sim
        .traffic
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .faults
        .attachment_pad_mib;
    if pad > 0 {
        let extra = usize::try_from(pad.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        bytes.resize(bytes.len().saturating_add(extra), b' ');
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_partially_and_reject_unknown_keys() {
        let f: Faults = serde_json::from_str(r#"{"error_503_rate": 1.0}"#).unwrap();
        assert_eq!(f.error_503_rate, 1.0);
        assert_eq!(f.latency_ms, 0);
        assert!(serde_json::from_str::<Faults>(r#"{"nope": 1}"#).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn pending_window_expires() {
        let mut t = Traffic::default();
        t.set_faults(Faults {
            attachments_pending_secs: 5,
            ..Faults::default()
        });
        assert!(t.attachments_pending());
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!t.attachments_pending());
    }

    #[test]
    fn each_corruption_breaks_what_it_says() {
        let body =
            br#"{"resourceType":"ReferralRequest","id":"000000070001","meta":{"versionId":"5"}}"#;
        let parsed = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b);
        assert!(parsed(&corrupt(body, 0)).is_err(), "truncated");
        let v = parsed(&corrupt(body, 1)).unwrap();
        assert!(v["meta"].get("versionId").is_none(), "no version: {v}");
        let v = parsed(&corrupt(body, 2)).unwrap();
        assert!(
            v["meta"]["versionId"].is_array() && v["id"].is_number(),
            "{v}"
        );
        assert!(parsed(&corrupt(body, 3)).is_err(), "html");
        let big = padded(body, 1);
        assert!(big.len() > 1 << 20);
        assert_eq!(parsed(&big).unwrap()["id"], "000000070001");
    }

    #[test]
    fn windows_of_past_seconds_are_pruned() {
        let mut t = Traffic::default();
        for i in 0..1000 {
            t.windows.insert(format!("client-{i}"), (3, 1));
        }
        t.worklist_calls.insert((0, "21012".into()), 2);
        t.prune(3);
        assert_eq!(t.rate_windows(), 1000, "same second: kept");
        t.windows.insert("fresh".into(), (4, 1));
        t.prune(4);
        assert_eq!(t.rate_windows(), 1);
        t.prune(86_400);
        assert_eq!(t.rate_windows(), 0);
        assert!(t.worklist_calls.is_empty(), "yesterday's budget dropped");
    }
}
