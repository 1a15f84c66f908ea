//! `Idempotency-Key` across `keyctl serve` nodes and restarts: the record
//! lives in the store, written with the change, so two nodes on one
//! PostgreSQL schema (or one Redis prefix) answer a repeat as the first,
//! whichever node gets it, also after a restart, and of concurrent sends
//! exactly one change lands. Before the fix records lived in each node's
//! memory: the same create sent to node A and then node B made two live
//! keys, both answers carrying a secret.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::sync::Barrier;

use common::*;
use serde_json::Value;

/// A generated admin token (a guessable one is refused at start).
const TOKEN: &str = "sAT3kq9ZpWm0vXe7LrJ4yHc2NbF8uGd1QoT6iKs5";

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// `method path` with the admin token, a JSON body and an `Idempotency-Key`.
fn send(node: &Server, method: &str, path: &str, key: &str, body: &str) -> Response {
    let auth = bearer();
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json"), ("idempotency-key", key)];
    node.request(method, &format!("/iam/v1{path}"), &headers, body)
}

fn create_body(sa: &str, description: &str) -> String {
    serde_json::json!({"serviceAccountId": sa, "description": description, "scopes": ["yc.postbox.send"]}).to_string()
}

/// The keys of `sa`, as node `n` lists them.
fn keys_of(n: &Server, sa: &str) -> Vec<Value> {
    let auth = bearer();
    let listed = n.request("GET", &format!("/iam/v1/apiKeys?serviceAccountId={sa}"), &[("authorization", &auth)], "");
    assert_eq!(listed.status, 200, "{listed:?}");
    listed.json()["apiKeys"].as_array().unwrap().clone()
}

fn replayed(r: &Response) -> bool {
    r.header("idempotent-replayed") == Some("true")
}

/// A first create (with its secret) and its replay from another node: the
/// same key, no secret, marked replayed, not cached.
fn assert_replay_of(first: &Response, replay: &Response) {
    assert_eq!((first.status, replay.status), (200, 200), "{first:?}\n{replay:?}");
    assert!(first.json()["secret"].is_string() && !replayed(first), "{first:?}");
    assert!(replayed(replay), "{replay:?}");
    assert_eq!(replay.header("cache-control"), Some("no-store"));
    assert!(replay.json().get("secret").is_none(), "a replay never shows the secret: {replay:?}");
    assert_eq!(replay.json()["apiKey"], first.json()["apiKey"], "the replay names the same key");
}

fn nodes(url: &str) -> (Keyctl, Server, Server) {
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_ADMIN_TOKEN", TOKEN);
    let a = Server::start(&k, url, &[]);
    let b = Server::start(&k, url, &[]);
    (k, a, b)
}

