//! The management API over HTTP with a real client (reqwest), against the
//! memory, SQLite, PostgreSQL and Redis stores: every row of the table,
//! paging across 250 keys, update masks, operations, idempotent replays,
//! bad bodies, authentication and authorization, and no secret in any answer
//! but create and reissue.
//!
//! Needs PostgreSQL and Redis on loopback (see `tests/common/services.rs`);
//! each test uses a fresh schema / key prefix and removes it.

#![cfg(all(feature = "admin", feature = "sqlite", feature = "postgres", feature = "redis", feature = "test-util"))]
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use api_keys::admin::{AdminApi, ApiKeyAdmin, StaticTokens};
use api_keys::testing::conformance;
use api_keys::testing::{Fault, FaultyStore, Op};
use api_keys::{
    CreateRequest, KeyManager, KeyStore, MemoryStore, Pepper, Peppers, PostgresStore, RedisStore, ScopeCatalog,
    SqliteStore,
};
use common::services::{postgres_down, postgres_url, redis_down, redis_url};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection as _;

const OPS_TOKEN: &str = "ops-admin-token-0123456789";
const ROBOT_TOKEN: &str = "robot-admin-token-0123456789";
const SA: &str = "robot";
const FUTURE: &str = "2030-01-01T00:00:00Z";
const BODY_LIMIT: usize = 4096;

fn manager<S: KeyStore>(store: S) -> KeyManager<S> {
    KeyManager::builder(
        Arc::new(store),
        Peppers::single(Pepper::new(1, [3u8; 32]).unwrap()),
        api_keys::testing::scope_catalog(),
    )
    .build()
}

fn tokens() -> StaticTokens {
    StaticTokens::new()
        .token("ops", OPS_TOKEN)
        .unwrap()
        .limited_token("robot-admin", ROBOT_TOKEN, [api_keys::ServiceAccountId::new(SA).unwrap()])
        .unwrap()
}

/// Serves `app` nested at `/iam/v1` on a loopback port.
async fn serve(router: axum::Router) -> String {
    let app = axum::Router::new().nest("/iam/v1", router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/iam/v1")
}

/// A client that records every answer, to check where secrets appear.
struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<&'static str>,
    /// Whether every request asks for `view=FULL`.
    full: bool,
    /// Every answer body, and whether it may hold a secret (create/reissue).
    seen: std::sync::Mutex<Vec<(bool, String)>>,
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Client {
    fn new(base: &str, token: Option<&'static str>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            token,
            full: false,
            seen: std::sync::Mutex::default(),
        }
    }

    fn as_token(&self, token: Option<&'static str>) -> Self {
        Self { full: self.full, ..Self::new(&self.base, token) }
    }

    /// The same client asking for `view=FULL` (`full`) or the cloud's shape.
    fn full(&self, full: bool) -> Self {
        Self { full, ..Self::new(&self.base, self.token) }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<String>, idem: Option<&str>) -> Answer {
        let url = match (self.full, path.contains('?')) {
            (false, _) => format!("{}{path}", self.base),
            (true, false) => format!("{}{path}?view=FULL", self.base),
            (true, true) => format!("{}{path}&view=FULL", self.base),
        };
        let mut req = self.http.request(method.clone(), url);
        if let Some(t) = self.token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = idem {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let bare = path.split('?').next().unwrap_or(path);
        let may_hold_secret = method == reqwest::Method::POST && (bare == "/apiKeys" || bare.ends_with(":reissue"));
        self.seen.lock().unwrap().push((may_hold_secret, text.clone()));
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Answer { status, headers, body }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(reqwest::Method::POST, path, Some(body.to_string()), None).await
    }

    async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(reqwest::Method::PATCH, path, Some(body.to_string()), None).await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.send(reqwest::Method::DELETE, path, None, None).await
    }

    /// Every secret seen appears only in create/reissue answers.
    fn assert_secrets_only_where_allowed(&self, secrets: &[String]) {
        for (allowed, body) in self.seen.lock().unwrap().iter() {
            if !allowed {
                for s in secrets {
                    assert!(!body.contains(s.as_str()), "a secret in an answer: {body}");
                }
            }
        }
    }
}

