//! `GET /`: the dashboard, one HTML page with its script and styles compiled in (no CDN,
//! works offline). It asks for the API token once and keeps it in `sessionStorage` only
//! (a `#token=` fragment, which browsers never send to the server, also sets it, for
//! kiosks and headless checks), then reads `/api/summary`, the lists and, on a UBRN
//! search, the referral's timeline. Every control is a form element, usable with a keyboard.
//! The Trends panel draws with uPlot (`assets/`, vendored, MIT), served from the binary
//! under `/assets/`.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard.html");

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}

const UPLOT_JS: &str = include_str!("assets/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("assets/uPlot.min.css");

/// `GET /assets/uplot.js`: the charting library (static, cacheable for a day).
pub async fn uplot_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        UPLOT_JS,
    )
}

/// `GET /assets/uplot.css`.
pub async fn uplot_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        UPLOT_CSS,
    )
}
