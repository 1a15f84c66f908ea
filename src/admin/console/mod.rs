//! The management console: one HTML page, one ES module and one style sheet
//! over the management API, compiled into the binary (no CDN, no build
//! step, nothing fetched at run time).
//!
//! [`router`] serves
//!
//! | route | answers |
//! |---|---|
//! | `GET /console` | the page |
//! | `GET /console/console.js` | the script (an ES module) |
//! | `GET /console/console.css` | the style sheet |
//!
//! and [`AdminApi::router`](super::AdminApi::router) merges it, so an
//! application that nests the management API at `/iam/v1` serves the
//! console at `/iam/v1/console`. The page itself is public (it holds no
//! data); everything it shows comes from the API, called with the admin
//! token typed into its sign-in form. The script computes the API's address
//! from its own (`console/console.js` → `../`), so it works wherever the
//! router is nested.
//!
//! Every answer carries [`CONTENT_SECURITY_POLICY`] (no inline script or
//! style, no `eval`, requests only to the page's own origin, no framing),
//! `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer` and `Cache-Control: no-store`. The token
//! is kept in a variable of the script only (never in storage or a cookie)
//! and sent as `Authorization: Bearer`, so the console is CSRF-safe by
//! construction. A new key's secret is shown once in a dialog; closing the
//! dialog removes it from the page and from the script's variables.
//!
//! ```
//! # async fn demo() {
//! use axum::body::Body;
//! use axum::http::Request;
//! use tower::ServiceExt as _;
//!
//! let app = axum::Router::new().nest("/iam/v1", api_keys::admin::console::router());
//! let page = app.oneshot(Request::get("/iam/v1/console").body(Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(page.headers()["content-security-policy"], api_keys::admin::console::CONTENT_SECURITY_POLICY);
//! # }
//! ```

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The `Content-Security-Policy` of every console answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("index.html");
const CONSOLE_JS: &str = include_str!("console.js");
const CONSOLE_CSS: &str = include_str!("console.css");

/// The console's routes (`/console`, `/console/console.js`,
/// `/console/console.css`), to merge into a router or nest beside the
/// management API (whose address the script derives from its own).
pub fn router() -> Router {
    Router::new()
        .route("/console", get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }))
        .route("/console/console.js", get(|| async { asset(CONSOLE_JS, "text/javascript; charset=utf-8") }))
        .route("/console/console.css", get(|| async { asset(CONSOLE_CSS, "text/css; charset=utf-8") }))
}

/// `body` with its content type and the console's security headers.
fn asset(body: &'static str, content_type: &'static str) -> Response {
    let headers: [(HeaderName, HeaderValue); 7] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin")),
    ];
    (headers, body).into_response()
}
