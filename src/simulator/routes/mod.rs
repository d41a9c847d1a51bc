//! The e-RS operations: path parsing into [`Op`], the common pipeline every FHIR call goes
//! through (request counting and rate limit, write-call log, faults, authentication,
//! authorisation, `X-Request-ID` and echoed `X-Correlation-ID`), and dispatch to the
//! per-area handlers.

pub mod advice;
pub mod binary;
pub mod media;
pub mod reference;
pub mod referrals;
pub mod worklists;

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, Method},
    response::{IntoResponse, Response},
};
use serde_json::Value;

use super::{
    auth::{self, Access},
    faults,
    outcome::Reject,
    state::CallRecord,
    Sim,
};

/// Which API family a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `/referrals/FHIR/...` (API platform, bearer tokens).
    Platform,
    /// `/ers-api/STU3/v1/...` (legacy, professional sessions).
    Legacy,
}

/// A parsed e-RS operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A004 reference data.
    CodeSystem(String),
    /// A005 read, optionally versioned.
    ReadReferral(String, Option<String>),
    /// A006 attachment (STU3).
    Binary(String),
    /// A007 clinical information PDF.
    GenerateCri(String),
    /// A008 referral worklist.
    FetchWorklist,
    /// A013 accept.
    Accept(String),
    /// A014 reject.
    Reject(String),
    /// A022 cancel appointment, action later.
    CancelAppointment(String),
    /// A028 record review outcome.
    RecordReviewOutcome(String),
    /// A023 A&G worklist.
    FetchAdviceWorklist,
    /// A024 A&G request, optionally versioned.
    ReadAdvice(String, Option<String>),
    /// A025 A&G conversation.
    Conversation,
    /// A026 send A&G response.
    SendAdvice(String),
    /// A027 convert A&G to referral.
    ConvertAdvice,
    /// A029 available actions.
    AvailableActions,
    /// A042 attachment (R4 redirect).
    BinaryR4(String),
}

impl Op {
    /// The e-RS operation id.
    pub fn code(&self) -> &'static str {
        match self {
            Op::CodeSystem(_) => "A004",
            Op::ReadReferral(..) => "A005",
            Op::Binary(_) => "A006",
            Op::GenerateCri(_) => "A007",
            Op::FetchWorklist => "A008",
            Op::Accept(_) => "A013",
            Op::Reject(_) => "A014",
            Op::CancelAppointment(_) => "A022",
            Op::RecordReviewOutcome(_) => "A028",
            Op::FetchAdviceWorklist => "A023",
            Op::ReadAdvice(..) => "A024",
            Op::Conversation => "A025",
            Op::SendAdvice(_) => "A026",
            Op::ConvertAdvice => "A027",
            Op::AvailableActions => "A029",
            Op::BinaryR4(_) => "A042",
        }
    }

    /// The UBRN of a write call, for the call log.
    fn write_ubrn(&self) -> Option<Option<String>> {
        match self {
            Op::Accept(u)
            | Op::Reject(u)
            | Op::CancelAppointment(u)
            | Op::RecordReviewOutcome(u)
            | Op::SendAdvice(u) => Some(Some(u.clone())),
            Op::ConvertAdvice => Some(None),
            _ => None,
        }
    }

    /// Parses the path after the flavour prefix (`STU3/...`, `R4/...`, or legacy `...`).
    pub fn parse(flavor: Flavor, method: &Method, path: &str) -> Option<Op> {
        let decoded = path.replace("%24", "$");
        let segs: Vec<&str> = decoded.trim_matches('/').split('/').collect();
        let stu3: &[&str] = match (flavor, segs.as_slice()) {
            (Flavor::Platform, ["R4", "Binary", id]) if method == Method::GET => {
                return Some(Op::BinaryR4((*id).to_owned()))
            }
            (Flavor::Platform, ["STU3", rest @ ..]) => rest,
            (Flavor::Legacy, rest) => rest,
            _ => return None,
        };
        let get = method == Method::GET;
        let post = method == Method::POST;
        let s = |x: &&str| (*x).to_owned();
        Some(match stu3 {
            ["CodeSystem", t] if get => Op::CodeSystem(s(t)),
            ["ReferralRequest", "$ers.fetchworklist"] if post => Op::FetchWorklist,
            ["ReferralRequest", "$ers.createFromCommunicationRequestActionLater"] if post => {
                Op::ConvertAdvice
            }
            ["ReferralRequest", u] if get => Op::ReadReferral(s(u), None),
            ["ReferralRequest", u, "_history", v] if get => Op::ReadReferral(s(u), Some(s(v))),
            ["ReferralRequest", u, op] if post => match *op {
                "$ers.generateCRI" => Op::GenerateCri(s(u)),
                "$ers.acceptReferral" => Op::Accept(s(u)),
                "$ers.rejectReferral" => Op::Reject(s(u)),
                "$ers.cancelAppointmentActionLater" => Op::CancelAppointment(s(u)),
                "$ers.CancelAppointmentActionLater" if flavor == Flavor::Legacy => {
                    Op::CancelAppointment(s(u))
                }
                "$ers.recordReviewOutcome" => Op::RecordReviewOutcome(s(u)),
                _ => return None,
            },
            ["Binary", id] if get => Op::Binary(s(id)),
            ["CommunicationRequest", "$ers.fetchworklist"] if post => Op::FetchAdviceWorklist,
            ["CommunicationRequest", u] if get => Op::ReadAdvice(s(u), None),
            ["CommunicationRequest", u, "_history", v] if get => Op::ReadAdvice(s(u), Some(s(v))),
            ["CommunicationRequest", u, "$ers.sendCommunicationToRequester"] if post => {
                Op::SendAdvice(s(u))
            }
            ["Communication"] if get => Op::Conversation,
            ["Task"] if get => Op::AvailableActions,
            _ => return None,
        })
    }
}

