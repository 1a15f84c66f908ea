//! The gRPC management services of `keyctl serve` driven with the official
//! Yandex Cloud Python SDK (`cli/tests/sdk/grpc_session.py`, the SDK's public
//! API only) over TLS on loopback, with a test CA made by `openssl`
//! (`grpc_tls`):
//! - a whole session (create, get, list with paging, update waited for,
//!   operations, scopes, delete waited for, refusals of each kind, the key on
//!   `/v1/authorize`), and a plaintext gRPC call to the TLS port failing
//!   cleanly;
//! - the official Node SDK (`cli/tests/sdk/node/session.cjs`, pinned by its
//!   `package-lock.json`, installed into `target/node-sdk` by `install.sh`):
//!   create, list, delete waited for;
//! - failed authentications over gRPC throttled per address (as REST's), and
//!   gRPC `UNIMPLEMENTED` when the management API is off;
//! - two nodes over one PostgreSQL schema: an `Update` through node A is found
//!   with `OperationService.Get` on node B.
//!
//! Needs the SDK virtualenv (`$SDK_VENV` or `target/sdk-venv`; made by
//! `cli/tests/sdk/venv.sh` when missing), `openssl`, and for the Node test
//! `node` and `npm`; the two-node test needs PostgreSQL.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;
mod grpc_tls;

use std::path::PathBuf;
use std::process::Command;

use common::{
    DropSchema, Keyctl, SQLITE_DEFAULT_URL, Server, postgres_url, random_pepper, sdk_dir, sdk_python, unique,
    with_param,
};
use grpc_tls::make_certs;

const TOKEN: &str = "Qm7vT2xK9pL4zR8wN1cF6hJ3bY5sD0gA7eU2iO9tW4=";

/// Runs `grpc_session.py` with `args`; asserts it passed every check.
fn session(args: &[String]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/grpc_session.py");
    let out = Command::new(sdk_python()).arg(&script).args(args).env("PYTHONDONTWRITEBYTECODE", "1").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the SDK session failed:\n{stdout}\n{stderr}");
    let summary = stdout.lines().last().unwrap_or_default();
    println!("{stdout}");
    assert!(summary.ends_with(" passed, 0 failed") && !summary.starts_with("0 "), "{stdout}");
}

/// A TLS `keyctl serve` with the admin token over `url`.
fn tls_server(k: &Keyctl, url: &str) -> Server {
    let certs = make_certs(k.dir.path());
    let (cert, key) = (certs.cert.display().to_string(), certs.key.display().to_string());
    Server::start(k, url, &[("API_KEYS_TLS_CERT", &cert), ("API_KEYS_TLS_KEY", &key)])
}

fn ca(k: &Keyctl) -> String {
    k.dir.path().join("ca.pem").display().to_string()
}

#[test]
fn the_official_python_sdk_manages_keys_over_grpc() {
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_ADMIN_TOKEN", TOKEN);
    let server = tls_server(&k, SQLITE_DEFAULT_URL);
    assert!(server.log().contains(&format!("gRPC services advertised at {}", server.addr)), "{}", server.log());
    session(&["session".into(), server.addr.to_string(), TOKEN.into(), ca(&k)]);
    let log = server.stop();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains(TOKEN), "the admin token must never be logged");
}

#[test]
fn failed_grpc_authentications_are_throttled_and_no_tokens_means_off() {
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_ADMIN_TOKEN", TOKEN);
    let server = tls_server(&k, SQLITE_DEFAULT_URL);
    session(&["throttle".into(), server.addr.to_string(), TOKEN.into(), ca(&k)]);
    let log = server.stop();
    assert!(log.contains("admin authentication failed") && !log.contains(&TOKEN[1..]), "{log}");

    let off = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
    let server = tls_server(&off, SQLITE_DEFAULT_URL);
    session(&["off".into(), server.addr.to_string(), ca(&off)]);
    server.stop();
}

#[test]
fn an_update_through_one_node_is_found_on_another() {
    let base = postgres_url();
    let schema = unique("grpc_nodes");
    let _cleanup = DropSchema { url: base.clone(), schema: schema.clone() };
    let url = with_param(&base, "schema", &schema);
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_ADMIN_TOKEN", TOKEN);
    let a = tls_server(&k, &url);
    let b = Server::start(
        &k,
        &url,
        &[
            ("API_KEYS_TLS_CERT", &k.dir.path().join("server.pem").display().to_string()),
            ("API_KEYS_TLS_KEY", &k.dir.path().join("server.key").display().to_string()),
        ],
    );
    session(&["nodes".into(), a.addr.to_string(), b.addr.to_string(), TOKEN.into(), ca(&k)]);
    a.stop();
    b.stop();
}

#[test]
fn the_official_node_sdk_creates_lists_and_deletes() {
    let dir = sdk_dir("NODE_SDK_DIR", "target/node-sdk", "tests/sdk/node/install.sh");
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_ADMIN_TOKEN", TOKEN);
    let server = tls_server(&k, SQLITE_DEFAULT_URL);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/node/session.cjs");
    let out = Command::new("node")
        .arg(&script)
        .args([server.addr.to_string(), TOKEN.into(), ca(&k)])
        .env("NODE_PATH", dir.join("node_modules"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    server.stop();
    println!("{stdout}");
    assert!(out.status.success(), "the Node SDK session failed:\n{stdout}\n{stderr}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.ends_with(" passed, 0 failed") && !summary.starts_with("0 "), "{stdout}");
}
