//! Media-type checks of the FHIR endpoints: POST bodies must be JSON (415 otherwise) and
//! the `Accept` header, when given, must admit FHIR JSON (406 with a `text/plain` body
//! otherwise, as `responses/NotAcceptable.yaml` documents). Attachment downloads (A006,
//! A042) and the clinical-information PDF (A007) answer files, so any `Accept` is fine.

use axum::{
    body::Bytes,
    http::{header, HeaderMap, StatusCode},
};

use super::Op;
use crate::simulator::{auth, outcome::Reject};

/// POST bodies must be JSON (`application/fhir+json` or `application/json`): 415 otherwise.
pub fn check_content_type(op: &Op, headers: &HeaderMap, body: &Bytes) -> Result<(), Reject> {
    let has_body_op = matches!(
        op,
        Op::FetchWorklist
            | Op::FetchAdviceWorklist
            | Op::Reject(_)
            | Op::CancelAppointment(_)
            | Op::RecordReviewOutcome(_)
            | Op::SendAdvice(_)
            | Op::ConvertAdvice
    );
    if !has_body_op || body.is_empty() {
        return Ok(());
    }
    match auth::header(headers, "content-type") {
        Some(ct)
            if ct.starts_with("application/fhir+json") || ct.starts_with("application/json") =>
        {
            Ok(())
        }
        other => Err(Reject::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "UNSUPPORTED_MEDIA_TYPE",
            format!(
                "content-type {} is not supported, use application/fhir+json",
                other.as_deref().unwrap_or("(none)")
            ),
        )),
    }
}

/// The media types a FHIR JSON reply satisfies.
const JSON_TYPES: &[&str] = &[
    "application/fhir+json",
    "application/json",
    "application/*",
    "*/*",
];

/// Whether an `Accept` header value admits a FHIR JSON reply (a range with `q=0` does not).
pub fn accepts_json(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !refused && JSON_TYPES.contains(&media.as_str())
    })
}

/// 406 (text/plain, as the real API) when `Accept` excludes JSON on a FHIR JSON endpoint.
pub fn check_accept(op: &Op, headers: &HeaderMap) -> Result<(), Reject> {
    if matches!(op, Op::Binary(_) | Op::BinaryR4(_) | Op::GenerateCri(_)) {
        return Ok(());
    }
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() || values.iter().any(|v| accepts_json(v)) {
        return Ok(());
    }
    Err(Reject::not_acceptable(format!(
        "cannot produce {}; this endpoint answers application/fhir+json",
        values.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_ranges() {
        assert!(accepts_json("application/fhir+json"));
        assert!(accepts_json("text/html, application/json;q=0.5"));
        assert!(accepts_json("*/*"));
        assert!(accepts_json("APPLICATION/FHIR+JSON; charset=utf-8"));
        assert!(!accepts_json("application/xml"));
        assert!(!accepts_json("application/fhir+xml, text/plain"));
        assert!(!accepts_json("application/json;q=0"));
    }
}
