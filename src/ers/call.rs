//! The pipeline's data: a [`Call`] as an operation describes it, the [`Reply`] it gets,
//! and the helpers that read bodies under a size cap and turn failures into [`ErsError`]s
//! (parsing the OperationOutcome of error replies).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::{header::HeaderMap, Method, StatusCode};
use secrecy::SecretString;

use super::{
    capability::Operation,
    error::{ApiError, ErsError},
};
use crate::fhir::OperationOutcome;
use crate::ids::Version;

/// FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json";

/// A request body.
pub(crate) enum Body {
    /// `application/fhir+json`, as the bytes sent ([`super::ops::request_body_bytes`]).
    Fhir(String),
    /// `application/json` (legacy session endpoints).
    Json(serde_json::Value),
}

/// One call, as the operations describe it to the pipeline.
pub(crate) struct Call {
    pub op: Operation,
    pub method: Method,
    /// Relative to the base URL, e.g. `STU3/ReferralRequest/000000070000`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<Body>,
    pub if_match: Option<Version>,
    pub accept: &'static str,
    pub max_bytes: u64,
    /// A001/A002/A003 name the session explicitly.
    pub session_key: Option<SecretString>,
    /// Treat this status as success (A042's 307).
    pub accept_status: Option<StatusCode>,
}

impl Call {
    pub(crate) fn new(op: Operation, method: Method, path: String, max_bytes: u64) -> Self {
        Self {
            op,
            method,
            path,
            query: Vec::new(),
            body: None,
            if_match: None,
            accept: FHIR_JSON,
            max_bytes,
            session_key: None,
            accept_status: None,
        }
    }
}

/// A successful response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `X-Request-ID`, the e-RS transaction id.
    pub request_id: Option<String>,
    /// The `X-Correlation-ID` sent.
    pub correlation_id: String,
}

impl Reply {
    /// The version in `ETag: W/"n"`.
    pub fn etag_version(&self) -> Option<Version> {
        let v = self.headers.get(reqwest::header::ETAG)?.to_str().ok()?;
        Version::parse(v.trim_start_matches("W/").trim_matches('"')).ok()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

/// Reads a body, refusing it as soon as it passes `limit` bytes.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    limit: u64,
    op: Operation,
    timeout: Duration,
) -> Result<Bytes, ErsError> {
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(ErsError::TooLarge {
            operation: op,
            limit,
        });
    }
    // Sized once from Content-Length when the server sends it (within the limit, checked
    // above): growing by doubling held up to twice a large worklist's bytes at its peak.
    let mut buf = BytesMut::with_capacity(resp.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| transport_error(op, &e, timeout))?
    {
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(ErsError::TooLarge {
                operation: op,
                limit,
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

pub(crate) fn transport_error(op: Operation, e: &reqwest::Error, timeout: Duration) -> ErsError {
    if e.is_timeout() {
        return ErsError::Timeout {
            operation: op,
            timeout,
        };
    }
    // Without the url: it can carry a legacy session key.
    let mut reason = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        reason = format!("{reason}: {s}");
        src = s.source();
    }
    if let Some(url) = e.url() {
        reason = reason.replace(url.as_str(), "<url>");
    }
    ErsError::Transport {
        operation: op,
        reason,
    }
}

pub(crate) fn api_error(
    op: Operation,
    status: u16,
    body: &[u8],
    request_id: Option<String>,
    cid: &str,
) -> ApiError {
    let outcome = serde_json::from_slice::<OperationOutcome>(body)
        .ok()
        .filter(|o| !o.issue.is_empty());
    let (issue_code, ers_code, diagnostics) = match &outcome {
        Some(o) => {
            let i = o.first_issue();
            (
                i.and_then(|i| i.code.clone()),
                o.ers_code().map(str::to_string),
                i.and_then(|i| i.diagnostics.clone()),
            )
        }
        None => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let diag = (!text.is_empty()).then(|| text.chars().take(300).collect::<String>());
            (None, None, diag)
        }
    };
    ApiError {
        operation: op,
        status,
        issue_code,
        ers_code,
        diagnostics,
        request_id,
        correlation_id: cid.to_string(),
        retry_after: None,
        fix: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_parsed_into_codes() {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/ers-api/examples/stu3/STU3-OperationOutcome.json"
        ))
        .unwrap();
        let a = api_error(Operation::A014, 422, &body, Some("r".into()), "c");
        assert_eq!(a.ers_code.as_deref(), Some("UNEXPECTED_FIELD"));
        assert_eq!(a.issue_code.as_deref(), Some("value"));
        assert!(a.diagnostics.unwrap().contains("unknown parameter"));
        let b = api_error(Operation::A014, 406, b"Not Acceptable", None, "c");
        assert_eq!(b.diagnostics.as_deref(), Some("Not Acceptable"));
    }
}