/// Everything a handler needs about one request.
pub struct Ctx<'a> {
    /// The simulator.
    pub sim: &'a Sim,
    /// The caller's access mode.
    pub access: Access,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Request body.
    pub body: &'a Bytes,
    /// Query parameters in order (repeats kept).
    pub query: Vec<(String, String)>,
    /// API family.
    pub flavor: Flavor,
}

impl Ctx<'_> {
    /// The first query parameter named `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (422 `INVALID_FHIR_STRUCTURE` when it is not).
    pub fn json_body(&self) -> Result<Value, Reject> {
        serde_json::from_slice(self.body).map_err(|e| {
            Reject::unprocessable(
                "INVALID_FHIR_STRUCTURE",
                format!("request body is not valid JSON: {e}"),
            )
        })
    }

    /// The base URL the caller used for this API family, for self links.
    pub fn fhir_base(&self) -> String {
        match self.flavor {
            Flavor::Platform => format!("{}/referrals/FHIR/STU3", self.sim.base_url),
            Flavor::Legacy => format!("{}/ers-api/STU3/v1", self.sim.base_url),
        }
    }
}

/// Checks `If-Match` against the current version: missing → 412, stale → 409.
pub fn check_if_match(headers: &HeaderMap, current: u64) -> Result<(), Reject> {
    let Some(v) = auth::header(headers, "if-match") else {
        return Err(Reject::precondition(
            "If-Match header with the current version is required",
        ));
    };
    let n = v
        .strip_prefix("W/\"")
        .and_then(|r| r.strip_suffix('"'))
        .and_then(|n| n.parse::<u64>().ok());
    match n {
        Some(n) if n == current => Ok(()),
        Some(n) => Err(Reject::conflict(format!(
            "Version supplied ({n}) does not match current version ({current})"
        ))),
        None => Err(Reject::bad_request(
            "INVALID_VALUE",
            format!("If-Match must look like W/\"<version>\", got {v}"),
        )),
    }
}

/// `ANY /referrals/FHIR/{*rest}`.
pub async fn platform(
    State(sim): State<Arc<Sim>>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(
        &sim,
        Flavor::Platform,
        &method,
        &rest,
        query,
        &headers,
        &body,
    )
    .await
}

/// `ANY /ers-api/STU3/v1/{*rest}`.
pub async fn legacy(
    State(sim): State<Arc<Sim>>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&sim, Flavor::Legacy, &method, &rest, query, &headers, &body).await
}

