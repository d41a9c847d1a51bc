//! The mapping page's API, for integration teams: list the mapping files, and render one
//! referral (a stored one, read from e-RS by its UBRN, or pasted FHIR JSON) through a chosen
//! mapping, returning the HL7 segment by segment, each field with the expression it came
//! from, and the diff against the golden file when the referral is one of the samples.
//! Read-only: nothing is published or recorded.

use std::path::Path;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::MonitorState;
use crate::ids::Ubrn;
use crate::mapping::samples::{diff, sample_case, to_golden};
use crate::mapping::{compile_file, ApplyInput, Attachments};

/// The mapping files in the configured folder (not the sample manifest or the inbound
/// decision table).
pub async fn list(State(s): State<MonitorState>) -> Response {
    let mut names: Vec<String> = std::fs::read_dir(&s.mappings_dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".toml") && n != "samples.toml" && n != "inbound.toml")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    Json(names).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderRequest {
    /// A file name from [`list`].
    pub mapping: String,
    /// Read the referral from e-RS (A005).
    pub ubrn: Option<String>,
    /// Or render this FHIR ReferralRequest.
    pub fhir: Option<Value>,
}

fn refuse(code: StatusCode, why: impl Into<String>) -> Response {
    (code, Json(json!({"error": why.into()}))).into_response()
}

pub async fn render(State(s): State<MonitorState>, Json(r): Json<RenderRequest>) -> Response {
    let name_ok = r.mapping.ends_with(".toml")
        && r.mapping
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !r.mapping.starts_with('.');
    if !name_ok {
        return refuse(
            StatusCode::BAD_REQUEST,
            "mapping must be a file name from /api/mappings",
        );
    }
    let compiled = compile_file(&s.mappings_dir.join(&r.mapping));
    let mapping = match compiled.map(|m| m.with_header(&s.mapping_header)) {
        Ok(m) => m,
        Err(e) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    let referral = match (r.fhir, r.ubrn) {
        (Some(v), _) => v,
        (None, Some(u)) => {
            let Ok(ubrn) = Ubrn::parse(&u) else {
                return refuse(StatusCode::BAD_REQUEST, "not a UBRN (12 digits)");
            };
            match s.outbound.referral_json(&ubrn).await {
                Ok(v) => v,
                Err(e) => return refuse(StatusCode::BAD_GATEWAY, format!("e-RS: {e}")),
            }
        }
        (None, None) => return refuse(StatusCode::BAD_REQUEST, "give a ubrn or fhir"),
    };
    let id = referral.get("id").and_then(Value::as_str).unwrap_or("");
    let case = sample_case(&s.mappings_dir.join("samples.toml"), &r.mapping, id)
        .ok()
        .flatten();
    let (timestamp, attachments) = match &case {
        Some(c) => (c.timestamp, c.attachments.clone()),
        None => (chrono::Utc::now().fixed_offset(), Attachments::new()),
    };
    let control_id = match mapping.control_id_for(&referral) {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    let (rendered, bytes) = match mapping.render(&ApplyInput {
        referral: &referral,
        control_id: &control_id,
        timestamp,
        attachments: &attachments,
        attachment_errors: &Default::default(),
    }) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    let text = String::from_utf8_lossy(&to_golden(&bytes)).into_owned();
    let segments: Vec<Value> = mapping
        .segments
        .iter()
        .map(|seg| {
            let first = rendered.message.segment(&seg.id);
            json!({
                "segment": seg.id,
                "present": first.is_some(),
                "fields": seg.sets.iter().map(|set| json!({
                    "at": set.label,
                    "name": set.name,
                    "source": set.source_text,
                    "value": first.map(|f| f.get(set.pos.field, set.pos.rep, set.pos.comp, set.pos.sub)).unwrap_or(""),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let golden = case.as_ref().and_then(|c| {
        let g = c.golden.as_ref()?;
        Some(json!({
            "file": display(&c.golden_path),
            "matches": g == &text,
            "diff": diff(g, &text),
        }))
    });
    Json(json!({
        "mapping": r.mapping,
        "control_id": control_id.to_string(),
        "hl7": text,
        "segments": segments,
        "warnings": rendered.warnings,
        "golden": golden,
        "note": if case.is_some() { "rendered as the sample manifest renders it (its timestamp and attachments)" } else { "rendered now, without attachment content" },
    }))
    .into_response()
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