fn assert_error(a: &Answer, status: u16, code: i64, what: &str) {
    assert_eq!(a.status.as_u16(), status, "{what}: {:?}", a.body);
    assert_eq!(a.body["code"], code, "{what}: {:?}", a.body);
    assert!(a.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {:?}", a.body);
    assert_eq!(a.body["details"], json!([]), "{what}");
}

fn create_body(description: &str) -> Value {
    json!({"serviceAccountId": SA, "description": description, "scopes": ["yc.monitoring.read", "yc.postbox.send"], "expiresAt": FUTURE})
}

/// The whole table against one store.
async fn scenario<S: KeyStore + Clone>(store: S) {
    let manager = manager(store);
    let verifier = manager.verifier().build();
    let base = serve(AdminApi::new(manager.clone(), tokens()).body_limit(BODY_LIMIT).router()).await;
    let c = Client::new(&base, Some(OPS_TOKEN));
    let f = c.full(true);
    let mut secrets = Vec::new();

    // create: the cloud's shape, exactly (the extension fields need view=FULL)
    let a = c.post("/apiKeys", create_body("for ci")).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let secret = a.body["secret"].as_str().unwrap().to_owned();
    secrets.push(secret.clone());
    let key = a.body["apiKey"].clone();
    let id = key["id"].as_str().unwrap().to_owned();
    assert_eq!(key["serviceAccountId"], SA);
    assert_eq!(key["description"], "for ci");
    assert_eq!(key["scopes"], json!(["yc.monitoring.read", "yc.postbox.send"]));
    assert_eq!(key["expiresAt"], FUTURE);
    assert_eq!(key["maskedSecret"], format!("****{}", &secret[secret.len() - 6..]));
    let mut fields: Vec<&str> = key.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["createdAt", "description", "expiresAt", "id", "maskedSecret", "scopes", "serviceAccountId"]);
    assert!(key["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(a.headers["cache-control"], "no-store", "an answer with a secret is never cached");
    let full = f.get(&format!("/apiKeys/{id}")).await.body;
    assert_eq!((full["status"].as_str(), full["enabled"].as_bool()), (Some("ACTIVE"), Some(true)), "{full}");
    let monitoring = api_keys::testing::scope_catalog().requirement("yc.monitoring.read").unwrap();
    let postbox = api_keys::testing::scope_catalog().requirement("yc.postbox.send").unwrap();
    let header = format!("Api-Key {secret}");
    verifier.verify(header.as_bytes(), Some(&postbox)).await.unwrap();

    // create with default scopes; bad input
    let a = c.post("/apiKeys", json!({"serviceAccountId": SA})).await;
    assert_eq!(a.status, StatusCode::OK);
    secrets.push(a.body["secret"].as_str().unwrap().to_owned());
    let defaults: Vec<String> =
        api_keys::testing::scope_catalog().defaults().iter().map(|s| s.as_str().to_owned()).collect();
    assert_eq!(a.body["apiKey"]["scopes"], json!(defaults));
    let a = c.post("/apiKeys", json!({"serviceAccountId": SA, "scopes": ["yc.nothing.here"]})).await;
    assert_error(&a, 400, 3, "unknown scope");
    assert!(a.body["message"].as_str().unwrap().contains("yc.nothing.here"));
    assert_error(
        &c.post("/apiKeys", json!({"serviceAccountId": SA, "expiresAt": "2020-01-01T00:00:00Z"})).await,
        400,
        3,
        "past expiry",
    );
    assert_error(
        &c.post("/apiKeys", json!({"serviceAccountId": SA, "expiresAt": "tomorrow"})).await,
        400,
        3,
        "bad time",
    );
    assert_error(&c.post("/apiKeys", json!({"serviceAccountId": SA, "color": "red"})).await, 400, 3, "unknown field");
    assert_error(
        &c.post("/apiKeys", json!({"serviceAccountId": SA, "scopes": "yc.postbox.send"})).await,
        400,
        3,
        "wrong type",
    );
    assert_error(&c.post("/apiKeys", json!({"serviceAccountId": 42})).await, 400, 3, "wrong type");
    assert_error(&c.post("/apiKeys", json!({"serviceAccountId": "bad id!"})).await, 400, 3, "bad account");
    assert_error(
        &c.send(reqwest::Method::POST, "/apiKeys", Some("{\"serviceAccountId\":".into()), None).await,
        400,
        3,
        "bad JSON",
    );
    assert_error(&c.send(reqwest::Method::POST, "/apiKeys", None, None).await, 400, 3, "no body");
    let big = json!({"serviceAccountId": SA, "description": "x".repeat(BODY_LIMIT)});
    assert_error(&c.post("/apiKeys", big).await, 400, 3, "oversized body");
    cloud_limits(&c).await;

    // get
    let a = c.get(&format!("/apiKeys/{id}")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, key, "get shows what create showed");
    assert!(a.body.get("secret").is_none());
    assert_error(&c.get("/apiKeys/not-an-id").await, 400, 3, "bad id");
    assert_error(&c.get(&format!("/apiKeys/{}", conformance::key_id())).await, 404, 5, "unknown id");

    // update: mask present; the operation packs its metadata and response
    let a = c.patch(&format!("/apiKeys/{id}"), json!({"updateMask": "description", "description": "renamed"})).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["done"], true);
    assert_eq!(a.body["createdBy"], "ops");
    assert_eq!(
        a.body["metadata"],
        json!({"@type": "type.googleapis.com/yandex.cloud.iam.v1.UpdateApiKeyMetadata", "apiKeyId": id})
    );
    assert_eq!(a.body["response"]["@type"], "type.googleapis.com/yandex.cloud.iam.v1.ApiKey");
    assert!(a.body["response"].get("status").is_none(), "no extension field: {:?}", a.body);
    assert_eq!(a.body["response"]["description"], "renamed");
    assert_eq!(a.body["response"]["scopes"], key["scopes"], "fields outside the mask stay");
    assert_eq!(a.body["response"]["expiresAt"], FUTURE);
    let first_update = a.body["id"].as_str().unwrap().to_owned();
    // a mask naming scopes without scopes is refused (never the defaults);
    // a scope update takes effect on the next verify.
    assert_error(&c.patch(&format!("/apiKeys/{id}"), json!({"updateMask": "scopes"})).await, 400, 3, "no scopes");
    let a = c.patch(&format!("/apiKeys/{id}"), json!({"updateMask": "scopes", "scopes": ["yc.monitoring.read"]})).await;
    assert_eq!(a.body["response"]["scopes"], json!(["yc.monitoring.read"]));
    assert!(verifier.verify(header.as_bytes(), Some(&postbox)).await.is_err(), "the old scope still works");
    let a = c.patch(&format!("/apiKeys/{id}"), json!({"updateMask": "scopes,expiresAt", "scopes": ["yc.monitoring.read"], "expiresAt": "2031-02-03T04:05:06Z"})).await;
    assert_eq!(a.body["response"]["scopes"], json!(["yc.monitoring.read"]));
    assert_eq!(a.body["response"]["expiresAt"], "2031-02-03T04:05:06Z");
    verifier.verify(header.as_bytes(), Some(&monitoring)).await.unwrap();
    // no mask: the fields present change, the rest stay
    let a = c.patch(&format!("/apiKeys/{id}"), json!({"description": "all", "scopes": ["yc.monitoring.read"]})).await;
    assert_eq!(a.body["response"]["description"], "all");
    assert_eq!(a.body["response"]["expiresAt"], "2031-02-03T04:05:06Z", "expiry kept: {:?}", a.body);
    // a field outside the mask is left untouched
    let a = c
        .patch(&format!("/apiKeys/{id}"), json!({"updateMask": "expiresAt", "expiresAt": FUTURE, "description": "x"}))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(
        (a.body["response"]["description"].as_str(), a.body["response"]["expiresAt"].as_str()),
        (Some("all"), Some(FUTURE))
    );
    assert_error(
        &c.patch(&format!("/apiKeys/{id}"), json!({"updateMask": "status"})).await,
        400,
        3,
        "unknown mask field",
    );
    assert_error(
        &c.patch(&format!("/apiKeys/{id}"), json!({"updateMask": "expiresAt", "expiresAt": "2020-01-01T00:00:00Z"}))
            .await,
        400,
        3,
        "past expiry",
    );
    assert_error(
        &c.patch(&format!("/apiKeys/{id}"), json!({"updateMask": "scopes", "scopes": ["nope.nope"]})).await,
        400,
        3,
        "unknown scope",
    );
    assert_error(&c.patch(&format!("/apiKeys/{id}"), json!({"scopes": [1]})).await, 400, 3, "wrong type");
    assert_error(
        &c.patch(&format!("/apiKeys/{}", conformance::key_id()), json!({"description": "x"})).await,
        404,
        5,
        "unknown id",
    );

    // operations: newest first, paged; each with its response
    let basic = c.get(&format!("/apiKeys/{id}/operations")).await;
    let types: Vec<&str> =
        basic.body["operations"].as_array().unwrap().iter().map(|o| o["metadata"]["@type"].as_str().unwrap()).collect();
    assert_eq!(types[0], "type.googleapis.com/yandex.cloud.iam.v1.UpdateApiKeyMetadata");
    assert_eq!(types[5], "type.googleapis.com/apikeys.v1.CreateApiKeyMetadata");
    assert_eq!(
        basic.body["operations"][4]["response"],
        json!({"@type": "type.googleapis.com/apikeys.v1.ApiKeyChanges", "description": "renamed"})
    );
    assert!(basic.body["operations"][4]["metadata"].get("kind").is_none(), "no extension field");
    let a = f.get(&format!("/apiKeys/{id}/operations")).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let ops = a.body["operations"].as_array().unwrap();
    let kinds: Vec<&str> = ops.iter().map(|o| o["metadata"]["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["update", "update", "update", "update", "update", "create"]);
    assert_eq!(ops[4]["id"], first_update.as_str());
    assert_eq!(ops[4]["metadata"]["changes"], json!({"description": "renamed"}));
    assert_eq!(ops[0]["createdBy"], "ops");
    assert_eq!(a.body["nextPageToken"], "");
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let a = c.get(&format!("/apiKeys/{id}/operations?pageSize=2&pageToken={token}")).await;
        paged.extend(a.body["operations"].as_array().unwrap().iter().map(|o| o["id"].clone()));
        token = a.body["nextPageToken"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(paged, ops.iter().map(|o| o["id"].clone()).collect::<Vec<_>>());
    assert_error(&c.get(&format!("/apiKeys/{id}/operations?pageToken=garbage")).await, 400, 3, "bad token");

    // reissue with a grace period: the old key still works
    let a = c.post(&format!("/apiKeys/{id}:reissue"), json!({"gracePeriod": "3600s"})).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let new_secret = a.body["secret"].as_str().unwrap().to_owned();
    secrets.push(new_secret.clone());
    let new_id = a.body["apiKey"]["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);
    assert_eq!(a.headers["cache-control"], "no-store");
    assert!(a.body["apiKey"].get("reissuedFrom").is_none(), "extension fields need view=FULL");
    assert_eq!(f.get(&format!("/apiKeys/{new_id}")).await.body["reissuedFrom"], id.as_str());
    verifier.verify(header.as_bytes(), None).await.unwrap();
    verifier.verify(format!("Api-Key {new_secret}").as_bytes(), None).await.unwrap();
    assert_error(&c.post(&format!("/apiKeys/{id}:reissue"), json!({})).await, 400, 9, "second reissue");
    assert_error(
        &c.post(&format!("/apiKeys/{new_id}:reissue"), json!({"gracePeriod": "soon"})).await,
        400,
        3,
        "bad grace",
    );
    assert_error(&c.post(&format!("/apiKeys/{new_id}:frobnicate"), json!({})).await, 404, 5, "unknown method");
    let old = f.get(&format!("/apiKeys/{id}")).await;
    assert_eq!(old.body["replacedBy"], new_id.as_str());

    // revoke
    let a = f.send(reqwest::Method::POST, &format!("/apiKeys/{id}:revoke"), None, None).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["response"]["status"], "REVOKED");
    assert_eq!(a.body["metadata"]["@type"], "type.googleapis.com/apikeys.v1.RevokeApiKeyMetadata");
    assert!(verifier.verify(header.as_bytes(), None).await.is_err());
    assert_error(
        &c.patch(&format!("/apiKeys/{id}"), json!({"updateMask": "description", "description": "x"})).await,
        400,
        9,
        "update of a revoked key",
    );

    // delete: gone, but its log stays
    let a = c.delete(&format!("/apiKeys/{id}")).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["response"], json!({"@type": "type.googleapis.com/google.protobuf.Empty"}));
    assert_eq!(
        a.body["metadata"],
        json!({"@type": "type.googleapis.com/yandex.cloud.iam.v1.DeleteApiKeyMetadata", "apiKeyId": id})
    );
    assert_error(&c.get(&format!("/apiKeys/{id}")).await, 404, 5, "deleted");
    assert_error(&c.delete(&format!("/apiKeys/{id}")).await, 404, 5, "deleted twice");
    let a = f.get(&format!("/apiKeys/{id}/operations")).await;
    let kinds: Vec<&str> =
        a.body["operations"].as_array().unwrap().iter().map(|o| o["metadata"]["kind"].as_str().unwrap()).collect();
    assert_eq!(&kinds[..3], ["delete", "revoke", "reissue"]);
    assert_error(&c.get(&format!("/apiKeys/{}/operations", conformance::key_id())).await, 404, 5, "unknown key's log");

    // scopes (names, paged; descriptions with view=FULL) and the document
    let a = c.get("/apiKeyScopes").await;
    let names = a.body["scopes"].as_array().unwrap();
    assert_eq!(names.len(), api_keys::testing::scope_catalog().list().len());
    assert!(names.contains(&json!("yc.monitoring.read")));
    assert_eq!(a.body["nextPageToken"], "");
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let a = c.get(&format!("/apiKeyScopes?pageSize=4&pageToken={token}")).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        paged.extend(a.body["scopes"].as_array().unwrap().iter().cloned());
        token = a.body["nextPageToken"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(&paged, names);
    assert_error(&c.get("/apiKeyScopes?pageToken=zzz").await, 400, 3, "bad scopes token");
    let a = f.get("/apiKeyScopes").await;
    let scopes = a.body["scopes"].as_array().unwrap();
    assert!(scopes.iter().any(|s| s["id"] == "yc.monitoring.read" && s["description"].is_string()));
    assert_eq!(scopes.iter().filter(|s| s["default"] == true).count(), defaults.len());
    assert_error(&c.get("/apiKeyScopes?view=PARTIAL").await, 400, 3, "bad view");
    let doc = c.get("/openapi.json").await;
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));

    idempotency(&c, &mut secrets).await;
    authorization(&c, &id, &new_id).await;
    paging(&c, &mut secrets).await;
    c.assert_secrets_only_where_allowed(&secrets);
}

/// The cloud's validation limits on create, and its deprecated `scope`.
async fn cloud_limits(c: &Client) {
    let catalog = api_keys::testing::scope_catalog();
    let a = c.post("/apiKeys", json!({"serviceAccountId": SA, "scopes": ["yc.postbox.send", "yc.postbox.send"]})).await;
    assert_error(&a, 400, 3, "duplicate scopes are refused, not merged");
    let many: Vec<String> = (0..101).map(|i| format!("s{i}")).collect();
    assert_error(&c.post("/apiKeys", json!({"serviceAccountId": SA, "scopes": many})).await, 400, 3, "101 scopes");
    let long = format!("yc.{}", "a".repeat(260));
    assert_error(&c.post("/apiKeys", json!({"serviceAccountId": SA, "scopes": [long]})).await, 400, 3, "long scope");
    assert_error(
        &c.post("/apiKeys", json!({"serviceAccountId": SA, "description": "é".repeat(257)})).await,
        400,
        3,
        "description over 256",
    );
    assert_error(
        &c.post("/apiKeys", json!({"serviceAccountId": SA, "expiresAt": "2106-01-01T00:00:00Z"})).await,
        400,
        3,
        "expiry after 2105",
    );
    assert_error(&c.post("/apiKeys", json!({"serviceAccountId": "a".repeat(51)})).await, 400, 3, "account id over 50");
    let a = c.post("/apiKeys", json!({"serviceAccountId": SA, "description": "é".repeat(256), "expiresAt": "2105-12-31T23:59:59.999999999Z"})).await;
    assert_eq!(a.status, StatusCode::OK, "the limits themselves are accepted: {:?}", a.body);
    c.delete(&format!("/apiKeys/{}", a.body["apiKey"]["id"].as_str().unwrap())).await;
    // The deprecated `scope` is one scope; with `scopes` too it is ambiguous.
    let a = c.post("/apiKeys", json!({"serviceAccountId": SA, "scope": "yc.postbox.send"})).await;
    assert_eq!(a.body["apiKey"]["scopes"], json!(["yc.postbox.send"]), "{:?}", a.body);
    assert!(catalog.contains("yc.postbox.send"));
    c.delete(&format!("/apiKeys/{}", a.body["apiKey"]["id"].as_str().unwrap())).await;
    let both = json!({"serviceAccountId": SA, "scope": "yc.postbox.send", "scopes": ["yc.monitoring.read"]});
    assert_error(&c.post("/apiKeys", both).await, 400, 3, "scope and scopes");
}

async fn idempotency(c: &Client, secrets: &mut Vec<String>) {
    let k = "8e0f6b53-6a40-4c1e-9e3c-3f0b2d6f1a11";
    let body = create_body("idempotent").to_string();
    let first = c.send(reqwest::Method::POST, "/apiKeys", Some(body.clone()), Some(k)).await;
    assert_eq!(first.status, StatusCode::OK);
    secrets.push(first.body["secret"].as_str().unwrap().to_owned());
    let replay = c.send(reqwest::Method::POST, "/apiKeys", Some(body.clone()), Some(k)).await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.headers["cache-control"], "no-store");
    assert_eq!(replay.body["apiKey"], first.body["apiKey"], "a replay names the same key");
    assert!(replay.body.get("secret").is_none(), "a replay never shows the secret again");
    let listed = c.get(&format!("/apiKeys?serviceAccountId={SA}&pageSize=1000")).await;
    let n = listed.body["apiKeys"].as_array().unwrap().iter().filter(|k| k["description"] == "idempotent").count();
    assert_eq!(n, 1, "a replayed create made a second key");
    let other = c.send(reqwest::Method::POST, "/apiKeys", Some(create_body("other").to_string()), Some(k)).await;
    assert_error(&other, 400, 9, "same key, other body");
    assert_error(
        &c.send(reqwest::Method::POST, "/apiKeys", Some(body.clone()), Some("not-a-uuid")).await,
        400,
        3,
        "bad key",
    );
    // An idempotent update logs once.
    let id = first.body["apiKey"]["id"].as_str().unwrap();
    let patch = json!({"updateMask": "description", "description": "once"}).to_string();
    let k2 = "0b8f3c1e-2f5d-4e8a-9d7c-6a5b4c3d2e1f";
    let a = c.send(reqwest::Method::PATCH, &format!("/apiKeys/{id}"), Some(patch.clone()), Some(k2)).await;
    let b = c.send(reqwest::Method::PATCH, &format!("/apiKeys/{id}"), Some(patch), Some(k2)).await;
    assert_eq!(a.body, b.body);
    let ops = c.get(&format!("/apiKeys/{id}/operations")).await;
    assert_eq!(ops.body["operations"].as_array().unwrap().len(), 2, "create + one update");
}

async fn authorization(c: &Client, deleted: &str, live: &str) {
    let anonymous = c.as_token(None);
    let a = anonymous.get(&format!("/apiKeys?serviceAccountId={SA}")).await;
    assert_error(&a, 401, 16, "no credentials");
    assert!(a.headers.contains_key("www-authenticate"));
    assert_error(&c.as_token(Some("wrong-token-0123456789abc")).get("/apiKeyScopes").await, 401, 16, "wrong token");
    assert_error(&anonymous.post("/apiKeys", create_body("x")).await, 401, 16, "no credentials on create");
    // The robot admin manages `robot` only.
    let robot = c.as_token(Some(ROBOT_TOKEN));
    assert_eq!(robot.get(&format!("/apiKeys/{live}")).await.status, StatusCode::OK);
    let foreign = c.post("/apiKeys", json!({"serviceAccountId": "someone-else"})).await;
    let foreign_id = foreign.body["apiKey"]["id"].as_str().unwrap();
    assert_error(&robot.post("/apiKeys", json!({"serviceAccountId": "someone-else"})).await, 403, 7, "foreign create");
    // A key the robot may not see is "not found", word for word as a missing one.
    let hidden = robot.get(&format!("/apiKeys/{foreign_id}")).await;
    assert_error(&hidden, 404, 5, "foreign get");
    let missing_id = conformance::key_id().to_string();
    let missing = robot.get(&format!("/apiKeys/{missing_id}")).await;
    assert_eq!(
        hidden.body["message"].as_str().unwrap().replace(foreign_id, "ID"),
        missing.body["message"].as_str().unwrap().replace(&missing_id, "ID"),
    );
    assert_error(&robot.get("/apiKeys?serviceAccountId=someone-else").await, 403, 7, "foreign list");
    assert_error(
        &robot.patch(&format!("/apiKeys/{foreign_id}"), json!({"description": "x"})).await,
        404,
        5,
        "foreign update",
    );
    assert_error(&robot.delete(&format!("/apiKeys/{foreign_id}")).await, 404, 5, "foreign delete");
    assert_error(&robot.get(&format!("/apiKeys/{foreign_id}/operations")).await, 404, 5, "foreign log");
    // Without serviceAccountId the robot lists its own account; an operator must name one.
    let own = robot.get("/apiKeys").await;
    assert_eq!(own.status, StatusCode::OK, "{:?}", own.body);
    assert!(own.body["apiKeys"].as_array().unwrap().iter().all(|k| k["serviceAccountId"] == SA));
    let made = robot.post("/apiKeys", json!({"description": "own account"})).await;
    assert_eq!(made.body["apiKey"]["serviceAccountId"], SA, "{:?}", made.body);
    robot.delete(&format!("/apiKeys/{}", made.body["apiKey"]["id"].as_str().unwrap())).await;
    assert_eq!(
        robot.get(&format!("/apiKeys/{deleted}/operations")).await.status,
        StatusCode::OK,
        "own deleted key's log"
    );
    c.delete(&format!("/apiKeys/{foreign_id}")).await;
}

async fn paging(c: &Client, secrets: &mut Vec<String>) {
    let sa = format!("paging-{}", conformance::key_id());
    let mut made = HashSet::new();
    for _ in 0..250 {
        let a = c.post("/apiKeys", json!({"serviceAccountId": sa})).await;
        secrets.push(a.body["secret"].as_str().unwrap().to_owned());
        made.insert(a.body["apiKey"]["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut token = String::new();
    loop {
        let a = c.get(&format!("/apiKeys?serviceAccountId={sa}&pageSize=100&pageToken={token}")).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        let page = a.body["apiKeys"].as_array().unwrap();
        sizes.push(page.len());
        seen.extend(page.iter().map(|k| k["id"].as_str().unwrap().to_owned()));
        token = a.body["nextPageToken"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(sizes, [100, 100, 50]);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "by id");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), made);
    let default = c.get(&format!("/apiKeys?serviceAccountId={sa}")).await;
    assert_eq!(default.body["apiKeys"].as_array().unwrap().len(), 100, "default page size");
    assert_error(&c.get(&format!("/apiKeys?serviceAccountId={sa}&pageSize=1001")).await, 400, 3, "page too big");
    assert_error(&c.get(&format!("/apiKeys?serviceAccountId={sa}&pageSize=ten")).await, 400, 3, "page size type");
    assert_error(&c.get(&format!("/apiKeys?serviceAccountId={sa}&pageToken=zzz")).await, 400, 3, "bad token");
    assert_error(&c.get(&format!("/apiKeys?serviceAccountId={sa}&color=red")).await, 400, 3, "unknown parameter");
    assert_error(&c.get("/apiKeys").await, 400, 3, "no account for an operator token");
    // Page tokens are opaque: no key id can be read from one.
    let a = c.get(&format!("/apiKeys?serviceAccountId={sa}&pageSize=1")).await;
    let token = a.body["nextPageToken"].as_str().unwrap();
    let raw = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, token).unwrap();
    let first = a.body["apiKeys"][0]["id"].as_str().unwrap();
    assert!(!raw.windows(first.len()).any(|w| w == first.as_bytes()), "the token shows a key id");
    assert!(!token.contains(&base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &first[..9])));
}

// ----- backends -----

/// Runs `test` in its own task, then `cleanup`, then re-raises a panic.
async fn guarded<Fut: Future<Output = ()> + Send + 'static>(test: Fut, cleanup: impl Future<Output = ()>) {
    let outcome = tokio::spawn(test).await;
    cleanup.await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A SQLite store in a fresh directory, which lives as long as the guard.
async fn sqlite_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(&format!("sqlite://{}", dir.path().join("keys.db").display())).await.unwrap();
    (dir, store)
}

