//! Access bindings and roles over HTTP with a real client (reqwest), on the
//! memory store: an operator (static token) binds roles; a service
//! account's robot, authenticating with its own API key, may do in its
//! team's folder what its role allows and learns nothing about another
//! team's folder; bad bindings, self-escalation and the loss of an
//! organization's last admin are refused; a removed binding stops working.

#![cfg(all(feature = "admin", feature = "test-util"))]
#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use api_keys::admin::{AdminApi, ApiKeyAdmin, StaticTokens};
use api_keys::resource::{DEFAULT_CLOUD_ID, DEFAULT_ORGANIZATION_ID};
use api_keys::{KeyManager, MemoryStore, Pepper, Peppers, ScopeCatalog};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const OPS: &str = "ops-admin-token-0123456789";
const ADMIN_SCOPE: &str = "iam.apikeys.admin";

async fn serve() -> String {
    let catalog = ScopeCatalog::builder().scope(ADMIN_SCOPE, "manage keys").scope("read", "read").build().unwrap();
    let manager = KeyManager::builder(
        Arc::new(MemoryStore::new()),
        Peppers::single(Pepper::new(1, [3u8; 32]).unwrap()),
        catalog.clone(),
    )
    .require_service_accounts()
    .build();
    let keys =
        ApiKeyAdmin::new(Arc::new(manager.verifier().build()), catalog.requirement(ADMIN_SCOPE).unwrap()).roles(true);
    let auth = (StaticTokens::new().token("ops", OPS).unwrap(), keys);
    let routers = AdminApi::new(manager, auth).shared();
    let app = axum::Router::new()
        .nest("/iam/v1", routers.iam())
        .merge(routers.operations())
        .merge(routers.resource_managers());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    auth: String,
}

impl Client {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).header("authorization", &self.auth);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(body)).await
    }
}

/// Creates `path`'s resource as the operator; its id.
async fn created(ops: &Client, path: &str, body: Value) -> String {
    let (status, op) = ops.post(path, body).await;
    assert_eq!(status, StatusCode::OK, "{op}");
    op["response"]["id"].as_str().unwrap().to_owned()
}

fn binding(role: &str, sa: &str) -> Value {
    json!({ "roleId": role, "subject": { "id": sa, "type": "serviceAccount" } })
}

fn delta(action: &str, role: &str, sa: &str) -> Value {
    json!({ "accessBindingDeltas": [{ "action": action, "accessBinding": binding(role, sa) }] })
}

/// The message of a refusal with its ids taken out, to compare answers.
fn shape(body: &Value, ids: &[&str]) -> String {
    let mut text = body["message"].as_str().unwrap_or_default().to_owned();
    for id in ids {
        text = text.replace(id, "<id>");
    }
    format!("{} {text}", body["code"])
}

