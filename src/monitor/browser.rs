//! The message browser behind the dashboard's Messages panel: one stored message (to or
//! from the PAS) or dead letter shown as its raw text and as segments and fields with
//! their positions (`PID-3[2].1`), with the bridge's reply to a PAS message and the UBRN
//! whose timeline links it to the rest of the referral's story (the REF, its ACKs, the
//! RRI, the e-RS calls). Read-only. A dead letter is shown as it arrived; re-driving an
//! edited body is deliberately not offered (docs/monitoring.md, "Messages").

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Value};

use super::api::failed;
use super::MonitorState;
use crate::ids::ControlId;

/// Every non-empty value of the message at `bytes` by position, segment by segment; or
/// why the guarded reader refuses it.
pub fn field_view(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let message = crate::hl7::read(bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(message.segments.len());
    for seg in &message.segments {
        let mut fields = Vec::new();
        for (f, field) in seg.fields.iter().enumerate() {
            let repeated = field.len() > 1;
            for (r, rep) in field.iter().enumerate() {
                let composite = rep.len() > 1;
                for (c, comp) in rep.iter().enumerate() {
                    let sub = comp.len() > 1;
                    for (s, value) in comp.iter().enumerate() {
                        if value.is_empty() {
                            continue;
                        }
                        let mut at = format!("{}-{}", seg.id, f + 1);
                        if repeated {
                            at.push_str(&format!("[{}]", r + 1));
                        }
                        if composite || sub {
                            at.push_str(&format!(".{}", c + 1));
                        }
                        if sub {
                            at.push_str(&format!(".{}", s + 1));
                        }
                        fields.push(json!({"at": at, "value": value}));
                    }
                }
            }
        }
        out.push(json!({"segment": seg.id, "fields": fields}));
    }
    Ok(out)
}

/// The text and field view of a stored body (`None`: pruned by retention).
fn body_view(text: Option<&str>) -> Value {
    match text {
        None => json!({"hl7": null, "pruned": true}),
        Some(t) => match field_view(t.as_bytes()) {
            Ok(segments) => json!({"hl7": t, "segments": segments}),
            Err(e) => json!({"hl7": t, "unreadable": e}),
        },
    }
}

fn not_found(what: String) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": what}))).into_response()
}

/// `GET /api/messages/{direction}/{control_id}`: `out` (to the PAS) or `in` (from it).
pub async fn message(
    State(s): State<MonitorState>,
    Path((direction, id)): Path<(String, String)>,
) -> Response {
    let Ok(control_id) = ControlId::parse(&id) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "not a control id (MSH-10)"})),
        )
            .into_response();
    };
    match direction.as_str() {
        "out" => match s.store.published_by_control_id(&control_id).await {
            Ok(Some(m)) => {
                let mut v = json!({
                    "direction": "out",
                    "control_id": m.control_id.to_string(),
                    "ubrn": m.ubrn.to_string(),
                    "version": m.version.as_i64(),
                    "message_type": m.message_type,
                    "status": "confirmed",
                    "detail": format!("routing key {}", m.routing_key),
                    "at_ms": m.confirmed_at_ms,
                });
                v["body"] = body_view(m.hl7.as_deref());
                Json(v).into_response()
            }
            Ok(None) => not_found(format!("no message {id} was published to the pas")),
            Err(e) => failed(e),
        },
        "in" => {
            let record = match s.store.inbound(&control_id).await {
                Ok(Some(r)) => r,
                Ok(None) => return not_found(format!("no message {id} came from the pas")),
                Err(e) => return failed(e),
            };
            let reply = match s.store.inbound_reply(&control_id).await {
                Ok(r) => r,
                Err(e) => return failed(e),
            };
            let mut v = json!({
                "direction": "in",
                "control_id": record.control_id.to_string(),
                "ubrn": record.ubrn.as_ref().map(ToString::to_string),
                "message_type": record.message_type,
                "status": record.status.as_str(),
                "action": record.action,
                "detail": record.detail,
                "reply_code": record.reply_code,
                "at_ms": record.received_at_ms,
            });
            v["body"] = body_view(record.hl7.as_deref());
            v["reply"] = match reply {
                Some(bytes) => body_view(Some(&String::from_utf8_lossy(&bytes))),
                None => Value::Null,
            };
            Json(v).into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "direction is `in` or `out`"})),
        )
            .into_response(),
    }
}

/// `GET /api/dead-letters/{id}`: the dead letter with its reason (`x-ers-error`), and its
/// body as it arrived (text, and base64 for exact bytes) with the reader's view or error.
pub async fn dead_letter(State(s): State<MonitorState>, Path(id): Path<String>) -> Response {
    let d = match s.store.dead_letter(&id).await {
        Ok(Some(d)) => d,
        Ok(None) => return not_found(format!("no dead letter {id}")),
        Err(e) => return failed(e),
    };
    let bytes = d
        .body_b64
        .as_deref()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    let mut v = json!({
        "id": d.id,
        "at_ms": d.at_ms,
        "x_ers_error": d.reason,
        "detail": d.detail,
        "message_id": d.message_id,
        "redriven_at_ms": d.redriven_at_ms,
        "body_b64": d.body_b64,
    });
    v["body"] = match &bytes {
        None => json!({"hl7": null, "pruned": true}),
        Some(b) => {
            let text = String::from_utf8_lossy(b);
            match field_view(b) {
                Ok(segments) => json!({"hl7": text, "segments": segments}),
                Err(e) => json!({"hl7": text, "unreadable": e}),
            }
        }
    };
    Json(v).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_are_named_by_position() {
        let v = super::field_view(
            b"MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240116091500||RRI^I12^RRI_I12|C1|P|2.4\r\
              PID|1||9912003888^^^NHS^NH~123^^^LOCAL||^^^^^^U\r",
        )
        .unwrap();
        let all: Vec<(String, String)> = v
            .iter()
            .flat_map(|s| s["fields"].as_array().unwrap().clone())
            .map(|f| {
                (
                    f["at"].as_str().unwrap().to_string(),
                    f["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let has = |at: &str, value: &str| all.iter().any(|(a, v)| a == at && v == value);
        assert!(has("MSH-10", "C1"), "{all:?}");
        assert!(has("MSH-9.2", "I12"), "{all:?}");
        assert!(has("PID-3[1].1", "9912003888"), "{all:?}");
        assert!(has("PID-3[2].4", "LOCAL"), "{all:?}");
        assert!(has("PID-5.7", "U"), "{all:?}");
        assert!(super::field_view(b"not hl7").is_err());
    }
}
