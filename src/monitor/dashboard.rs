//! `GET /`: the dashboard, one HTML page with its script and styles compiled in (no CDN,
//! works offline). It asks for the API token once and keeps it in `sessionStorage` only
//! (a `#token=` fragment, which browsers never send to the server, also sets it, for
//! kiosks and headless checks), then reads `/api/summary`, the lists and, on a UBRN
//! search, the referral's timeline. Every control is a form element, usable with a keyboard.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard.html");

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}