async fn handle(
    sim: &Sim,
    flavor: Flavor,
    method: &Method,
    rest: &str,
    query: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let request_id = format!("{}-1", uuid::Uuid::new_v4());
    let mut resp = match pipeline(sim, flavor, method, rest, query, headers, body).await {
        Ok(r) => r,
        Err(r) => r.into_response(),
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        if flavor == Flavor::Legacy {
            h.insert("x_ers_transaction_id", v.clone());
        }
        h.insert("x-request-id", v);
    }
    if let Some(cid) = headers.get("x-correlation-id") {
        h.insert("x-correlation-id", cid.clone());
    }
    resp
}

async fn pipeline(
    sim: &Sim,
    flavor: Flavor,
    method: &Method,
    rest: &str,
    query: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, Reject> {
    faults::check_rate(sim, &auth::client_key(headers))?;
    let Some(op) = Op::parse(flavor, method, rest) else {
        return Err(Reject::not_found(format!(
            "no e-rs operation at {method} {rest}"
        )));
    };
    // Writes are logged with what the client saw (see `/_admin/calls`).
    let write = op.write_ubrn().map(|ubrn| {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let ubrn = ubrn.or_else(|| {
            parsed.as_ref().and_then(|b| {
                super::validate::params(b)
                    .ok()?
                    .reference("createFrom")
                    .and_then(|r| r.split('/').nth(1).map(str::to_owned))
            })
        });
        (op.code().to_owned(), ubrn, parsed)
    });
    if let Some((_, Some(ubrn), _)) = &write {
        if let Some(letter) = faults::take_change_before_write(sim) {
            if let Some(r) = sim.world.lock().await.referrals.get_mut(ubrn.as_str()) {
                super::referrer::apply_change(r, letter);
            }
        }
    }
    let poll = matches!(op, Op::FetchWorklist).then(|| {
        (
            chrono::Utc::now().timestamp_millis(),
            super::faults::PollRecord::describe(headers, body),
        )
    });
    let code = op.code();
    let result = match dispatch_checked(sim, flavor, op, query, headers, body).await {
        Ok(r) if r.status().is_success() && write.is_none() => {
            Ok(faults::mutate(sim, code, r).await)
        }
        other => other,
    };
    if let Some((started_ms, (service, list, agent))) = poll {
        super::faults::log_poll(
            sim,
            super::faults::PollRecord {
                started_ms,
                ended_ms: chrono::Utc::now().timestamp_millis(),
                service,
                list,
                agent,
            },
        );
    }
    let Some((operation, ubrn, parsed)) = write else {
        return result;
    };
    let applied = result.as_ref().is_ok_and(|r| r.status().is_success());
    let result = if applied && faults::take_lost_response(sim) {
        Err(Reject::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "transient",
            "BAD_GATEWAY",
            "the write was applied but its response was lost (simulated fault)",
        ))
    } else {
        result
    };
    let status = match &result {
        Ok(r) => r.status().as_u16(),
        Err(r) => r.status.as_u16(),
    };
    sim.world.lock().await.log_call(CallRecord {
        operation,
        ubrn,
        if_match: auth::header(headers, "if-match"),
        body: parsed,
        status,
        applied,
        correlation_id: auth::header(headers, "x-correlation-id"),
        at_ms: chrono::Utc::now().timestamp_millis(),
    });
    let hold = faults::write_hold(sim);
    if applied && !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    result
}

