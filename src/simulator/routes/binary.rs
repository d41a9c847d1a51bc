//! Attachments: A006 `GET STU3/Binary/{id}` (the bytes), A042 `GET R4/Binary/{id}` (307 to a
//! short-lived object-store URL) and the object store itself (`GET /_objectstore/{token}`).
//! Attachments whose availability is not `AVAILABLE` (or while the `attachments_pending_secs`
//! fault is active) answer 422 with the availability code.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{Path, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

use super::{referrals::file_response, Ctx, Reply};
use crate::simulator::{faults, outcome::Reject, pdf, state::Binary, Sim};

/// How long an object-store link from A042 stays valid.
pub const OBJECT_LINK_TTL: Duration = Duration::from_secs(60);

/// Maximum size A006 serves (5 MB).
const A006_MAX_BYTES: usize = 5 * 1024 * 1024;

fn lookup(
    sim: &Sim,
    binaries: &std::collections::HashMap<String, Binary>,
    id: &str,
) -> Result<Binary, Reject> {
    let Some(b) = binaries.get(id) else {
        return Err(Reject::not_found(format!("no attachment Binary/{id}")));
    };
    let pending = sim
        .traffic
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .attachments_pending();
    let status = if pending {
        "PENDING"
    } else {
        b.availability.as_str()
    };
    match status {
        "AVAILABLE" => Ok(b.clone()),
        "PENDING" => Err(Reject::unprocessable(
            "PENDING",
            "The file is being scanned and cannot be retrieved. Wait at least 5 minutes before checking its availability again.",
        )),
        "THREATS_FOUND" => Err(Reject::unprocessable(
            "THREATS_FOUND",
            "The file cannot be retrieved because threats were found in it.",
        )),
        _ => Err(Reject::unprocessable(
            "VALIDATION_FAILED",
            "The file cannot be retrieved because it failed validation.",
        )),
    }
}

/// A 1x1 PNG image, served for `image/png` attachments.
const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// The bytes served for an attachment: a small PDF for PDFs, a 1x1 PNG for PNGs, text
/// otherwise.
pub fn content(id: &str, b: &Binary) -> Vec<u8> {
    if b.content_type == "image/png" {
        return TINY_PNG.to_vec();
    }
    if b.content_type == "application/pdf" {
        pdf::document(
            &b.title,
            &[
                format!("Attachment {id}"),
                format!("Referral/request: {}", b.owner),
                "Synthetic attachment served by the e-RS simulator.".to_owned(),
            ],
        )
    } else {
        format!(
            "Synthetic attachment {id} ({}) of {} served by the e-RS simulator.\n",
            b.title, b.owner
        )
        .into_bytes()
    }
}

/// A006 `GET STU3/Binary/{id}`.
pub async fn stu3(ctx: &Ctx<'_>, id: &str) -> Reply {
    let w = ctx.sim.world.lock().await;
    let b = lookup(ctx.sim, &w.binaries, id)?;
    let bytes = faults::padded_attachment(ctx.sim, content(id, &b));
    if bytes.len() > A006_MAX_BYTES {
        return Err(Reject::unprocessable(
            "FILE_SIZE_ERROR",
            "files over 5 MB must be retrieved with A042",
        ));
    }
    Ok(file_response(bytes, &b.content_type, &b.title))
}

/// A042 `GET R4/Binary/{id}`: 307 to a one-minute object-store link.
pub async fn r4(ctx: &Ctx<'_>, id: &str) -> Reply {
    let mut w = ctx.sim.world.lock().await;
    lookup(ctx.sim, &w.binaries, id).map_err(Reject::r4)?;
    let token = uuid::Uuid::new_v4().simple().to_string();
    let now = tokio::time::Instant::now();
    w.object_links.retain(|_, (_, exp)| *exp > now);
    w.object_links
        .insert(token.clone(), (id.to_owned(), now + OBJECT_LINK_TTL));
    let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{}/_objectstore/{token}", ctx.sim.base_url)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// `GET /_objectstore/{token}`: the download behind an A042 redirect.
pub async fn object_store(State(sim): State<Arc<Sim>>, Path(token): Path<String>) -> Response {
    let w = sim.world.lock().await;
    let Some((id, exp)) = w.object_links.get(&token) else {
        return (StatusCode::NOT_FOUND, "no such object\n").into_response();
    };
    if tokio::time::Instant::now() >= *exp {
        return (StatusCode::FORBIDDEN, "Request has expired\n").into_response();
    }
    match w.binaries.get(id) {
        Some(b) => file_response(
            faults::padded_attachment(&sim, content(id, b)),
            &b.content_type,
            &b.title,
        ),
        None => (StatusCode::NOT_FOUND, "no such object\n").into_response(),
    }
}
