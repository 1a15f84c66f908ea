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

use common::{Keyctl, SQLITE_DEFAULT_URL, Server, random_pepper};

/// The SDK virtualenv's Python.
fn sdk_python() -> PathBuf {
    let venv = std::env::var_os("SDK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/sdk-venv"));
    let python = venv.join("bin/python");
    if !python.exists() {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/venv.sh");
        let made = Command::new("bash").arg(&script).arg(&venv).status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "{} could not make the SDK virtualenv {}",
            script.display(),
            venv.display()
        );
    }
    assert!(
        python.exists(),
        "no SDK virtualenv at {} (set SDK_VENV, or: python3 -m venv {0} && {0}/bin/pip install yandexcloud==0.413.0)",
        venv.display()
    );
    python
}

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
