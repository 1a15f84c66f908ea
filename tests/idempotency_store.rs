//! `Idempotency-Key` records kept in the key store, through the management
//! API in process, with interleavings forced by a fault-injecting store:
//! two requests with one key racing (the one whose commit lands second
//! replays the first, for a create and for a delete), a request whose read
//! of the key sees its twin's delete already made (replays it instead of
//! "not found"), a store that keeps no records (fails closed), and a failed
//! commit (recorded nothing: the retry runs).

#![cfg(all(feature = "admin", feature = "test-util"))]
#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;
use std::time::Duration;

use api_keys::admin::{AdminApi, StaticTokens};
use api_keys::testing::{Fault, FaultyStore, Op};
use api_keys::{KeyManager, KeyStore, MemoryStore, Pepper, Peppers};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKEN: &str = "ops-admin-token-0123456789";
const SA: &str = "robot";

async fn serve<S: KeyStore>(store: Arc<S>) -> String {
    let manager = KeyManager::builder(
        store,
        Peppers::single(Pepper::new(1, [3u8; 32]).unwrap()),
        api_keys::testing::scope_catalog(),
    )
    .build();
    let tokens = StaticTokens::new().token("ops", TOKEN).unwrap();
    let app = axum::Router::new().nest("/iam/v1", AdminApi::new(manager, tokens).router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/iam/v1")
}

struct Answer {
    status: StatusCode,
    replayed: bool,
    body: Value,
}

async fn send(base: &str, method: reqwest::Method, path: &str, key: Option<&str>, body: &str) -> Answer {
    let mut req = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let replayed = r.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    let body = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null);
    Answer { status, replayed, body }
}

fn create_body(description: &str) -> String {
    json!({"serviceAccountId": SA, "description": description, "scopes": ["yc.postbox.send"]}).to_string()
}

async fn key_count<S: KeyStore>(store: &S) -> usize {
    let sa = api_keys::ServiceAccountId::new(SA).unwrap();
    store.list(&sa, api_keys::PageRequest::first(100)).await.unwrap().items.len()
}

/// Starts `first`, then, once it is held in the store, `second`; returns
/// both answers.
async fn interleaved(
    first: impl std::future::Future<Output = Answer> + Send + 'static,
    second: impl std::future::Future<Output = Answer>,
) -> (Answer, Answer) {
    let first = tokio::spawn(first);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = second.await;
    (first.await.unwrap(), second)
}

#[tokio::test]
async fn the_commit_that_lands_second_replays_the_first() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let base = serve(Arc::clone(&store)).await;
    let key = "8e0f6b53-6a40-4c1e-9e3c-3f0b2d6f1a11";
    // The first request's commit is held; its twin starts, finds no record,
    // and lands first.
    store.inject(Op::Insert, Fault::Delay(Duration::from_millis(600)), 1);
    let b = base.clone();
    let (held, twin) = interleaved(
        async move { send(&b, reqwest::Method::POST, "/apiKeys", Some(key), &create_body("raced")).await },
        send(&base, reqwest::Method::POST, "/apiKeys", Some(key), &create_body("raced")),
    )
    .await;
    assert_eq!((twin.status, twin.replayed), (StatusCode::OK, false), "{:?}", twin.body);
    assert!(twin.body["secret"].is_string());
    assert_eq!((held.status, held.replayed), (StatusCode::OK, true), "{:?}", held.body);
    assert!(held.body.get("secret").is_none(), "the replay never shows a secret");
    assert_eq!(held.body["apiKey"], twin.body["apiKey"], "both answers name the key that landed");
    assert_eq!(key_count(&*store).await, 1, "exactly one change landed");

    // A delete raced the same way: the held one replays, it is not "not found".
    let id = twin.body["apiKey"]["id"].as_str().unwrap().to_owned();
    let path = format!("/apiKeys/{id}");
    let delete_key = "0b8f3c1e-2f5d-4e8a-9d7c-6a5b4c3d2e1f";
    store.inject(Op::Delete, Fault::Delay(Duration::from_millis(600)), 1);
    let (b, p) = (base.clone(), path.clone());
    let (held, twin) = interleaved(
        async move { send(&b, reqwest::Method::DELETE, &p, Some(delete_key), "").await },
        send(&base, reqwest::Method::DELETE, &path, Some(delete_key), ""),
    )
    .await;
    assert_eq!((twin.status, held.status), (StatusCode::OK, StatusCode::OK), "{:?}\n{:?}", twin.body, held.body);
    assert!(held.replayed && !twin.replayed);
    assert_eq!(held.body, twin.body);
}

#[tokio::test]
async fn a_request_whose_twin_already_made_the_change_replays_it() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let base = serve(Arc::clone(&store)).await;
    let made = send(&base, reqwest::Method::POST, "/apiKeys", None, &create_body("to delete")).await;
    let id = made.body["apiKey"]["id"].as_str().unwrap().to_owned();
    let path = format!("/apiKeys/{id}");
    let key = "5d0c2b0a-9a1e-4d55-8f43-2f1a3c9b7e60";
    // The first request's read of the key is held until its twin deleted
    // the key and recorded the claim: the first then finds no key (404)…
    // and answers with the twin's record instead.
    store.inject(Op::Get, Fault::Delay(Duration::from_millis(600)), 1);
    let (b, p) = (base.clone(), path.clone());
    let (held, twin) = interleaved(
        async move { send(&b, reqwest::Method::DELETE, &p, Some(key), "").await },
        send(&base, reqwest::Method::DELETE, &path, Some(key), ""),
    )
    .await;
    assert_eq!((twin.status, twin.replayed), (StatusCode::OK, false), "{:?}", twin.body);
    assert_eq!((held.status, held.replayed), (StatusCode::OK, true), "{:?}", held.body);
    assert_eq!(held.body, twin.body);
    // Without the key, the same late request is "not found", as before.
    let plain = send(&base, reqwest::Method::DELETE, &path, None, "").await;
    assert_eq!(plain.status, StatusCode::NOT_FOUND);
    let id = api_keys::KeyId::parse(&id).unwrap();
    let log = store.operations(&id, api_keys::PageRequest::starting(10, None)).await.unwrap();
    assert_eq!(log.items.len(), 2, "create and one delete");
}

