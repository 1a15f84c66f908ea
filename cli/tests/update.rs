//! `keyctl update`, `keyctl operations`, and the management API in
//! `keyctl serve` (on with admin tokens, off and saying so without).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use common::{Keyctl, SQLITE_DEFAULT_URL, Server, created, random_pepper};

#[test]
fn update_changes_only_what_it_names_and_every_change_is_logged() {
    let k = Keyctl::new();
    let create = k.keyctl(&[
        "create",
        "--service-account-id",
        "robot",
        "--create-service-account",
        "--description",
        "first",
        "--scopes",
        "yc.monitoring.read",
        "--expires-at",
        "2030-01-01T00:00:00Z",
    ]);
    let (id, secret) = created(create.ok());
    let updated = k.keyctl(&["update", &id, "--description", "renamed"]);
    let v = updated.ok().value();
    assert_eq!(v["description"], "renamed");
    assert_eq!(v["scopes"], serde_json::json!(["yc.monitoring.read"]), "scopes stay");
    assert_eq!(v["expires_at"], "2030-01-01T00:00:00Z", "expiry stays");
    let v = k.keyctl(&["update", &id, "--scopes", "yc.postbox.send,yc.monitoring.read", "--no-expiry"]).ok().value();
    assert_eq!(v["scopes"], serde_json::json!(["yc.monitoring.read", "yc.postbox.send"]));
    assert!(v["expires_at"].is_null());
    k.verify(&secret, &["--scope", "yc.postbox.send"]).ok();
    // Bad input: nothing to change, past expiry, unknown scope, both expiry flags.
    k.keyctl(&["update", &id]).expect(2);
    k.keyctl(&["update", &id, "--expires-at", "2020-01-01T00:00:00Z"]).expect(2);
    k.keyctl(&["update", &id, "--scopes", "yc.nothing"]).expect(2);
    k.keyctl(&["update", &id, "--expires-at", "2031-01-01T00:00:00Z", "--no-expiry"]).expect(2);
    k.keyctl(&["update", "aaaaaaaaaaaaaaaaaaaa", "--description", "x"]).expect(3);

    k.keyctl(&["revoke", &id]).ok();
    k.keyctl(&["update", &id, "--description", "too late"]).expect(4);
    k.keyctl(&["delete", &id]).ok();
    // The log outlives the key: newest first, actor keyctl, never a secret.
    let log = k.keyctl(&["operations", &id, "--format", "json"]);
    let ops = log.ok().value()["operations"].as_array().unwrap().clone();
    let kinds: Vec<&str> = ops.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["delete", "revoke", "update", "update", "create"]);
    assert!(ops.iter().all(|o| o["actor"] == "keyctl"));
    assert_eq!(ops[2]["changes"]["expiresAt"], serde_json::Value::Null);
    assert!(!log.stdout.contains(&secret));
    let table = k.keyctl(&["operations", &id, "--limit", "2"]);
    assert!(table.ok().stdout.contains("next page: --page-token"), "{}", table.stdout);
}

#[test]
fn serve_mounts_the_management_api_only_with_admin_tokens() {
    // A generated token: a guessable one is refused (see service_hardening.rs).
    let token = "sAT3kq9ZpWm0vXe7LrJ4yHc2NbF8uGd1QoT6iKs5";
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_ADMIN_TOKEN", token);
    let server = Server::start(&k, SQLITE_DEFAULT_URL, &[]);
    assert!(server.log().contains("management API at /iam/v1"), "{}", server.log());
    let bearer = format!("Bearer {token}");
    let json = [("authorization", bearer.as_str()), ("content-type", "application/json")];
    let create = |sa: &str| {
        let body = serde_json::json!({"serviceAccountId": sa, "scopes": ["yc.postbox.send"]}).to_string();
        server.request("POST", "/iam/v1/apiKeys", &json, &body)
    };
    // As keyctl's own commands: a key's service account must exist.
    let unknown = create("made-up-robot");
    assert_eq!((unknown.status, unknown.json()["code"].as_i64()), (404, Some(5)), "{unknown:?}");
    assert!(unknown.json()["message"].as_str().unwrap().contains("made-up-robot"), "{unknown:?}");
    let robot = server.service_account(&bearer, "robot");
    let made = create(&robot);
    assert_eq!(made.status, 200, "{made:?}");
    let secret = made.json()["secret"].as_str().unwrap().to_owned();
    assert_eq!(server.authorize(Some(&secret), Some("yc.postbox.send")).status, 200);
    // The access policies on the account's path apply: a denial bound on
    // its folder refuses the next key with FAILED_PRECONDITION naming it.
    let deny = r#"{"accessPolicyBinding":{"accessPolicyTemplateId":"iam.denyServiceAccountApiKeysCreation"}}"#;
    let bound =
        server.request("POST", "/resource-manager/v1/folders/defaultfolder0000000:bindAccessPolicy", &json, deny);
    assert_eq!(bound.status, 200, "{bound:?}");
    let refused = create(&robot);
    assert_eq!((refused.status, refused.json()["code"].as_i64()), (400, Some(9)), "{refused:?}");
    assert!(
        refused.json()["message"].as_str().unwrap().contains("iam.denyServiceAccountApiKeysCreation"),
        "{refused:?}"
    );
    let anonymous = server.request("GET", "/iam/v1/apiKeyScopes", &[], "");
    assert_eq!(anonymous.status, 401);
    assert_eq!(server.request("GET", "/iam/v1/openapi.json", &[], "").status, 200);
    server.stop();

    let off = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
    let server = Server::start(&off, SQLITE_DEFAULT_URL, &[]);
    assert!(server.log().contains("management API off"), "{}", server.log());
    let not_served = server.request("GET", "/iam/v1/apiKeyScopes", &[("authorization", &bearer)], "");
    assert_ne!(not_served.status, 200, "{not_served:?}");
    assert!(!not_served.body.contains("scopes"), "{not_served:?}");
    server.stop();

    let weak = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_ADMIN_TOKEN", "short");
    let run = weak.keyctl(&["serve", "--listen", "127.0.0.1:0"]);
    run.expect(2);
    assert!(run.stderr.contains("admin token 1"), "{}", run.stderr);
}
