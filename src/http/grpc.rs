//! Rejections for gRPC clients. A gRPC client cannot read an HTTP 401 with a
//! problem+json body; it reads the `grpc-status` and `grpc-message` of a
//! *trailers-only* response (HTTP 200, `content-type: application/grpc`, the
//! status in the headers, no body). The layer answers so whenever the
//! request's `content-type` is `application/grpc` or `application/grpc+…`
//! (gRPC over HTTP/2, as tonic sends it):
//!
//! | client class | gRPC status |
//! |---|---|
//! | no credentials, invalid request, invalid token | `UNAUTHENTICATED` (16) |
//! | insufficient scope | `PERMISSION_DENIED` (7) |
//! | store unavailable | `UNAVAILABLE` (14) |
//! | server misconfiguration | `INTERNAL` (13) |
//!
//! The messages are the same fixed texts for every cause of a class, as the
//! HTTP bodies are: nothing tells a client which check failed.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::verify::ClientClass;

/// Whether the request is a gRPC call, by its `content-type`.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        let base = b"application/grpc";
        v.len() >= base.len()
            && v[..base.len()].eq_ignore_ascii_case(base)
            && matches!(v.get(base.len()), None | Some(b'+' | b';'))
    })
}

/// The gRPC status code and message for a rejection of client class
/// `class` (`None`: the server's fault).
fn status(class: Option<ClientClass>) -> (u8, &'static str) {
    match class {
        Some(ClientClass::NoCredentials) => (16, "authentication required: send authorization: Api-Key <key>"),
        Some(ClientClass::InvalidRequest) => (16, "the authorization metadata is malformed or repeated"),
        Some(ClientClass::InvalidToken) => (16, "the credentials are not valid"),
        Some(ClientClass::InsufficientScope) => (7, "the credentials do not grant the scope this method requires"),
        Some(ClientClass::Unavailable) => (14, "credentials cannot be checked right now; retry later"),
        Some(ClientClass::Forbidden) => (7, "the credentials may not be used from this address"),
        Some(ClientClass::UsageExceeded) => (8, "usage exceeded: the credentials have no usage credits left"),
        Some(ClientClass::RateLimited) => (8, "rate limit exceeded; retry later"),
        None => (13, "the server could not authenticate this request"),
    }
}

/// A trailers-only gRPC response for a rejection of client class `class`
/// (`None`: the server's fault). The messages are plain ASCII without `%`,
/// so they need no percent-encoding.
pub(crate) fn render(class: Option<ClientClass>) -> Response<Full<Bytes>> {
    let (code, message) = status(class);
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    headers.insert("grpc-message", HeaderValue::from_static(message));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_requests_are_recognised_by_content_type() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        for (v, yes) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC; charset=utf-8", true),
            ("application/grpc-web", false),
            ("application/json", false),
        ] {
            h.insert(CONTENT_TYPE, HeaderValue::from_static(v));
            assert_eq!(is_grpc(&h), yes, "{v}");
        }
    }

    #[test]
    fn classes_map_to_grpc_statuses() {
        let cases = [
            (Some(ClientClass::NoCredentials), "16"),
            (Some(ClientClass::InvalidRequest), "16"),
            (Some(ClientClass::InvalidToken), "16"),
            (Some(ClientClass::InsufficientScope), "7"),
            (Some(ClientClass::Forbidden), "7"),
            (Some(ClientClass::UsageExceeded), "8"),
            (Some(ClientClass::RateLimited), "8"),
            (Some(ClientClass::Unavailable), "14"),
            (None, "13"),
        ];
        for (class, code) in cases {
            let r = render(class);
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()["content-type"], "application/grpc");
            assert_eq!(r.headers()["grpc-status"], code, "{class:?}");
            assert!(!r.headers()["grpc-message"].to_str().unwrap().contains('%'));
        }
    }
}