#[test]
fn two_postgres_nodes_answer_a_repeat_as_the_first() {
    let base = postgres_url();
    let schema = unique("idem_pg");
    let _cleanup = DropSchema { url: base.clone(), schema: schema.clone() };
    let url = with_param(&base, "schema", &schema);
    let (k, a, b) = nodes(&url);
    let robot = a.service_account(&bearer(), "idem-robot");

    // A, then B: one live key, B's answer the replay.
    let key = "8e0f6b53-6a40-4c1e-9e3c-3f0b2d6f1a11";
    let body = create_body(&robot, "once");
    let first = send(&a, "POST", "/apiKeys", key, &body);
    let replay = send(&b, "POST", "/apiKeys", key, &body);
    assert_replay_of(&first, &replay);
    assert_eq!(keys_of(&b, &robot).len(), 1, "a replayed create made a second key");
    let secret = first.json()["secret"].as_str().unwrap().to_owned();
    assert_eq!(b.authorize(Some(&secret), Some("yc.postbox.send")).status, 200);

    // Same key, another request: refused on either node, nothing made.
    let other = send(&b, "POST", "/apiKeys", key, &create_body(&robot, "other"));
    assert_eq!((other.status, other.json()["code"].as_i64()), (400, Some(9)), "{other:?}");
    assert_eq!(keys_of(&a, &robot).len(), 1);

    // Revoke and delete repeated on the other node: the first answer again,
    // not a second log entry and not "not found".
    let id = first.json()["apiKey"]["id"].as_str().unwrap().to_owned();
    let revoke_key = "0b8f3c1e-2f5d-4e8a-9d7c-6a5b4c3d2e1f";
    let revoked = send(&a, "POST", &format!("/apiKeys/{id}:revoke"), revoke_key, "");
    let again = send(&b, "POST", &format!("/apiKeys/{id}:revoke"), revoke_key, "");
    assert_eq!((revoked.status, again.status), (200, 200), "{revoked:?}\n{again:?}");
    assert!(replayed(&again) && !replayed(&revoked));
    assert_eq!(again.json(), revoked.json(), "the revoke answered as the first");
    let delete_key = "5d0c2b0a-9a1e-4d55-8f43-2f1a3c9b7e60";
    let deleted = send(&b, "DELETE", &format!("/apiKeys/{id}"), delete_key, "");
    let again = send(&a, "DELETE", &format!("/apiKeys/{id}"), delete_key, "");
    assert_eq!((deleted.status, again.status), (200, 200), "{deleted:?}\n{again:?}");
    assert!(replayed(&again));
    assert_eq!(again.json(), deleted.json(), "the delete answered as the first, not 404");
    let auth = bearer();
    let log = a.request("GET", &format!("/iam/v1/apiKeys/{id}/operations"), &[("authorization", &auth)], "");
    assert_eq!(log.json()["operations"].as_array().unwrap().len(), 3, "create, revoke, delete: {log:?}");

    // Sent to both nodes at once: exactly one key, one secret.
    for round in 0..5 {
        let sa = a.service_account(&bearer(), &format!("idem-race-{round}"));
        let key = format!("7a1c9e2b-3d4f-4a5b-8c6d-0e1f2a3b4c{round:02}");
        let body = create_body(&sa, "raced");
        let gate = Barrier::new(2);
        let on = |n: &Server| {
            gate.wait();
            send(n, "POST", "/apiKeys", &key, &body)
        };
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| on(&a));
            let tb = s.spawn(|| on(&b));
            (ta.join().unwrap(), tb.join().unwrap())
        });
        assert_eq!((ra.status, rb.status), (200, 200), "{ra:?}\n{rb:?}");
        let (won, lost) = if replayed(&ra) { (&rb, &ra) } else { (&ra, &rb) };
        assert_replay_of(won, lost);
        assert_eq!(keys_of(&a, &sa).len(), 1, "round {round}: concurrent sends made more than one key");
    }

    // A restarted node still knows the key.
    a.kill();
    let restarted = Server::start(&k, &url, &[]);
    let after = send(&restarted, "POST", "/apiKeys", key, &body);
    assert_replay_of(&first, &after);
    assert_eq!(keys_of(&restarted, &robot).len(), 0, "deleted above, not made again");
    for n in [restarted, b] {
        let log = n.stop();
        assert!(!log.contains(&secret), "a node logged a secret:\n{log}");
    }
}

#[test]
fn two_redis_nodes_answer_a_repeat_as_the_first() {
    let base = redis_url();
    let prefix = unique("idem-redis");
    let _cleanup = PurgePrefix { url: base.clone(), prefix: prefix.clone() };
    let url = with_param(&base, "prefix", &prefix);
    let (k, a, b) = nodes(&url);
    let robot = b.service_account(&bearer(), "idem-robot");
    let key = "8e0f6b53-6a40-4c1e-9e3c-3f0b2d6f1a11";
    let body = create_body(&robot, "once");
    let first = send(&a, "POST", "/apiKeys", key, &body);
    let replay = send(&b, "POST", "/apiKeys", key, &body);
    assert_replay_of(&first, &replay);
    assert_eq!(keys_of(&a, &robot).len(), 1, "a replayed create made a second key");
    let other = send(&a, "POST", "/apiKeys", key, &create_body(&robot, "other"));
    assert_eq!((other.status, other.json()["code"].as_i64()), (400, Some(9)), "{other:?}");
    b.kill();
    let restarted = Server::start(&k, &url, &[]);
    assert_replay_of(&first, &send(&restarted, "POST", "/apiKeys", key, &body));
    assert_eq!(keys_of(&restarted, &robot).len(), 1);
    a.stop();
    restarted.stop();
}
