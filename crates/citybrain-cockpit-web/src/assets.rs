//! The page and its assets, embedded in the binary (no CDN, no Node.js).

use axum::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// The cockpit page; `{{uid}}` is replaced by the cockpit's id.
pub const PAGE: &str = include_str!("../assets/cockpit.html");

/// The services portal's page (`/portal`).
pub const PORTAL: &str = include_str!("../assets/portal.html");

/// The appeals page and public board (`/appeals`).
pub const APPEALS: &str = include_str!("../assets/appeals.html");

/// The enterprise one-stop page (`/enterprise`, 深i企).
pub const ENTERPRISE: &str = include_str!("../assets/enterprise.html");

/// (path under /assets/, content type, bytes)
pub const FILES: &[(&str, &str, &[u8])] = &[
    (
        "portal.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/portal.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/dom.js"),
    ),
    (
        "consultations.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/consultations.js"),
    ),
    (
        "enterprise.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/enterprise.js"),
    ),
    (
        "appeals.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/appeals.js"),
    ),
    (
        "portal.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/portal.css"),
    ),
    (
        "cockpit.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/cockpit.js"),
    ),
    (
        "cockpit.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/cockpit.css"),
    ),
    (
        "vendor/echarts.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/echarts.min.js"),
    ),
];

/// A cheap content tag for ETags (FNV-1a over the bytes).
fn etag(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}\"")
}

pub async fn serve(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some((_, ctype, bytes)) = FILES.iter().find(|(p, _, _)| *p == path) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let tag = etag(bytes);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == tag)
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, *ctype),
            (header::ETAG, tag.as_str()),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        *bytes,
    )
        .into_response()
}
