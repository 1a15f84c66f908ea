//! The first step of `/v1/authorize`: which scope the proxy asks for.
//!
//! `?scope=NAME` or the `X-Required-Scope: NAME` request header (a proxy
//! that cannot change the URL sets a header); both at once must agree. A
//! name the catalog does not know is the proxy's configuration mistake: a
//! 400 problem body naming the scope, before the key is even looked at.

use std::sync::Arc;

use api_keys::ScopeCatalog;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The request header naming the required scope.
pub(crate) const REQUIRED_SCOPE_HEADER: &str = "x-required-scope";

/// Parses the required scope into the request extensions, or answers 400.
pub(crate) async fn required_scope(State(catalog): State<Arc<ScopeCatalog>>, mut req: Request, next: Next) -> Response {
    match requested(&req) {
        Ok(None) => next.run(req).await,
        Ok(Some(name)) => match catalog.requirement(&name) {
            Ok(required) => {
                req.extensions_mut().insert(required);
                next.run(req).await
            }
            Err(e) => bad_request(&format!("unknown required scope: {e}")),
        },
        Err(why) => bad_request(why),
    }
}

/// The scope named by the query and/or the header.
fn requested(req: &Request) -> Result<Option<String>, &'static str> {
    let from_query = query_scope(req.uri())?;
    let mut headers = req.headers().get_all(REQUIRED_SCOPE_HEADER).iter();
    let from_header = match (headers.next(), headers.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => return Err("more than one X-Required-Scope header"),
        (Some(v), None) => Some(v.to_str().map_err(|_| "X-Required-Scope is not visible ASCII")?.trim().to_owned()),
    };
    match (from_query, from_header) {
        (Some(q), Some(h)) if q != h => Err("?scope= and X-Required-Scope name different scopes"),
        (q, h) => Ok(q.or(h)),
    }
}

/// The one `scope` parameter of the query string, decoded as axum's
/// `Query` decodes it.
fn query_scope(uri: &axum::http::Uri) -> Result<Option<String>, &'static str> {
    if uri.query().is_none() {
        return Ok(None);
    }
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|_| "the query string cannot be decoded")?;
    let mut found = None;
    for (k, v) in pairs.0 {
        if k == "scope" {
            if found.is_some() {
                return Err("more than one scope parameter");
            }
            found = Some(v);
        }
    }
    Ok(found)
}

fn bad_request(detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": detail,
    });
    let mut response = (StatusCode::BAD_REQUEST, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, header: &[&str]) -> Request {
        let mut b = Request::builder().uri(uri);
        for h in header {
            b = b.header(REQUIRED_SCOPE_HEADER, *h);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn scope_from_query_or_header() {
        assert_eq!(requested(&req("/v1/authorize", &[])), Ok(None));
        assert_eq!(requested(&req("/v1/authorize?scope=a.b", &[])), Ok(Some("a.b".into())));
        assert_eq!(requested(&req("/v1/authorize?x=1&scope=a%2Eb", &[])), Ok(Some("a.b".into())));
        assert_eq!(requested(&req("/v1/authorize", &["a.b"])), Ok(Some("a.b".into())));
        assert_eq!(requested(&req("/v1/authorize?scope=a.b", &["a.b"])), Ok(Some("a.b".into())));
        assert!(requested(&req("/v1/authorize?scope=a.b", &["c.d"])).is_err());
        assert!(requested(&req("/v1/authorize?scope=a&scope=b", &[])).is_err());
        assert!(requested(&req("/v1/authorize", &["a", "b"])).is_err());
    }
}
