//! Error replies of the simulator: STU3 `OperationOutcome` bodies (profile
//! `eRS-OperationOutcome-1`, error codes from `eRS-APIErrorCode-1`) and the R4
//! `NHSDigital-OperationOutcome` used by A042, shaped like the official examples.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{json, Value};

/// The STU3 error code system.
pub const STU3_ERROR_SYSTEM: &str = "https://fhir.nhs.uk/STU3/CodeSystem/eRS-APIErrorCode-1";
/// The R4 error code system used by A042.
pub const R4_ERROR_SYSTEM: &str = "https://fhir.nhs.uk/CodeSystem/ers-error-codes";

/// A request the simulator refuses: becomes an `OperationOutcome` reply.
#[derive(Debug, Clone)]
pub struct Reject {
    /// The HTTP status.
    pub status: StatusCode,
    /// The FHIR issue type (`invalid`, `forbidden`, `business-rule`, …).
    pub issue_code: &'static str,
    /// The e-RS error code in `details.coding[0].code`.
    pub ers_code: &'static str,
    /// Human-readable detail naming the field or rule.
    pub diagnostics: String,
    /// `Retry-After` seconds for 503/429 replies.
    pub retry_after: Option<u64>,
    /// Whether to use the R4 shape (A042) rather than STU3.
    pub r4: bool,
    /// Whether the reply is the diagnostics as `text/plain` (406, as the real API).
    pub plain_text: bool,
}

impl Reject {
    /// A reject with the given status, issue type, e-RS code and diagnostics.
    pub fn new(
        status: StatusCode,
        issue_code: &'static str,
        ers_code: &'static str,
        diagnostics: impl Into<String>,
    ) -> Self {
        Self {
            status,
            issue_code,
            ers_code,
            diagnostics: diagnostics.into(),
            retry_after: None,
            r4: false,
            plain_text: false,
        }
    }

    /// 422 business validation failure with an e-RS code such as `MISSING_VALUE`.
    pub fn unprocessable(ers_code: &'static str, diagnostics: impl Into<String>) -> Self {
        let issue = match ers_code {
            "INVALID_REQUEST_STATE" | "INVALID_STATE" | "PRIORITY_NOT_CURRENT" => "business-rule",
            "MISSING_VALUE" | "VALUE_IS_REQUIRED" => "required",
            _ => "value",
        };
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            issue,
            ers_code,
            diagnostics,
        )
    }

    /// 400 bad request.
    pub fn bad_request(ers_code: &'static str, diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", ers_code, diagnostics)
    }

    /// 401: missing, unknown or expired credentials.
    pub fn unauthorised(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "login", "NO_ACCESS", diagnostics)
    }

    /// 403: the caller may not do this in its access mode or role.
    pub fn forbidden(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "FORBIDDEN", diagnostics)
    }

    /// 404 for an unknown resource or path.
    pub fn not_found(diagnostics: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "REFERENCE_NOT_FOUND",
            diagnostics,
        )
    }

    /// 409 for a stale `If-Match`.
    pub fn conflict(diagnostics: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "conflict",
            "VERSION_CONFLICT",
            diagnostics,
        )
    }

    /// 412 for a missing `If-Match`.
    pub fn precondition(diagnostics: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "required",
            "MISSING_VALUE",
            diagnostics,
        )
    }

    /// 429 rate limited.
    pub fn too_many(diagnostics: impl Into<String>) -> Self {
        let mut r = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "TOO_MANY_REQUESTS",
            diagnostics,
        );
        r.retry_after = Some(1);
        r
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(retry_after: u64) -> Self {
        let mut r = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "transient",
            "SYSTEM_UNAVAILABLE",
            "the service is temporarily unavailable (simulated fault)",
        );
        r.retry_after = Some(retry_after);
        r
    }

    /// 500 internal error.
    pub fn internal(diagnostics: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "INTERNAL_SERVER_ERROR",
            diagnostics,
        )
    }

    /// 406 Not Acceptable: a `text/plain` body, as `responses/NotAcceptable.yaml`.
    pub fn not_acceptable(diagnostics: impl Into<String>) -> Self {
        let mut r = Self::new(
            StatusCode::NOT_ACCEPTABLE,
            "not-supported",
            "NOT_ACCEPTABLE",
            diagnostics,
        );
        r.plain_text = true;
        r
    }

    /// Switches the reply to the R4 `NHSDigital-OperationOutcome` shape.
    pub fn r4(mut self) -> Self {
        self.r4 = true;
        self
    }

    /// The JSON body of this reject.
    pub fn body(&self) -> Value {
        if self.r4 {
            json!({
                "resourceType": "OperationOutcome",
                "meta": {"lastUpdated": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)},
                "issue": [{
                    "severity": "error",
                    "code": self.issue_code,
                    "details": {"coding": [{"system": R4_ERROR_SYSTEM, "code": self.ers_code}]},
                    "diagnostics": self.diagnostics,
                }]
            })
        } else {
            json!({
                "meta": {"profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/eRS-OperationOutcome-1"]},
                "resourceType": "OperationOutcome",
                "issue": [{
                    "severity": "error",
                    "code": self.issue_code,
                    "details": {"coding": [{
                        "system": STU3_ERROR_SYSTEM,
                        "code": self.ers_code,
                        "display": display_of(self.ers_code),
                    }]},
                    "diagnostics": self.diagnostics,
                }]
            })
        }
    }
}

/// A display text for an e-RS error code: the code in sentence case.
fn display_of(code: &str) -> String {
    let lower = code.replace('_', " ").to_lowercase();
    let mut chars = lower.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().collect::<String>() + chars.as_str(),
        None => String::new(),
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        if self.plain_text {
            let mut resp = (self.status, self.diagnostics).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain;charset=utf-8"),
            );
            return resp;
        }
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/fhir+json"),
        );
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// A FHIR JSON reply with the given status and optional ETag version.
pub fn fhir_json(status: StatusCode, body: &Value, version: Option<u64>) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = (status, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json"),
    );
    if let Some(v) = version {
        if let Ok(h) = HeaderValue::from_str(&format!("W/\"{v}\"")) {
            resp.headers_mut().insert(header::ETAG, h);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stu3_outcome_has_profile_and_code() {
        let body = Reject::unprocessable("MISSING_VALUE", "rejectionReason is required").body();
        assert_eq!(
            body["meta"]["profile"][0],
            "https://fhir.nhs.uk/STU3/StructureDefinition/eRS-OperationOutcome-1"
        );
        assert_eq!(
            body["issue"][0]["details"]["coding"][0]["code"],
            "MISSING_VALUE"
        );
        assert_eq!(
            body["issue"][0]["details"]["coding"][0]["display"],
            "Missing value"
        );
        assert_eq!(body["issue"][0]["code"], "required");
    }

    #[test]
    fn r4_outcome_uses_r4_system() {
        let body = Reject::unprocessable("PENDING", "scanning").r4().body();
        assert_eq!(
            body["issue"][0]["details"]["coding"][0]["system"],
            R4_ERROR_SYSTEM
        );
        assert!(body["meta"].get("profile").is_none());
    }
}
