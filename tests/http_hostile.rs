//! The hostile `Authorization` table (tests/common/hostile.rs) over real
//! HTTP/1.1: raw bytes written to a TCP socket on loopback, so values a
//! well-behaved client would refuse to send still reach the server.
//!
//! Expected status per row: the row's client class (accepted → 200,
//! no credentials / invalid token → 401, malformed → 400). Documented
//! transport differences:
//! - rows with CR or LF are not representable in an HTTP/1.1 field line (the
//!   line ends there); they are covered at the parser level only;
//! - control bytes and NUL are refused by the HTTP parser itself with 400
//!   before the layer runs — the same class the layer would give;
//! - the 1 MiB value may be refused by the server's header limit with 431.
//!
//! Plus several `Authorization` lines (identical or not) → 400.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use api_keys::http::ApiKeyLayer;
use api_keys::{ClientClass, CreateRequest, KeyManager, MemoryStore, Pepper, Peppers};
use common::app;
use common::hostile::{CASES, Outcome, render};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn status_for(outcome: Outcome) -> u16 {
    match outcome {
        Outcome::Accept => 200,
        Outcome::Reject(ClientClass::InvalidRequest) => 400,
        Outcome::Reject(class) => class.status(),
    }
}

/// Sends one request with the given raw `Authorization` lines; returns the
/// status code.
async fn raw_status(addr: std::net::SocketAddr, auth_lines: &[Vec<u8>]) -> u16 {
    let mut req = b"GET /v1/whoami HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for value in auth_lines {
        req.extend_from_slice(b"Authorization: ");
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"Connection: close\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading a huge request.
    let _ = stream.write_all(&req).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    let status = text.split(' ').nth(1).unwrap_or("");
    status.parse().unwrap_or_else(|_| panic!("no HTTP status in response: {text:?}"))
}

#[tokio::test]
async fn hostile_values_over_http() {
    let catalog = api_keys::testing::scope_catalog();
    let manager = KeyManager::builder(
        Arc::new(MemoryStore::new()),
        Peppers::single(Pepper::new(1, [6u8; 32]).unwrap()),
        catalog.clone(),
    )
    .build();
    let key = manager.create(CreateRequest::new("sa")).await.unwrap();
    let secret = key.secret.expose_secret().to_owned();
    let router = app::router(ApiKeyLayer::new(manager.verifier().build()), &catalog).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let mut failures = Vec::new();
    let mut sent = 0;
    for case in CASES {
        let value = render(case.value, &secret);
        if value.contains(&b'\r') || value.contains(&b'\n') {
            continue; // not representable on the wire (see module docs)
        }
        sent += 1;
        let got = raw_status(addr, &[value]).await;
        let want = status_for(case.outcome);
        let ok = got == want || (case.name.contains("1 MiB") && got == 431);
        if !ok {
            failures.push(format!("{}: HTTP {got}, expected {want}", case.name));
        }
    }
    assert!(sent >= 40, "only {sent} rows went over the wire");

    // Several Authorization lines: refused, never a silent pick of one.
    let good = format!("Api-Key {secret}").into_bytes();
    for lines in [
        vec![good.clone(), good.clone()],
        vec![good.clone(), b"Api-Key nope".to_vec()],
        vec![b"Basic dXNlcg==".to_vec(), good.clone()],
    ] {
        let got = raw_status(addr, &lines).await;
        if got != 400 {
            failures.push(format!("{} Authorization lines: HTTP {got}, expected 400", lines.len()));
        }
    }
    assert_eq!(raw_status(addr, &[good]).await, 200, "the valid key itself is accepted");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
