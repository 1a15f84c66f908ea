//! The management console as the admin router serves it (nested at
//! `/iam/v1`, as `keyctl serve` does): security headers, content types,
//! unknown assets, and a page with no inline script, style or handler, whose
//! script uses no `eval`, storage or cookies. The flows themselves are tested
//! in a real browser by `cli/tests/browser/`.

#![cfg(feature = "console")]
#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;

use api_keys::admin::console::CONTENT_SECURITY_POLICY;
use api_keys::admin::{AdminApi, StaticTokens};
use api_keys::{KeyManager, MemoryStore, Pepper, Peppers};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt as _;

const TOKEN: &str = "console-admin-token-0123456789";

fn app() -> axum::Router {
    let manager = KeyManager::builder(
        Arc::new(MemoryStore::new()),
        Peppers::single(Pepper::new(1, [7u8; 32]).unwrap()),
        api_keys::testing::scope_catalog(),
    )
    .build();
    let auth = StaticTokens::new().token("ops", TOKEN).unwrap();
    axum::Router::new().nest("/iam/v1", AdminApi::new(manager, auth).router())
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn get(method: Method, path: &str) -> Answer {
    let request = Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
    let response = app().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    Answer { status, headers, body: String::from_utf8(bytes.to_vec()).unwrap() }
}

fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} header"))
}

#[tokio::test]
async fn page_and_assets_carry_the_security_headers_and_their_types() {
    let cases = [
        ("/iam/v1/console", "text/html; charset=utf-8"),
        ("/iam/v1/console/console.js", "text/javascript; charset=utf-8"),
        ("/iam/v1/console/console.css", "text/css; charset=utf-8"),
    ];
    for (path, content_type) in cases {
        let a = get(Method::GET, path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(header(&a, "content-type"), content_type, "{path}");
        assert_eq!(
            header(&a, "content-security-policy"),
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            "{path}"
        );
        assert_eq!(header(&a, "content-security-policy"), CONTENT_SECURITY_POLICY);
        assert_eq!(header(&a, "x-frame-options"), "DENY", "{path}");
        assert_eq!(header(&a, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&a, "referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header(&a, "cache-control"), "no-store", "{path}");
        assert!(a.headers.get("set-cookie").is_none(), "{path}: no cookie");
        assert!(!a.body.is_empty(), "{path}");
    }
    let head = get(Method::HEAD, "/iam/v1/console").await;
    assert_eq!((head.status, head.body.as_str()), (StatusCode::OK, ""), "HEAD answers without a body");
}

#[tokio::test]
async fn unknown_assets_and_other_methods_are_refused() {
    for path in ["/iam/v1/console/nope.js", "/iam/v1/console/", "/iam/v1/console/console.js/x", "/iam/v1/consolex"] {
        let a = get(Method::GET, path).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!a.body.contains("<html"), "{path}: not the page");
    }
    assert_eq!(get(Method::POST, "/iam/v1/console").await.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get(Method::DELETE, "/iam/v1/console/console.js").await.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_page_needs_no_token_but_the_api_beside_it_still_does() {
    assert_eq!(get(Method::GET, "/iam/v1/console").await.status, StatusCode::OK);
    assert_eq!(get(Method::GET, "/iam/v1/apiKeyScopes").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get(Method::GET, "/iam/v1/apiKeys?serviceAccountId=robot").await.status, StatusCode::UNAUTHORIZED);
}

/// Every `<tag …>` of `html`, lower-cased.
fn tags(html: &str) -> Vec<String> {
    html.split('<').skip(1).filter_map(|t| t.split_once('>').map(|(tag, _)| tag.to_ascii_lowercase())).collect()
}

#[tokio::test]
async fn the_page_has_no_inline_script_style_or_event_handler() {
    let html = get(Method::GET, "/iam/v1/console").await.body;
    let tags = tags(&html);
    let scripts: Vec<&String> = tags.iter().filter(|t| t.starts_with("script")).collect();
    assert_eq!(scripts.len(), 1, "{scripts:?}");
    assert!(scripts.iter().all(|t| t.contains(" src=\"console/console.js\"") && t.contains("type=\"module\"")));
    assert!(html.contains("<script type=\"module\" src=\"console/console.js\"></script>"), "an empty script element");
    assert!(!tags.iter().any(|t| t.starts_with("style")), "no <style> element");
    for tag in &tags {
        let attributes: Vec<&str> = tag.split_whitespace().skip(1).collect();
        assert!(!attributes.iter().any(|a| a.starts_with("style=")), "style attribute in <{tag}>");
        assert!(
            !attributes.iter().any(|a| a.starts_with("on") && a.contains('=')),
            "event handler attribute in <{tag}>"
        );
        assert!(!tag.contains("javascript:"), "javascript: URL in <{tag}>");
    }
    // Relative asset paths: the page works wherever the router is nested.
    assert!(html.contains("href=\"console/console.css\""));
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing from another origin");
}

#[tokio::test]
async fn the_script_uses_no_eval_storage_cookies_or_html_parsing() {
    let js = get(Method::GET, "/iam/v1/console/console.js").await.body;
    for banned in [
        "eval(",
        "new Function",
        "localStorage",
        "sessionStorage",
        "indexedDB",
        "document.cookie",
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "setTimeout('",
    ] {
        assert!(!js.contains(banned), "console.js uses {banned}");
    }
    assert!(js.contains("new URL('../', import.meta.url)"), "the API is found relative to the script");
    assert!(js.contains("credentials: 'omit'"), "no cookies sent");
    let css = get(Method::GET, "/iam/v1/console/console.css").await.body;
    assert!(!css.contains("url(") && !css.contains("@import"), "the style sheet loads nothing");
}