/// Faults, authentication, media checks, then the operation.
async fn dispatch_checked(
    sim: &Sim,
    flavor: Flavor,
    op: Op,
    query: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, Reject> {
    faults::apply(sim, op.write_ubrn().is_some()).await?;
    let access = match flavor {
        Flavor::Platform => auth::authenticate_platform(sim, headers)?,
        Flavor::Legacy => auth::authenticate_legacy(sim, headers)?,
    };
    auth::authorize(&access, &op)?;
    media::check_accept(&op, headers)?;
    media::check_content_type(&op, headers, body)?;
    let query: Vec<(String, String)> = query
        .as_deref()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let ctx = Ctx {
        sim,
        access,
        headers,
        body,
        query,
        flavor,
    };
    tracing::debug!(operation = op.code(), "e-rs call");
    match op {
        Op::CodeSystem(t) => reference::code_system(&ctx, &t),
        Op::ReadReferral(u, v) => referrals::read(&ctx, &u, v.as_deref()).await,
        Op::GenerateCri(u) => referrals::generate_cri(&ctx, &u).await,
        Op::Accept(u) => referrals::accept(&ctx, &u).await,
        Op::Reject(u) => referrals::reject(&ctx, &u).await,
        Op::CancelAppointment(u) => referrals::cancel_appointment(&ctx, &u).await,
        Op::RecordReviewOutcome(u) => referrals::record_review_outcome(&ctx, &u).await,
        Op::AvailableActions => referrals::available_actions(&ctx).await,
        Op::FetchWorklist => worklists::referrals(&ctx).await,
        Op::FetchAdviceWorklist => worklists::advice(&ctx).await,
        Op::ReadAdvice(u, v) => advice::read(&ctx, &u, v.as_deref()).await,
        Op::Conversation => advice::conversation(&ctx).await,
        Op::SendAdvice(u) => advice::send(&ctx, &u).await,
        Op::ConvertAdvice => advice::convert(&ctx).await,
        Op::Binary(id) => binary::stu3(&ctx, &id).await,
        Op::BinaryR4(id) => binary::r4(&ctx, &id).await,
    }
}

/// Shorthand for handler results.
pub type Reply = Result<Response, Reject>;

/// Splits a versioned reference `{resource_type}/{ubrn}/_history/{version}` into the UBRN
/// and the version; `None` for any other shape.
pub fn split_versioned<'a>(reference: &'a str, resource_type: &str) -> Option<(&'a str, &'a str)> {
    let parts: Vec<&str> = reference.split('/').collect();
    match parts.as_slice() {
        [ty, ubrn, "_history", version] if *ty == resource_type => Some((ubrn, version)),
        _ => None,
    }
}

/// A `searchset` Bundle of `entries` with its `self` link (`total` when given).
pub fn searchset(self_url: String, entries: Vec<Value>, total: Option<usize>) -> Value {
    let mut bundle = serde_json::json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": {"lastUpdated": super::resources::now_instant(),
                 "profile": ["http://hl7.org/fhir/STU3/StructureDefinition/Bundle"]},
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "self", "url": self_url}],
    });
    bundle["entry"] = Value::Array(entries); // moved, not deep-copied by `json!`
    if let Some(total) = total {
        bundle["total"] = serde_json::json!(total);
    }
    bundle
}

/// Parses a `_history/{version}` segment and checks it is the latest (404
/// `HISTORY_NOT_SUPPORTED` otherwise).
pub fn check_history(version: Option<&str>, current: u64) -> Result<(), Reject> {
    match version {
        None => Ok(()),
        Some(v) if v.parse::<u64>().ok() == Some(current) => Ok(()),
        Some(v) => Err(Reject::new(
            axum::http::StatusCode::NOT_FOUND,
            "not-found",
            "HISTORY_NOT_SUPPORTED",
            format!("version {v} is not the latest version ({current})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_platform_and_legacy_paths() {
        assert_eq!(
            Op::parse(
                Flavor::Platform,
                &Method::POST,
                "STU3/ReferralRequest/000000070001/$ers.acceptReferral"
            ),
            Some(Op::Accept("000000070001".into()))
        );
        assert_eq!(
            Op::parse(
                Flavor::Platform,
                &Method::GET,
                "STU3/ReferralRequest/000000070001/_history/5"
            ),
            Some(Op::ReadReferral("000000070001".into(), Some("5".into())))
        );
        assert_eq!(
            Op::parse(
                Flavor::Legacy,
                &Method::POST,
                "ReferralRequest/000000070001/%24ers.CancelAppointmentActionLater"
            ),
            Some(Op::CancelAppointment("000000070001".into()))
        );
        assert_eq!(
            Op::parse(Flavor::Platform, &Method::GET, "R4/Binary/abc"),
            Some(Op::BinaryR4("abc".into()))
        );
        assert_eq!(
            Op::parse(Flavor::Platform, &Method::DELETE, "STU3/ReferralRequest/1"),
            None
        );
    }

    #[test]
    fn if_match_rules() {
        let mut h = HeaderMap::new();
        assert_eq!(check_if_match(&h, 5).unwrap_err().status, 412);
        h.insert("if-match", HeaderValue::from_static("W/\"4\""));
        assert_eq!(check_if_match(&h, 5).unwrap_err().status, 409);
        h.insert("if-match", HeaderValue::from_static("W/\"5\""));
        assert!(check_if_match(&h, 5).is_ok());
    }
}