/// A store that keeps no idempotency records (the trait's default).
struct NoRecords(MemoryStore);

impl KeyStore for NoRecords {
    api_keys::forward_key_store!(self => self.0; all except [idempotency]);
}

#[tokio::test]
async fn a_store_without_records_fails_closed_and_a_failed_commit_records_nothing() {
    let store = Arc::new(NoRecords(MemoryStore::new()));
    let base = serve(Arc::clone(&store)).await;
    let key = "7a1c9e2b-3d4f-4a5b-8c6d-0e1f2a3b4c5d";
    let refused = send(&base, reqwest::Method::POST, "/apiKeys", Some(key), &create_body("x")).await;
    assert_eq!((refused.status, refused.body["code"].as_i64()), (StatusCode::SERVICE_UNAVAILABLE, Some(14)));
    assert_eq!(key_count(&*store).await, 0, "nothing made without a record");
    let plain = send(&base, reqwest::Method::POST, "/apiKeys", None, &create_body("x")).await;
    assert_eq!(plain.status, StatusCode::OK, "without a key the store is not asked for records");

    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let base = serve(Arc::clone(&store)).await;
    store.inject(Op::Insert, Fault::Error, 1);
    let failed = send(&base, reqwest::Method::POST, "/apiKeys", Some(key), &create_body("x")).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    let retried = send(&base, reqwest::Method::POST, "/apiKeys", Some(key), &create_body("x")).await;
    assert_eq!((retried.status, retried.replayed), (StatusCode::OK, false), "a 5xx is not recorded: it runs again");
    assert!(retried.body["secret"].is_string());
    let other = send(&base, reqwest::Method::POST, "/apiKeys", Some(key), &create_body("y")).await;
    assert_eq!((other.status, other.body["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(9)));
    assert_eq!(key_count(&*store).await, 1);
}

/// Every kind of change, repeated with its key (in the cloud's shape and
/// with `view=FULL`), gets its first answer back — a new key without its
/// secret — and changes nothing more.
#[tokio::test]
async fn every_change_replays_as_it_first_answered() {
    let store = Arc::new(MemoryStore::new());
    let base = serve(Arc::clone(&store)).await;
    let post = reqwest::Method::POST;
    let made =
        send(&base, post.clone(), "/apiKeys", Some("00000000-0000-4000-8000-000000000001"), &create_body("a")).await;
    let id = made.body["apiKey"]["id"].as_str().unwrap().to_owned();
    let patch = json!({"updateMask": "description", "description": "renamed"}).to_string();
    let reissue = json!({"gracePeriod": "60s"}).to_string();
    let calls: [(reqwest::Method, String, &str, String); 5] = [
        (post.clone(), "/apiKeys".to_owned(), "00000000-0000-4000-8000-000000000001", create_body("a")),
        (reqwest::Method::PATCH, format!("/apiKeys/{id}"), "00000000-0000-4000-8000-000000000002", patch),
        (post.clone(), format!("/apiKeys/{id}:reissue"), "00000000-0000-4000-8000-000000000003", reissue),
        (post.clone(), format!("/apiKeys/{id}:revoke"), "00000000-0000-4000-8000-000000000004", String::new()),
        (reqwest::Method::DELETE, format!("/apiKeys/{id}"), "00000000-0000-4000-8000-000000000005", String::new()),
    ];
    for (method, path, key, body) in calls {
        let first = if path == "/apiKeys" {
            made.body.clone()
        } else {
            send(&base, method.clone(), &path, Some(key), &body).await.body
        };
        for suffix in ["", "?view=FULL"] {
            let again = send(&base, method.clone(), &format!("{path}{suffix}"), Some(key), &body).await;
            assert_eq!(
                (again.status, again.replayed),
                (StatusCode::OK, true),
                "{method} {path}{suffix}: {:?}",
                again.body
            );
            assert!(again.body.get("secret").is_none(), "{method} {path}: a replay shows no secret");
            if suffix.is_empty() {
                let mut expected = first.clone();
                if let Some(o) = expected.as_object_mut() {
                    o.remove("secret");
                }
                assert_eq!(again.body, expected, "{method} {path}: the first answer, without its secret");
            } else {
                assert!(full_view(&again.body), "{method} {path}: view=FULL extends the replay: {:?}", again.body);
            }
        }
    }
    let id = api_keys::KeyId::parse(&id).unwrap();
    let log = store.operations(&id, api_keys::PageRequest::starting(20, None)).await.unwrap();
    let kinds: Vec<_> = log.items.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(kinds, ["delete", "revoke", "reissue", "update", "create"], "each change logged once");
    assert_eq!(key_count(&*store).await, 1, "only the reissued key is left");
}

/// Whether an answer carries `view=FULL`'s extension fields: a key's
/// `status`, or an operation's `kind`.
fn full_view(body: &Value) -> bool {
    body["apiKey"].get("status").is_some() || body["metadata"].get("kind").is_some()
}
