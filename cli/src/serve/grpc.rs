//! gRPC beside REST on the one listener: requests whose `content-type` is
//! `application/grpc` (with or without a `+proto` suffix) go to the gRPC
//! services, every other request to the REST routes.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

/// `UNIMPLEMENTED`.
const UNIMPLEMENTED: i32 = 12;

/// One router: gRPC calls (by [`is_grpc`]) go to `grpc`, every other
/// request to `rest`.
pub(crate) fn route(rest: Router, grpc: Router) -> Router {
    Router::new().fallback_service(tower::service_fn(move |request: Request| {
        let target = if is_grpc(request.headers()) { grpc.clone() } else { rest.clone() };
        target.oneshot(request)
    }))
}

/// The gRPC side when the management API is off: every call is
/// `UNIMPLEMENTED`, saying why.
pub(crate) fn off() -> Router {
    Router::new().fallback(|| async {
        status_response(UNIMPLEMENTED, "the management API is off: keyctl serve has no admin tokens")
    })
}

/// Whether a request is a gRPC call (by its `content-type`).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v == "application/grpc" || v.starts_with("application/grpc+") || v.starts_with("application/grpc;")
    })
}

/// A trailers-only gRPC answer with status `code` and `message`.
pub(crate) fn status_response(code: i32, message: &str) -> Response {
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(code));
    let encoded: String = message
        .bytes()
        .map(|b| {
            if b.is_ascii_graphic() && b != b'%' || b == b' ' { char::from(b).to_string() } else { format!("%{b:02X}") }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&encoded) {
        headers.insert("grpc-message", v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            is_grpc(&h)
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(!with("application/json"));
        assert!(!with("application/grpc-web"));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn messages_are_percent_encoded() {
        let r = status_response(8, "body > 10% é");
        assert_eq!(r.headers()["grpc-status"], "8");
        assert_eq!(r.headers()["grpc-message"], "body > 10%25 %C3%A9");
    }
}
