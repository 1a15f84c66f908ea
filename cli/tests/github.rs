//! `keyctl serve` with the GitHub secret-scanning endpoint, as a process:
//! signed reports revoke the reported keys in the store (`keyctl get` sees
//! it), unsigned ones are 401, and without `API_KEYS_GITHUB_KEYS_FILE` the
//! endpoint is off and `serve` says so.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use api_keys::TokenFormat;
use base64::Engine as _;
use common::*;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use serde_json::json;

const PATH: &str = "/v1/secret-scanning/github";

fn keys_file(k: &Keyctl, key: &SigningKey) -> String {
    let pem = key.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
    let doc = json!({"public_keys": [{"key_identifier": "test-key", "key": pem, "is_current": true}]});
    let path = k.path("github-keys.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    path.display().to_string()
}

fn report(tokens: &[&str]) -> String {
    let items: Vec<_> = tokens
        .iter()
        .map(|t| json!({"token": t, "type": "keyctl_api_key", "url": "https://github.com/o/r/blob/1/a.env", "source": "content"}))
        .collect();
    serde_json::to_string(&items).unwrap()
}

fn sign(key: &SigningKey, body: &str) -> String {
    let sig: Signature = key.sign(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
}

#[test]
fn signed_reports_revoke_through_keyctl_serve() {
    let k = Keyctl::new();
    let (id, secret) = created(k.keyctl(&["create", "--service-account-id", "robot", "--create-service-account"]).ok());
    let github = SigningKey::try_generate().unwrap();
    let file = keys_file(&k, &github);
    let server = Server::start(&k, SQLITE_DEFAULT_URL, &[("API_KEYS_GITHUB_KEYS_FILE", &file)]);
    assert!(
        server.log().contains(&format!("GitHub secret scanning at POST {PATH} (1 public key(s)")),
        "{}",
        server.log()
    );

    let stranger = TokenFormat::default().generate().unwrap().secret.expose_secret().to_owned();
    let body = report(&[&secret, &stranger]);
    let unsigned = server.request("POST", PATH, &[("Content-Type", "application/json")], &body);
    assert_eq!(unsigned.status, 401, "{}", unsigned.body);
    let other = SigningKey::try_generate().unwrap();
    let forged = sign(&other, &body);
    let wrong = server.request(
        "POST",
        PATH,
        &[("Github-Public-Key-Identifier", "test-key"), ("Github-Public-Key-Signature", &forged)],
        &body,
    );
    assert_eq!(wrong.status, 401);
    let still = k.keyctl(&["get", &id, "--format", "json"]);
    assert_eq!(still.ok().value()["status"], "active", "a refused report touches nothing");

    let sig = sign(&github, &body);
    let headers = [("Github-Public-Key-Identifier", "test-key"), ("Github-Public-Key-Signature", sig.as_str())];
    let accepted = server.request("POST", PATH, &headers, &body);
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let labels: Vec<_> = accepted.json().as_array().unwrap().iter().map(|e| e["label"].clone()).collect();
    assert_eq!(labels, [json!("true_positive"), json!("false_positive")]);
    let after = k.keyctl(&["get", &id, "--format", "json"]);
    assert_eq!(after.ok().value()["status"], "revoked");
    assert_eq!(server.authorize(Some(&secret), None).status, 401, "the revoked key no longer authorizes");

    // The leak is in the key's history, after the revocation of the same commit.
    let kinds = |id: &str| -> Vec<String> {
        let log = k.keyctl(&["operations", id, "--format", "json"]).ok().value();
        log["operations"].as_array().unwrap().iter().map(|o| o["kind"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(kinds(&id), ["leak", "revoke", "create"]);
    let log = k.keyctl(&["operations", &id, "--format", "json"]).ok().value();
    assert_eq!(log["operations"][0]["actor"], "github-secret-scanning");
    assert_eq!(log["operations"][0]["changes"]["leak"]["source"], "content");
    assert!(log["operations"][0]["changes"]["leak"]["url"].as_str().unwrap().starts_with("https://"));

    // GitHub retries: the same report is answered the same way, and logged once.
    let again = server.request("POST", PATH, &headers, &body);
    assert_eq!((again.status, again.json()), (200, accepted.json()));
    assert_eq!(kinds(&id), ["leak", "revoke", "create"]);
    let log = server.stop();
    assert!(log.contains(&id) && !log.contains(&secret[24..67]), "the log names the key, never the secret");
}

#[test]
fn without_the_keys_file_the_endpoint_is_off_and_a_bad_file_stops_serve() {
    let k = Keyctl::new();
    k.keyctl(&["create", "--service-account-id", "robot", "--create-service-account"]).ok();
    let server = Server::start(&k, SQLITE_DEFAULT_URL, &[]);
    assert!(
        server.log().contains("GitHub secret scanning is off (API_KEYS_GITHUB_KEYS_FILE is not set)"),
        "{}",
        server.log()
    );
    assert_eq!(server.request("POST", PATH, &[], "[]").status, 404);
    server.stop();

    std::fs::write(k.path("bad.json"), "{\"public_keys\": 5}").unwrap();
    for (file, action, expect) in [
        ("bad.json", "revoke", "not the shape of GitHub"),
        ("missing.json", "revoke", "cannot read the public-keys file"),
        ("bad.json", "delete", "API_KEYS_GITHUB_LEAK_ACTION: `delete` is not `revoke` or `record`"),
    ] {
        let path = k.path(file).display().to_string();
        let k2 = Keyctl::new()
            .with_var("API_KEYS_GITHUB_KEYS_FILE", path)
            .with_var("API_KEYS_GITHUB_LEAK_ACTION", action)
            .with_var("API_KEYS_PEPPER", random_pepper());
        let run = k2.run(&["serve", "--listen", "127.0.0.1:0"], None);
        run.expect(2);
        assert!(run.stderr.contains(expect), "{file}: {}", run.stderr);
    }
}
