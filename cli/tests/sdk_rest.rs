//! The management REST API read with the official Yandex Cloud SDK's
//! message types: `cli/tests/sdk/rest_shapes.py` runs a REST session against
//! a live `keyctl serve` and parses every answer strictly (unknown fields
//! are errors) into the SDK's `ApiKey`, `ListApiKeysResponse`,
//! `CreateApiKeyResponse`, `ListApiKeyScopesResponse`, `Operation`, ….
//!
//! Needs a virtualenv with the pinned SDK, at `$SDK_VENV` or
//! `target/sdk-venv`: when it is missing, `cli/tests/sdk/venv.sh` makes it
//! (pip, from PyPI); if that fails, the test fails, naming the virtualenv.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Keyctl, SQLITE_DEFAULT_URL, Server, random_pepper, sdk_python};

#[test]
fn rest_answers_parse_with_the_official_sdk_message_types() {
    let python = sdk_python();
    let token = "Qm7vT2xK9pL4zR8wN1cF6hJ3bY5sD0gA7eU2iO9tW4=";
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_ADMIN_TOKEN", token);
    let server = Server::start(&k, SQLITE_DEFAULT_URL, &[]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/rest_shapes.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("http://{}", server.addr))
        .arg(token)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    server.stop();
    assert!(out.status.success(), "the SDK session failed:\n{stdout}\n{stderr}");
    let summary = stdout.lines().last().unwrap_or_default();
    println!("{summary}");
    assert!(summary.ends_with(" passed, 0 failed") && !summary.starts_with("0 "), "{stdout}");
}