/// Runs `scenario` on a PostgreSQL store in a schema of its own (named
/// `prefix` and a random id), dropped afterwards even if the scenario fails.
async fn on_postgres<Fut>(prefix: &str, scenario: impl FnOnce(PostgresStore) -> Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let schema = format!("{prefix}{}", conformance::key_id());
    let store = PostgresStore::builder(postgres_url())
        .schema(schema.clone())
        .max_connections(4)
        .connect()
        .await
        .unwrap_or_else(|e| postgres_down(&e, "a database you may create schemas in"));
    let pool = store.pool().clone();
    guarded(scenario(store), async move {
        pool.close().await;
        let mut admin = sqlx::PgConnection::connect(&postgres_url()).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
            .execute(&mut admin)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn memory() {
    scenario(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn sqlite() {
    let (_dir, store) = sqlite_store().await;
    scenario(store).await;
}

#[tokio::test]
async fn postgres() {
    on_postgres("api_keys_admin_", scenario).await;
}

#[tokio::test]
async fn redis() {
    let store = RedisStore::builder(redis_url())
        .prefix(format!("api-keys-admin-{}", conformance::key_id()))
        .connect()
        .await
        .unwrap_or_else(|e| redis_down(&e, "a server"));
    let cleanup = store.clone();
    guarded(scenario(store), async move {
        cleanup.purge().await.unwrap();
    })
    .await;
}

/// A store failure answers 503 (code 14) and writes nothing: neither the
/// change nor its log entry.
#[tokio::test]
async fn a_store_failure_is_503_and_changes_nothing() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let manager = manager(Arc::clone(&store));
    let base = serve(AdminApi::new(manager, tokens()).router()).await;
    let c = Client::new(&base, Some(OPS_TOKEN));
    let id = c.post("/apiKeys", create_body("stable")).await.body["apiKey"]["id"].as_str().unwrap().to_owned();
    for (op, call) in [(Op::Update, "update"), (Op::Revoke, "revoke"), (Op::Delete, "delete"), (Op::Insert, "create")] {
        store.inject(op, Fault::Error, 1);
        let a = match call {
            "update" => {
                c.patch(&format!("/apiKeys/{id}"), json!({"updateMask": "description", "description": "changed"})).await
            }
            "revoke" => c.post(&format!("/apiKeys/{id}:revoke"), json!({})).await,
            "delete" => c.delete(&format!("/apiKeys/{id}")).await,
            _ => c.post("/apiKeys", create_body("never")).await,
        };
        assert_error(&a, 503, 14, call);
    }
    let key = c.full(true).get(&format!("/apiKeys/{id}")).await.body;
    assert_eq!((key["description"].as_str(), key["status"].as_str()), (Some("stable"), Some("ACTIVE")));
    let ops = c.get(&format!("/apiKeys/{id}/operations")).await.body;
    assert_eq!(ops["operations"].as_array().unwrap().len(), 1, "only the create is logged");
    let listed = c.get(&format!("/apiKeys?serviceAccountId={SA}")).await.body;
    assert_eq!(listed["apiKeys"].as_array().unwrap().len(), 1);
}

/// API keys with the admin scope manage their own service account only;
/// without the scope they are refused (403), bad keys are 401.
#[tokio::test]
async fn api_keys_with_the_admin_scope_are_admins_of_their_own_account() {
    let catalog = ScopeCatalog::builder()
        .scope("iam.apikeys.admin", "Manage API keys")
        .scope("docs.read", "Read documents")
        .defaults(["docs.read"])
        .build()
        .unwrap();
    let manager = KeyManager::builder(
        Arc::new(MemoryStore::new()),
        Peppers::single(Pepper::new(1, [5u8; 32]).unwrap()),
        catalog.clone(),
    )
    .build();
    let admin_key = manager.create(CreateRequest::new(SA).scopes(["iam.apikeys.admin"])).await.unwrap();
    let reader_key = manager.create(CreateRequest::new(SA)).await.unwrap();
    let foreign = manager.create(CreateRequest::new("someone-else")).await.unwrap();
    let auth =
        ApiKeyAdmin::new(Arc::new(manager.verifier().build()), catalog.requirement("iam.apikeys.admin").unwrap());
    let base = serve(AdminApi::new(manager, auth).router()).await;
    let http = reqwest::Client::new();
    let call = |key: String, path: String| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move { http.get(url).header("authorization", format!("Api-Key {key}")).send().await.unwrap() }
    };
    let own = call(admin_key.secret.expose_secret().to_owned(), format!("/apiKeys/{}", reader_key.api_key.id)).await;
    assert_eq!(own.status(), StatusCode::OK);
    let other = call(admin_key.secret.expose_secret().to_owned(), format!("/apiKeys/{}", foreign.api_key.id)).await;
    assert_eq!(other.status(), StatusCode::NOT_FOUND, "another account's key is not found");
    let reader =
        call(reader_key.secret.expose_secret().to_owned(), format!("/apiKeys/{}", reader_key.api_key.id)).await;
    assert_eq!(reader.status(), StatusCode::FORBIDDEN);
    let body: Value = reader.json().await.unwrap();
    assert_eq!(body["code"], 7);
    let bad = call("ak_notakey".to_owned(), "/apiKeyScopes".to_owned()).await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
}

// ----- key controls (issue 15) -----

/// Every control through the API on one store: create shows them at once,
/// get and list show them, PATCH sets, clears, disables and enables them
/// through `updateMask`, bad values are 400 naming the field, and the
/// cross-account listings are filtered by what the caller may list.
async fn controls_scenario<S: KeyStore + Clone>(store: S) {
    let manager = manager(store);
    let verifier = manager.verifier().build();
    let base = serve(AdminApi::new(manager, tokens()).router()).await;
    let c = Client::new(&base, Some(OPS_TOKEN)).full(true);
    let ext = format!("cust_{}", conformance::key_id());
    let controls = json!({
        "metadata": {"plan": "pro", "seats": 3},
        "externalId": ext,
        "allowedIps": ["10.0.0.0/8", "2001:db8::/32"],
        "credits": {"remaining": 100, "refill": {"amount": 50, "period": "DAILY", "atSecond": 23_400}},
        "rateLimits": ["api=100/1s:burst=20"],
    });
    let mut body = controls.clone();
    body["serviceAccountId"] = json!(SA);
    body["enabled"] = json!(false);
    let a = c.post("/apiKeys", body).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let secret = a.body["secret"].as_str().unwrap().to_owned();
    let key = a.body["apiKey"].clone();
    let id = key["id"].as_str().unwrap().to_owned();
    assert_eq!(key["enabled"], false, "the create response shows the created key's flag");
    for field in ["metadata", "externalId", "allowedIps", "credits", "rateLimits"] {
        assert_eq!(key[field], controls[field], "create response: {field}");
    }
    let got = c.get(&format!("/apiKeys/{id}")).await.body;
    assert_eq!(got, key, "get shows what create showed");
    let header = format!("Api-Key {secret}");
    let disabled = verifier.verify(header.as_bytes(), None).await;
    assert!(matches!(disabled, Err(api_keys::VerifyError::Disabled(_))), "{disabled:?}");

    // PATCH: enable, then change credits and clear the rate limits in one mask.
    let a = c.patch(&format!("/apiKeys/{id}"), json!({"updateMask": "enabled", "enabled": true})).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["response"]["enabled"], true);
    assert_eq!(a.body["metadata"]["changes"], json!({"enabled": true}));
    let inside = api_keys::VerifyContext::new().client_ip("10.1.2.3".parse::<std::net::IpAddr>().ok()).cost(0);
    verifier.verify_with(header.as_bytes(), &inside).await.unwrap();
    let a = c
        .patch(
            &format!("/apiKeys/{id}"),
            json!({"updateMask": "credits,rateLimits", "credits": {"remaining": 5, "refill": {"amount": 9, "period": "MONTHLY"}}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let updated = &a.body["response"];
    assert_eq!(
        updated["credits"],
        json!({"remaining": 5, "refill": {"amount": 9, "period": "MONTHLY", "atSecond": 0}})
    );
    assert!(updated.get("rateLimits").is_none(), "named and absent: cleared");
    assert_eq!(updated["allowedIps"], controls["allowedIps"], "not named: kept");
    assert!(a.body["metadata"]["changes"]["rateLimits"].is_null());
    // Without a mask the fields present are set; the rest stay.
    let a =
        c.patch(&format!("/apiKeys/{id}"), json!({"description": "d", "enabled": false, "metadata": {"a": 1}})).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(
        (a.body["response"]["enabled"].clone(), a.body["response"]["metadata"].clone()),
        (json!(false), json!({"a": 1}))
    );
    assert_eq!(a.body["response"]["externalId"], json!(ext), "absent control kept");
    assert_error(
        &c.patch(&format!("/apiKeys/{id}"), json!({"updateMask": "enabled,metadata"})).await,
        400,
        3,
        "enabled named but absent",
    );
    let a = c
        .patch(
            &format!("/apiKeys/{id}"),
            json!({"updateMask": "enabled,metadata,externalId,allowedIps,credits", "enabled": true}),
        )
        .await;
    let cleared = &a.body["response"];
    assert_eq!(cleared["enabled"], true, "enabled as given");
    for field in ["metadata", "externalId", "allowedIps", "credits", "rateLimits"] {
        assert!(cleared.get(field).is_none(), "{field} cleared: {cleared}");
    }
    let a = c.patch(&format!("/apiKeys/{id}"), json!({"updateMask": "description", "enabled": false})).await;
    assert_eq!(a.body["response"]["enabled"], true, "a field outside the mask is left untouched: {:?}", a.body);

    // Bad values: 400, code 3, the message names the field; nothing is written.
    let bad: [(&str, Value); 9] = [
        ("metadata", json!([1, 2])),
        ("metadata", json!({"x": "a".repeat(5000)})),
        ("externalId", json!("has space")),
        ("allowedIps", json!(["10.0.0.0/33"])),
        ("allowedIps", json!([])),
        ("rateLimits", json!(["api=0/1s"])),
        ("rateLimits", json!(["a=1/1s", "a=2/1s"])),
        ("credits", json!({"remaining": 9_223_372_036_854_775_808_u64})),
        ("credits", json!({"remaining": 1, "refill": {"amount": 1, "period": "DAILY", "atSecond": 61}})),
    ];
    for (field, value) in bad {
        let a = c.post("/apiKeys", json!({"serviceAccountId": SA, field: value.clone()})).await;
        assert_error(&a, 400, 3, field);
        assert!(a.body["message"].as_str().unwrap().starts_with(&format!("{field}: ")), "{field}: {:?}", a.body);
        let a = c.patch(&format!("/apiKeys/{id}"), json!({"updateMask": field, field: value})).await;
        assert_error(&a, 400, 3, field);
        assert!(a.body["message"].as_str().unwrap().starts_with(&format!("{field}: ")), "{field}: {:?}", a.body);
    }
    let wrong_type = c.post("/apiKeys", json!({"serviceAccountId": SA, "credits": {"remaining": -1}})).await;
    assert_error(&wrong_type, 400, 3, "negative credits");
    assert_error(&c.post("/apiKeys", json!({"serviceAccountId": SA, "enabled": "no"})).await, 400, 3, "enabled type");
    let listed = c.get(&format!("/apiKeys?serviceAccountId={SA}")).await.body;
    assert_eq!(listed["apiKeys"].as_array().unwrap().len(), 1, "no bad create wrote a key");

    // externalId across service accounts, filtered by what the caller may list.
    let mine =
        c.post("/apiKeys", json!({"serviceAccountId": SA, "externalId": ext})).await.body["apiKey"]["id"].clone();
    let theirs =
        c.post("/apiKeys", json!({"serviceAccountId": "someone-else", "externalId": ext})).await.body["apiKey"]["id"]
            .clone();
    let ids =
        |a: &Answer| -> Vec<Value> { a.body["apiKeys"].as_array().unwrap().iter().map(|k| k["id"].clone()).collect() };
    let mut both = vec![mine.clone(), theirs.clone()];
    both.sort_by_key(|v| v.as_str().unwrap().to_owned());
    let a = c.get(&format!("/apiKeys?externalId={ext}")).await;
    assert_eq!(ids(&a), both, "{:?}", a.body);
    let robot = c.as_token(Some(ROBOT_TOKEN));
    assert_eq!(ids(&robot.get(&format!("/apiKeys?externalId={ext}")).await), vec![mine], "robot sees its own");

    // expiringWithin: active keys expiring in the window, across accounts.
    let soon = api_keys::Timestamp::now().saturating_add(std::time::Duration::from_secs(2 * 86_400)).to_string();
    let expiring = c.post("/apiKeys", json!({"serviceAccountId": "someone-else", "expiresAt": soon})).await;
    let expiring = expiring.body["apiKey"]["id"].clone();
    let a = c.get("/apiKeys?expiringWithin=604800s").await;
    assert!(ids(&a).contains(&expiring), "{:?}", a.body);
    assert!(!ids(&c.get("/apiKeys?expiringWithin=3600s").await).contains(&expiring));
    assert!(!ids(&robot.get("/apiKeys?expiringWithin=604800s").await).contains(&expiring), "not robot's");
    assert_error(&c.get("/apiKeys?expiringWithin=7d").await, 400, 3, "window format");
    assert_error(&c.get("/apiKeys?externalId=a%20b").await, 400, 3, "bad external id");
    assert_error(&c.get(&format!("/apiKeys?serviceAccountId={SA}&externalId={ext}")).await, 400, 3, "two selections");
    c.assert_secrets_only_where_allowed(&[secret]);
}

#[tokio::test]
async fn key_controls_over_the_api_memory() {
    controls_scenario(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn key_controls_over_the_api_sqlite() {
    let (_dir, store) = sqlite_store().await;
    controls_scenario(store).await;
}

#[tokio::test]
async fn key_controls_over_the_api_postgres() {
    on_postgres("api_keys_admin_controls_", controls_scenario).await;
}

// ----- hardening (issue 25) -----

/// No update widens a key without saying so: toggling `enabled` or setting
/// an allow-list keeps the scopes and expiry; a mask naming `scopes`
/// without any is refused. Before the fix each of these PATCHes reset the
/// scopes to the catalog's ten defaults and removed the expiry.
async fn never_widen_scenario<S: KeyStore + Clone>(store: S) {
    let manager = manager(store);
    let verifier = manager.verifier().build();
    let base = serve(AdminApi::new(manager, tokens()).router()).await;
    let c = Client::new(&base, Some(OPS_TOKEN)).full(true);
    let a =
        c.post("/apiKeys", json!({"serviceAccountId": SA, "scopes": ["yc.postbox.send"], "expiresAt": FUTURE})).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let id = a.body["apiKey"]["id"].as_str().unwrap().to_owned();
    let header = format!("Api-Key {}", a.body["secret"].as_str().unwrap());
    let translate = api_keys::testing::scope_catalog().requirement("yc.ai.translate.execute").unwrap();
    let narrow = |body: &Value| {
        assert_eq!(body["response"]["scopes"], json!(["yc.postbox.send"]), "{body}");
        assert_eq!(body["response"]["expiresAt"], FUTURE, "{body}");
    };
    for patch in [
        json!({"enabled": false}),
        json!({"enabled": true}),
        json!({"allowedIps": ["10.0.0.0/8", "127.0.0.0/8"]}),
        json!({"updateMask": "", "description": "empty mask"}),
    ] {
        let a = c.patch(&format!("/apiKeys/{id}"), patch.clone()).await;
        assert_eq!(a.status, StatusCode::OK, "{patch}: {:?}", a.body);
        narrow(&a.body);
    }
    for patch in [json!({"updateMask": "scopes"}), json!({"updateMask": "scopes", "scopes": []})] {
        assert_error(&c.patch(&format!("/apiKeys/{id}"), patch).await, 400, 3, "masked scopes without any");
    }
    let key = c.get(&format!("/apiKeys/{id}")).await.body;
    assert_eq!((key["scopes"].clone(), key["expiresAt"].clone()), (json!(["yc.postbox.send"]), json!(FUTURE)));
    let local = api_keys::VerifyContext::new()
        .client_ip("127.0.0.1".parse::<std::net::IpAddr>().ok())
        .required(Some(&translate));
    let refused = verifier.verify_with(header.as_bytes(), &local).await;
    assert!(matches!(refused, Err(api_keys::VerifyError::InsufficientScope { .. })), "{refused:?}");
}

#[tokio::test]
async fn updates_never_widen_a_key_sqlite() {
    let (_dir, store) = sqlite_store().await;
    never_widen_scenario(store).await;
}

#[tokio::test]
async fn updates_never_widen_a_key_postgres() {
    on_postgres("api_keys_admin_widen_", never_widen_scenario).await;
}

/// A client that disconnects while its change runs does not leave the
/// `Idempotency-Key` "still running": the change completes, its answer is
/// recorded, and the retry gets it (one key made). Before the fix the
/// handler was dropped with the connection and every retry got 409.
#[tokio::test]
async fn a_client_that_disconnects_gets_the_recorded_answer_on_retry() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let base = serve(AdminApi::new(manager(Arc::clone(&store)), tokens()).router()).await;
    let key = "5d0c2b0a-9a1e-4d55-8f43-2f1a3c9b7e60";
    let body = create_body("disconnected").to_string();
    store.inject(Op::Insert, Fault::Delay(std::time::Duration::from_millis(600)), 1);
    let impatient = reqwest::Client::builder().timeout(std::time::Duration::from_millis(150)).build().unwrap();
    let gone = impatient
        .post(format!("{base}/apiKeys"))
        .bearer_auth(OPS_TOKEN)
        .header("Idempotency-Key", key)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up before the answer");
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let c = Client::new(&base, Some(OPS_TOKEN));
    let retry = c.send(reqwest::Method::POST, "/apiKeys", Some(body), Some(key)).await;
    assert_eq!(retry.status, StatusCode::OK, "{:?}", retry.body);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(retry.headers["cache-control"], "no-store");
    assert!(retry.body.get("secret").is_none());
    let listed = c.get(&format!("/apiKeys?serviceAccountId={SA}")).await.body;
    let ids: Vec<&Value> = listed["apiKeys"].as_array().unwrap().iter().map(|k| &k["id"]).collect();
    assert_eq!(ids, [&retry.body["apiKey"]["id"]], "exactly the recorded key");
}

/// Serves `router` nested at `/iam/v1` with the peer address in the
/// request extensions (as `keyctl serve` does).
async fn serve_with_peers(router: axum::Router) -> String {
    let app = axum::Router::new().nest("/iam/v1", router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap();
    });
    format!("http://{addr}/iam/v1")
}

/// An API key acting as admin grants only scopes it holds, may not change
/// its own limits, and works from the addresses its allow-list names.
#[tokio::test]
async fn api_key_admins_grant_only_what_they_hold() {
    let catalog = ScopeCatalog::builder()
        .scope("iam.apikeys.admin", "Manage API keys")
        .scope("docs.read", "Read documents")
        .scope("docs.write", "Write documents")
        .defaults(["docs.read"])
        .build()
        .unwrap();
    let manager = KeyManager::builder(
        Arc::new(MemoryStore::new()),
        Peppers::single(Pepper::new(1, [6u8; 32]).unwrap()),
        catalog.clone(),
    )
    .build();
    use api_keys::controls::{IpAllowList, KeyControls};
    let local = KeyControls::new().allowed_ips("127.0.0.0/8".parse::<IpAllowList>().unwrap());
    let elsewhere = KeyControls::new().allowed_ips("10.0.0.0/8".parse::<IpAllowList>().unwrap());
    let admin = manager
        .create(CreateRequest::new(SA).scopes(["iam.apikeys.admin", "docs.read"]).controls(local))
        .await
        .unwrap();
    let remote = manager
        .create(CreateRequest::new(SA).scopes(["iam.apikeys.admin", "docs.read"]).controls(elsewhere))
        .await
        .unwrap();
    let auth =
        ApiKeyAdmin::new(Arc::new(manager.verifier().build()), catalog.requirement("iam.apikeys.admin").unwrap());
    let base = serve_with_peers(AdminApi::new(manager, auth).router()).await;
    let http = reqwest::Client::new();
    let send = |secret: String, method: reqwest::Method, path: String, body: Value| {
        let request = http
            .request(method, format!("{base}{path}"))
            .header("authorization", format!("Api-Key {secret}"))
            .json(&body);
        async move {
            let r = request.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let secret = admin.secret.expose_secret().to_owned();
    // Allowed from 127.0.0.1 (the address is passed to the verifier).
    let (status, body) =
        send(secret.clone(), reqwest::Method::POST, "/apiKeys".into(), json!({"scopes": ["docs.read"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sibling = body["apiKey"]["id"].as_str().unwrap().to_owned();
    let (status, body) =
        send(remote.secret.expose_secret().to_owned(), reqwest::Method::GET, "/apiKeyScopes".into(), Value::Null).await;
    assert_eq!((status, body["code"].as_i64()), (StatusCode::FORBIDDEN, Some(7)), "outside its allow-list: {body}");
    // Wider than itself: refused, on create, update and through the defaults.
    for (method, path, body) in [
        (reqwest::Method::POST, "/apiKeys".to_owned(), json!({"scopes": ["docs.write"]})),
        (reqwest::Method::POST, "/apiKeys".to_owned(), json!({"scope": "docs.write"})),
        (reqwest::Method::PATCH, format!("/apiKeys/{sibling}"), json!({"scopes": ["docs.read", "docs.write"]})),
    ] {
        let (status, answer) = send(secret.clone(), method, path, body.clone()).await;
        assert_eq!((status, answer["code"].as_i64()), (StatusCode::FORBIDDEN, Some(7)), "{body}: {answer}");
    }
    // Its own limits are an operator's call; its description is not.
    let own = format!("/apiKeys/{}", admin.api_key.id);
    for body in [
        json!({"credits": {"remaining": 1000000}}),
        json!({"rateLimits": ["api=100000/1s"]}),
        json!({"updateMask": "allowedIps"}),
        json!({"updateMask": "expiresAt"}),
    ] {
        let (status, answer) = send(secret.clone(), reqwest::Method::PATCH, own.clone(), body.clone()).await;
        assert_eq!((status, answer["code"].as_i64()), (StatusCode::FORBIDDEN, Some(7)), "{body}: {answer}");
    }
    let (status, answer) =
        send(secret.clone(), reqwest::Method::PATCH, own.clone(), json!({"description": "me"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) =
        send(secret, reqwest::Method::PATCH, format!("/apiKeys/{sibling}"), json!({"credits": {"remaining": 5}})).await;
    assert_eq!(status, StatusCode::OK, "a sibling's controls are fine: {answer}");
}

/// Failed admin authentications are logged without the token and, past
/// the budget, throttled per client address (429, code 8) even for the
/// right token, while other addresses are served.
#[tokio::test]
async fn failed_admin_authentications_are_logged_and_throttled() {
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let base = serve_with_peers(AdminApi::new(manager(MemoryStore::new()), tokens()).router()).await;
    let c = Client::new(&base, Some(OPS_TOKEN));
    let wrong = c.as_token(Some("wrong-token-guess-0123456789"));
    for _ in 0..20 {
        assert_error(&wrong.get("/apiKeyScopes").await, 401, 16, "wrong token");
    }
    assert_error(&wrong.get("/apiKeyScopes").await, 429, 8, "throttled");
    assert_error(&c.get("/apiKeyScopes").await, 429, 8, "the right token waits too: it is not even checked");
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("admin authentication failed") && log.contains("127.0.0.1"), "{log}");
    assert!(!log.contains("wrong-token-guess"), "the token reached the log");
}

/// A create with a `pgpKey` answers only the secret encrypted to it; a bad
/// key (malformed, expired, signing-only) is refused before any key is
/// made.
#[cfg(feature = "pgp")]
#[tokio::test]
async fn a_pgp_key_gets_the_secret_encrypted_and_a_bad_one_creates_nothing() {
    let base = serve(AdminApi::new(manager(MemoryStore::new()), tokens()).router()).await;
    let http = reqwest::Client::new();
    let create = |body: Value| {
        let (http, url) = (http.clone(), format!("{base}/apiKeys"));
        async move {
            let resp = http.post(url).bearer_auth(OPS_TOKEN).json(&body).send().await.unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        }
    };
    for bad in ["expired.asc", "signing-only.asc", "revoked.asc"] {
        let key = std::fs::read_to_string(format!("tests/data/pgp/{bad}")).unwrap();
        let (status, body) = create(json!({ "serviceAccountId": SA, "pgpKey": key })).await;
        assert_eq!((status, &body["code"]), (StatusCode::BAD_REQUEST, &json!(3)), "{bad}: {body}");
        assert!(body["message"].as_str().unwrap().starts_with("pgpKey"), "{bad}: {body}");
    }
    let (status, _) = create(json!({ "serviceAccountId": SA, "pgpKey": "not a key" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let listed: Value = http
        .get(format!("{base}/apiKeys?serviceAccountId={SA}"))
        .bearer_auth(OPS_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["apiKeys"], json!([]), "no key was made: {listed}");
    let key = std::fs::read_to_string("tests/data/pgp/usable.asc").unwrap();
    let (status, body) = create(json!({ "serviceAccountId": SA, "pgpKey": key })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("secret").is_none(), "no plain secret: {body}");
    let sealed = body["encryptedSecret"].as_str().unwrap();
    assert!(sealed.starts_with("-----BEGIN PGP MESSAGE-----"), "{sealed}");
    assert!(!sealed.contains(body["apiKey"]["id"].as_str().unwrap()), "the message hides the key");
}