#[tokio::test]
async fn a_team_robot_manages_its_folder_and_learns_nothing_of_another() {
    let base = serve().await;
    let http = reqwest::Client::new();
    let ops = Client { http: http.clone(), base: base.clone(), auth: format!("Bearer {OPS}") };
    let folder_a =
        created(&ops, "/resource-manager/v1/folders", json!({ "cloudId": DEFAULT_CLOUD_ID, "name": "team-a" })).await;
    let folder_b =
        created(&ops, "/resource-manager/v1/folders", json!({ "cloudId": DEFAULT_CLOUD_ID, "name": "team-b" })).await;
    let robot = created(&ops, "/iam/v1/serviceAccounts", json!({ "folderId": folder_a, "name": "robot" })).await;
    let app_a = created(&ops, "/iam/v1/serviceAccounts", json!({ "folderId": folder_a, "name": "app-a" })).await;
    let app_b = created(&ops, "/iam/v1/serviceAccounts", json!({ "folderId": folder_b, "name": "app-b" })).await;
    let (status, made) =
        ops.post("/iam/v1/apiKeys", json!({ "serviceAccountId": robot, "scopes": [ADMIN_SCOPE] })).await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let robot_key = made["secret"].as_str().unwrap().to_owned();
    let (_, key_b) = ops.post("/iam/v1/apiKeys", json!({ "serviceAccountId": app_b })).await;
    let key_b = key_b["apiKey"]["id"].as_str().unwrap().to_owned();
    let bot = Client { http, base, auth: format!("Api-Key {robot_key}") };

    // Without a binding the robot sees nothing, not even its folder.
    let (status, _) = bot.get(&format!("/iam/v1/serviceAccounts?folderId={folder_a}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Editor on folder A.
    let folder_path = |f: &str, verb: &str| format!("/resource-manager/v1/folders/{f}:{verb}");
    let (status, body) =
        ops.post(&folder_path(&folder_a, "updateAccessBindings"), delta("ADD", "editor", &robot)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, listed) = ops.get(&folder_path(&folder_a, "listAccessBindings")).await;
    assert_eq!((status, &listed["accessBindings"]), (StatusCode::OK, &json!([binding("editor", &robot)])));

    // In folder A: create, list, read the log, delete.
    let (status, made) = bot.post("/iam/v1/apiKeys", json!({ "serviceAccountId": app_a })).await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let key_a = made["apiKey"]["id"].as_str().unwrap().to_owned();
    let (status, listed) = bot.get(&format!("/iam/v1/apiKeys?serviceAccountId={app_a}")).await;
    assert_eq!((status, listed["apiKeys"].as_array().unwrap().len()), (StatusCode::OK, 1));
    let (status, _) = bot.get(&format!("/iam/v1/serviceAccounts?folderId={folder_a}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = bot.get(&format!("/iam/v1/apiKeys/{key_a}/operations")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = bot.send(Method::DELETE, &format!("/iam/v1/apiKeys/{key_a}"), None).await;
    assert_eq!(status, StatusCode::OK);

    // In folder B every attempt is refused as if nothing were there.
    let missing_sa = "aaaaaaaaaaaaaaaaaaaa";
    let (s1, real) = bot.post("/iam/v1/apiKeys", json!({ "serviceAccountId": app_b })).await;
    let (s2, fake) = bot.post("/iam/v1/apiKeys", json!({ "serviceAccountId": missing_sa })).await;
    assert_eq!((s1, s2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND), "{real} {fake}");
    assert_eq!(shape(&real, &[&app_b]), shape(&fake, &[missing_sa]));
    let missing_key = "aaaaaaaaaaaaaaaaaaaa";
    for (method, suffix) in [(Method::GET, ""), (Method::DELETE, ""), (Method::GET, "/operations")] {
        let (s1, real) = bot.send(method.clone(), &format!("/iam/v1/apiKeys/{key_b}{suffix}"), None).await;
        let (s2, fake) = bot.send(method.clone(), &format!("/iam/v1/apiKeys/{missing_key}{suffix}"), None).await;
        assert_eq!((s1, s2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND), "{method} {suffix}");
        assert_eq!(shape(&real, &[&key_b]), shape(&fake, &[missing_key]), "{method} {suffix}");
    }
    let (status, listed) = bot.get(&format!("/iam/v1/apiKeys?serviceAccountId={app_b}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{listed}");
    for path in [
        format!("/iam/v1/serviceAccounts?folderId={folder_b}"),
        format!("/iam/v1/serviceAccounts/{app_b}"),
        format!("/resource-manager/v1/folders/{folder_b}"),
        folder_path(&folder_b, "listAccessBindings"),
    ] {
        let (status, body) = bot.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (status, _) = bot.post(&folder_path(&folder_b, "updateAccessBindings"), delta("ADD", "admin", &robot)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An editor may not bind roles, not even to itself.
    let (status, body) = bot.post(&folder_path(&folder_a, "updateAccessBindings"), delta("ADD", "admin", &robot)).await;
    assert_eq!((status, &body["code"]), (StatusCode::FORBIDDEN, &json!(7)), "{body}");
    // A viewer reads but does not write.
    let (status, body) = ops
        .post(&folder_path(&folder_a, "setAccessBindings"), json!({ "accessBindings": [binding("viewer", &robot)] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // With iam.serviceAccounts.admin on itself (and viewer above) it may
    // bind there only roles whose permissions it holds there.
    let sa_path = |sa: &str, verb: &str| format!("/iam/v1/serviceAccounts/{sa}:{verb}");
    let (status, _) =
        ops.post(&sa_path(&robot, "updateAccessBindings"), delta("ADD", "iam.serviceAccounts.admin", &robot)).await;
    assert_eq!(status, StatusCode::OK);
    for role in ["admin", "editor"] {
        let (status, body) = bot.post(&sa_path(&robot, "updateAccessBindings"), delta("ADD", role, &robot)).await;
        assert_eq!((status, &body["code"]), (StatusCode::FORBIDDEN, &json!(7)), "self-escalation to {role}: {body}");
    }
    for role in ["viewer", "iam.serviceAccounts.user"] {
        let (status, body) = bot.post(&sa_path(&robot, "updateAccessBindings"), delta("ADD", role, &app_a)).await;
        assert_eq!(status, StatusCode::OK, "{role}, within its own: {body}");
    }
    let (status, _) = bot.get(&format!("/iam/v1/apiKeys?serviceAccountId={app_a}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = bot.post("/iam/v1/apiKeys", json!({ "serviceAccountId": app_a })).await;
    assert_eq!((status, &body["code"]), (StatusCode::FORBIDDEN, &json!(7)), "{body}");

    // Removed, the binding stops working within a second.
    let (status, _) = ops.post(&folder_path(&folder_a, "setAccessBindings"), json!({ "accessBindings": [] })).await;
    assert_eq!(status, StatusCode::OK);
    let started = Instant::now();
    loop {
        let (status, _) = bot.get(&format!("/iam/v1/apiKeys?serviceAccountId={app_a}")).await;
        if status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "the removed binding still works");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bad_bindings_are_refused_writing_nothing() {
    let base = serve().await;
    let ops = Client { http: reqwest::Client::new(), base, auth: format!("Bearer {OPS}") };
    let robot = created(
        &ops,
        "/iam/v1/serviceAccounts",
        json!({ "folderId": api_keys::resource::DEFAULT_FOLDER_ID, "name": "robot" }),
    )
    .await;
    let org = |verb: &str| format!("/organization-manager/v1/organizations/{DEFAULT_ORGANIZATION_ID}:{verb}");
    for (body, want) in [
        (delta("ADD", "owner", &robot), "unknown role"),
        (
            json!({ "accessBindingDeltas": [{ "action": "ADD", "accessBinding": { "roleId": "viewer", "subject": { "id": robot, "type": "userAccount" } } }] }),
            "not supported",
        ),
        (delta("ADD", "viewer", "aaaaaaaaaaaaaaaaaaaa"), "does not exist"),
        (delta("REMOVE", "viewer", &robot), "not bound"),
        (delta("MOVE", "viewer", &robot), "ADD or REMOVE"),
        (json!({ "accessBindingDeltas": [] }), "at least one"),
    ] {
        let (status, answer) = ops.post(&org("updateAccessBindings"), body.clone()).await;
        assert!(status.is_client_error(), "{body}: {status} {answer}");
        assert!(answer["message"].as_str().unwrap().contains(want), "{body}: {answer}");
    }
    let (status, _) = ops
        .post("/resource-manager/v1/folders/aaaaaaaaaaaaaaaaaaaa:updateAccessBindings", delta("ADD", "viewer", &robot))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = ops.get(&org("listAccessBindings")).await;
    assert_eq!(listed["accessBindings"], json!([]), "nothing was written");
    // The last admin of an organization stays.
    let (status, _) = ops.post(&org("updateAccessBindings"), delta("ADD", "admin", &robot)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = ops.post(&org("updateAccessBindings"), delta("REMOVE", "admin", &robot)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("last admin"), "{answer}");
    let (_, listed) = ops.get(&org("listAccessBindings")).await;
    assert_eq!(listed["accessBindings"], json!([binding("admin", &robot)]));
    let _ = DEFAULT_CLOUD_ID;
}
