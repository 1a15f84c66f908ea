//! The resource routes over HTTP with a real client (reqwest), on the
//! memory store: service accounts at `/iam/v1/serviceAccounts`, folders,
//! clouds and organizations at the resource managers' root paths, their
//! operations logs, access policies and what they refuse, and a bound deny
//! policy refusing `POST /iam/v1/apiKeys` when the manager requires service
//! accounts (and not when it does not).

#![cfg(all(feature = "admin", feature = "test-util"))]
#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;

use api_keys::admin::{AdminApi, StaticTokens};
use api_keys::resource::{DEFAULT_CLOUD_ID, DEFAULT_FOLDER_ID, DEFAULT_ORGANIZATION_ID};
use api_keys::{KeyManager, MemoryStore, Pepper, Peppers};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const OPS: &str = "ops-admin-token-0123456789";
const LIMITED: &str = "robot-admin-token-0123456789";
const NO_SUCH: &str = "aaaaaaaaaaaaaaaaaaaa";
const DENY: &str = "iam.denyServiceAccountApiKeysCreation";

/// Serves the API (keys and service accounts at `/iam/v1`, the resource
/// managers at the root) over a memory store; `require` makes the manager
/// require service accounts (and so check access policies).
async fn serve(require: bool) -> String {
    let builder = KeyManager::builder(
        Arc::new(MemoryStore::new()),
        Peppers::single(Pepper::new(1, [3u8; 32]).unwrap()),
        api_keys::testing::scope_catalog(),
    );
    let manager = if require { builder.require_service_accounts().build() } else { builder.build() };
    let auth = StaticTokens::new()
        .token("ops", OPS)
        .unwrap()
        .limited_token("robot-admin", LIMITED, [api_keys::ServiceAccountId::new("robot").unwrap()])
        .unwrap();
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

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<&'static str>,
}

impl Client {
    fn new(base: &str, token: Option<&'static str>) -> Self {
        Self { http: reqwest::Client::new(), base: base.to_owned(), token }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>, idem: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = self.token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = idem {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(body), None).await
    }

    async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::PATCH, path, Some(body), None).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::DELETE, path, None, None).await
    }

    /// Creates a service account in `folder`; its id.
    async fn robot(&self, folder: &str, name: &str) -> String {
        let (status, op) = self.post("/iam/v1/serviceAccounts", json!({"folderId": folder, "name": name})).await;
        assert_eq!(status, StatusCode::OK, "{op}");
        op["response"]["id"].as_str().unwrap().to_owned()
    }
}

/// Asserts an error answer's status and `google.rpc` code.
fn refused(answer: &(StatusCode, Value), status: StatusCode, code: i64) {
    assert_eq!((answer.0, answer.1["code"].as_i64()), (status, Some(code)), "{}", answer.1);
}

#[tokio::test]
async fn service_accounts_are_created_listed_paged_patched_and_deleted() {
    let base = serve(false).await;
    let ops = Client::new(&base, Some(OPS));

    let (status, op) = ops
        .post(
            "/iam/v1/serviceAccounts",
            json!({"folderId": DEFAULT_FOLDER_ID, "name": "my-robot", "description": "deploys", "labels": {"team": "web"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{op}");
    assert_eq!(op["done"], true);
    assert_eq!(op["createdBy"], "ops");
    assert_eq!(op["metadata"]["@type"], "type.googleapis.com/yandex.cloud.iam.v1.CreateServiceAccountMetadata");
    assert_eq!(op["response"]["@type"], "type.googleapis.com/yandex.cloud.iam.v1.ServiceAccount");
    let id = op["response"]["id"].as_str().unwrap().to_owned();
    assert_eq!(op["metadata"]["serviceAccountId"], id.as_str());
    assert_eq!(op["response"]["folderId"], DEFAULT_FOLDER_ID);
    assert_eq!(op["response"]["labels"], json!({"team": "web"}));
    assert!(op["response"]["createdAt"].as_str().unwrap().ends_with('Z'));

    // Get.
    let (status, sa) = ops.get(&format!("/iam/v1/serviceAccounts/{id}")).await;
    assert_eq!((status, sa["name"].as_str()), (StatusCode::OK, Some("my-robot")), "{sa}");

    // Listed by folder, by name, two to a page.
    for name in ["robot-a", "robot-b", "robot-c", "robot-d"] {
        ops.robot(DEFAULT_FOLDER_ID, name).await;
    }
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let path = format!("/iam/v1/serviceAccounts?folderId={DEFAULT_FOLDER_ID}&pageSize=2&pageToken={token}");
        let (status, page) = ops.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["serviceAccounts"].as_array().unwrap();
        assert!(items.len() <= 2);
        names.extend(items.iter().map(|s| s["name"].as_str().unwrap().to_owned()));
        token = page["nextPageToken"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(names, ["my-robot", "robot-a", "robot-b", "robot-c", "robot-d"]);
    let (_, one) =
        ops.get(&format!("/iam/v1/serviceAccounts?folderId={DEFAULT_FOLDER_ID}&filter=name%3D%22robot-b%22")).await;
    assert_eq!(one["serviceAccounts"].as_array().unwrap().len(), 1, "{one}");

    // The create, by id, from the operations service.
    let created = op["id"].as_str().unwrap().to_owned();
    let (status, again) = ops.get(&format!("/operations/{created}")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!((again["id"].as_str(), again["done"].as_bool()), (Some(created.as_str()), Some(true)), "{again}");
    assert_eq!(again["metadata"]["serviceAccountId"], id.as_str());
    assert_eq!(again["response"]["name"], "my-robot");
    let cancel = ops.get(&format!("/operations/{created}:cancel")).await;
    refused(&cancel, StatusCode::BAD_REQUEST, 9);

    // Patched: only what the mask names.
    let (status, op) = ops
        .patch(
            &format!("/iam/v1/serviceAccounts/{id}"),
            json!({"updateMask": "description", "description": "builds", "name": "ignored-name"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{op}");
    assert_eq!(op["metadata"]["@type"], "type.googleapis.com/yandex.cloud.iam.v1.UpdateServiceAccountMetadata");
    assert_eq!(
        (op["response"]["description"].as_str(), op["response"]["name"].as_str()),
        (Some("builds"), Some("my-robot"))
    );

    // Its log, newest first.
    let (status, log) = ops.get(&format!("/iam/v1/serviceAccounts/{id}/operations?pageSize=10")).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let kinds: Vec<&str> =
        log["operations"].as_array().unwrap().iter().map(|o| o["description"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Update service account", "Create service account"]);

    // Deleted: an Empty response, then not found.
    let (status, op) = ops.delete(&format!("/iam/v1/serviceAccounts/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{op}");
    assert_eq!(op["response"]["@type"], "type.googleapis.com/google.protobuf.Empty");
    refused(&ops.get(&format!("/iam/v1/serviceAccounts/{id}")).await, StatusCode::NOT_FOUND, 5);
}

#[tokio::test]
async fn bad_input_is_refused_with_typed_errors_and_nothing_written() {
    let base = serve(false).await;
    let ops = Client::new(&base, Some(OPS));
    ops.robot(DEFAULT_FOLDER_ID, "my-robot").await;
    let create = |body: Value| {
        let ops = &ops;
        async move { ops.post("/iam/v1/serviceAccounts", body).await }
    };

    refused(&create(json!({"folderId": DEFAULT_FOLDER_ID, "name": "my-robot"})).await, StatusCode::CONFLICT, 6);
    refused(&create(json!({"folderId": DEFAULT_FOLDER_ID, "name": "My_Robot"})).await, StatusCode::BAD_REQUEST, 3);
    refused(&create(json!({"folderId": NO_SUCH, "name": "lost"})).await, StatusCode::NOT_FOUND, 5);
    refused(&create(json!({"folderId": "short", "name": "lost"})).await, StatusCode::BAD_REQUEST, 3);
    refused(&create(json!({"name": "lost"})).await, StatusCode::BAD_REQUEST, 3);
    refused(&create(json!({"cloudId": DEFAULT_CLOUD_ID, "name": "lost"})).await, StatusCode::BAD_REQUEST, 3);
    refused(
        &create(json!({"folderId": DEFAULT_FOLDER_ID, "name": "x", "title": "t"})).await,
        StatusCode::BAD_REQUEST,
        3,
    );
    refused(
        &create(json!({"folderId": DEFAULT_FOLDER_ID, "name": "x", "labels": {"Bad": "v"}})).await,
        StatusCode::BAD_REQUEST,
        3,
    );
    refused(&create(json!({"folderId": DEFAULT_FOLDER_ID, "name": "x", "extra": 1})).await, StatusCode::BAD_REQUEST, 3);
    refused(&ops.get(&format!("/iam/v1/serviceAccounts?folderId={NO_SUCH}")).await, StatusCode::NOT_FOUND, 5);
    refused(&ops.get("/iam/v1/serviceAccounts").await, StatusCode::BAD_REQUEST, 3);
    refused(
        &ops.get(&format!("/iam/v1/serviceAccounts?folderId={DEFAULT_FOLDER_ID}&pageToken=forged")).await,
        StatusCode::BAD_REQUEST,
        3,
    );
    refused(&ops.get(&format!("/iam/v1/serviceAccounts/{NO_SUCH}")).await, StatusCode::NOT_FOUND, 5);
    refused(&ops.get(&format!("/iam/v1/serviceAccounts/{NO_SUCH}/operations")).await, StatusCode::NOT_FOUND, 5);
    refused(
        &ops.patch(&format!("/iam/v1/serviceAccounts/{NO_SUCH}"), json!({"description": "x"})).await,
        StatusCode::NOT_FOUND,
        5,
    );
    refused(
        &ops.patch(&format!("/iam/v1/serviceAccounts/{NO_SUCH}"), json!({"updateMask": "status"})).await,
        StatusCode::BAD_REQUEST,
        3,
    );
    refused(&ops.patch(&format!("/iam/v1/serviceAccounts/{NO_SUCH}"), json!({})).await, StatusCode::BAD_REQUEST, 3);
    refused(
        &ops.post(&format!("/iam/v1/serviceAccounts/{NO_SUCH}:bindAccessPolicy"), json!({})).await,
        StatusCode::NOT_FOUND,
        5,
    );
    refused(
        &ops.post(&format!("/resource-manager/v1/folders/{DEFAULT_FOLDER_ID}:frobnicate"), json!({})).await,
        StatusCode::NOT_FOUND,
        5,
    );
    let idem = ops
        .send(
            Method::POST,
            "/iam/v1/serviceAccounts",
            Some(json!({"folderId": DEFAULT_FOLDER_ID, "name": "idem"})),
            Some("not-a-uuid"),
        )
        .await;
    refused(&idem, StatusCode::BAD_REQUEST, 3);

    // Nothing of the refused calls was written.
    let (_, page) = ops.get(&format!("/iam/v1/serviceAccounts?folderId={DEFAULT_FOLDER_ID}")).await;
    let names: Vec<&str> =
        page["serviceAccounts"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["my-robot"]);

    // Authentication and authorization.
    refused(&Client::new(&base, None).get("/resource-manager/v1/folders").await, StatusCode::UNAUTHORIZED, 16);
    let limited = Client::new(&base, Some(LIMITED));
    refused(
        &limited.get(&format!("/iam/v1/serviceAccounts?folderId={DEFAULT_FOLDER_ID}")).await,
        StatusCode::FORBIDDEN,
        7,
    );
    refused(
        &limited.post("/iam/v1/serviceAccounts", json!({"folderId": DEFAULT_FOLDER_ID, "name": "mine"})).await,
        StatusCode::FORBIDDEN,
        7,
    );
}

#[tokio::test]
async fn containers_nest_and_refuse_deletion_while_they_hold_accounts() {
    let base = serve(false).await;
    let ops = Client::new(&base, Some(OPS));

    let (status, org) =
        ops.post("/organization-manager/v1/organizations", json!({"name": "acme", "title": "ACME"})).await;
    assert_eq!(status, StatusCode::OK, "{org}");
    assert_eq!(org["metadata"]["@type"], "type.googleapis.com/apikeys.v1.CreateOrganizationMetadata");
    let org_id = org["response"]["id"].as_str().unwrap().to_owned();
    let (status, cloud) =
        ops.post("/resource-manager/v1/clouds", json!({"organizationId": org_id, "name": "prod"})).await;
    assert_eq!(status, StatusCode::OK, "{cloud}");
    let cloud_id = cloud["response"]["id"].as_str().unwrap().to_owned();
    let (status, folder) = ops.post("/resource-manager/v1/folders", json!({"cloudId": cloud_id, "name": "work"})).await;
    assert_eq!(status, StatusCode::OK, "{folder}");
    assert_eq!(folder["response"]["status"], "ACTIVE");
    let folder_id = folder["response"]["id"].as_str().unwrap().to_owned();
    let robot = ops.robot(&folder_id, "builder").await;

    let (_, clouds) = ops.get(&format!("/resource-manager/v1/clouds?organizationId={org_id}")).await;
    assert_eq!(clouds["clouds"][0]["name"], "prod", "{clouds}");
    let (_, folders) = ops.get(&format!("/resource-manager/v1/folders?cloudId={cloud_id}")).await;
    assert_eq!(folders["folders"][0]["name"], "work", "{folders}");
    let (_, orgs) = ops.get("/organization-manager/v1/organizations").await;
    assert_eq!(orgs["organizations"].as_array().unwrap().len(), 2, "{orgs}");
    let (_, defaults) = ops.get("/resource-manager/v1/clouds").await;
    assert_eq!(defaults["clouds"][0]["id"], DEFAULT_CLOUD_ID, "{defaults}");

    refused(&ops.delete(&format!("/resource-manager/v1/folders/{folder_id}")).await, StatusCode::BAD_REQUEST, 9);
    refused(
        &ops.delete(&format!("/resource-manager/v1/folders/{DEFAULT_FOLDER_ID}")).await,
        StatusCode::BAD_REQUEST,
        3,
    );
    let (status, op) = ops
        .patch(
            &format!("/organization-manager/v1/organizations/{org_id}"),
            json!({"updateMask": "title", "title": "Acme Inc"}),
        )
        .await;
    assert_eq!((status, op["response"]["title"].as_str()), (StatusCode::OK, Some("Acme Inc")), "{op}");
    refused(
        &ops.patch(&format!("/resource-manager/v1/folders/{folder_id}"), json!({"title": "t"})).await,
        StatusCode::BAD_REQUEST,
        3,
    );

    // Emptied from the bottom up, each delete is allowed.
    for path in [
        format!("/iam/v1/serviceAccounts/{robot}"),
        format!("/resource-manager/v1/folders/{folder_id}"),
        format!("/resource-manager/v1/clouds/{cloud_id}"),
        format!("/organization-manager/v1/organizations/{org_id}"),
    ] {
        let (status, op) = ops.delete(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {op}");
    }
    let (status, log) = ops.get(&format!("/organization-manager/v1/organizations/{org_id}/operations")).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    assert_eq!(log["operations"][0]["description"], "Delete organization");
}

/// Binds the deny policy on the default organization, then asks for a key
/// of a service account below it; the answer of the key create.
async fn key_under_deny_policy(base: &str) -> (StatusCode, Value) {
    let ops = Client::new(base, Some(OPS));
    let robot = ops.robot(DEFAULT_FOLDER_ID, "my-robot").await;
    let org = format!("/organization-manager/v1/organizations/{DEFAULT_ORGANIZATION_ID}");
    let (status, op) = ops
        .post(&format!("{org}:bindAccessPolicy"), json!({"accessPolicyBinding": {"accessPolicyTemplateId": DENY}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{op}");
    assert_eq!(op["metadata"]["@type"], "type.googleapis.com/yandex.cloud.access.BindAccessPolicyMetadata");
    assert_eq!(op["metadata"]["accessPolicyBinding"]["accessPolicyTemplateId"], DENY);
    let (status, bound) = ops.get(&format!("{org}:listAccessPolicyBindings")).await;
    assert_eq!(status, StatusCode::OK, "{bound}");
    assert_eq!(bound["accessPolicyBindings"][0]["accessPolicyTemplateId"], DENY);
    ops.post("/iam/v1/apiKeys", json!({"serviceAccountId": robot})).await
}

#[tokio::test]
async fn a_deny_policy_on_the_organization_refuses_keys_where_accounts_are_required() {
    let base = serve(true).await;
    let refusal = key_under_deny_policy(&base).await;
    refused(&refusal, StatusCode::BAD_REQUEST, 9);
    assert!(refusal.1["message"].as_str().unwrap().contains(DENY), "{}", refusal.1);

    let ops = Client::new(&base, Some(OPS));
    let org = format!("/organization-manager/v1/organizations/{DEFAULT_ORGANIZATION_ID}");
    let missing = ops
        .patch(
            &format!("{org}:updateAccessPolicyBindingParameters"),
            json!({"accessPolicyBinding": {"accessPolicyTemplateId": "iam.apiKeys.requireExpiry"}}),
        )
        .await;
    refused(&missing, StatusCode::NOT_FOUND, 5);
    let unknown = ops
        .post(&format!("{org}:bindAccessPolicy"), json!({"accessPolicyBinding": {"accessPolicyTemplateId": "nope"}}))
        .await;
    refused(&unknown, StatusCode::BAD_REQUEST, 3);
    let (status, op) = ops.post(&format!("{org}:unbindAccessPolicy"), json!({"accessPolicyTemplateId": DENY})).await;
    assert_eq!(status, StatusCode::OK, "{op}");
    refused(
        &ops.post(&format!("{org}:unbindAccessPolicy"), json!({"accessPolicyTemplateId": DENY})).await,
        StatusCode::NOT_FOUND,
        5,
    );
    let (_, page) = ops.get(&format!("/iam/v1/serviceAccounts?folderId={DEFAULT_FOLDER_ID}")).await;
    let robot = page["serviceAccounts"][0]["id"].as_str().unwrap();
    let (status, created) = ops.post("/iam/v1/apiKeys", json!({"serviceAccountId": robot})).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    // An account that does not exist has no key.
    refused(&ops.post("/iam/v1/apiKeys", json!({"serviceAccountId": "ghost"})).await, StatusCode::NOT_FOUND, 5);

    let (status, templates) = ops.get("/iam/v1/accessPolicyTemplates").await;
    assert_eq!(status, StatusCode::OK, "{templates}");
    assert_eq!(templates["accessPolicyTemplates"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn without_required_accounts_policies_do_not_apply_to_keys() {
    let base = serve(false).await;
    let (status, created) = key_under_deny_policy(&base).await;
    assert_eq!(status, StatusCode::OK, "{created}");
}

/// `Idempotency-Key` on resource changes: a repeat is answered with the
/// first change's operation (marked replayed) and makes nothing; the key
/// with another body is refused; the record lives in the store.
#[tokio::test]
async fn resource_changes_take_an_idempotency_key() {
    let base = serve(false).await;
    let ops = Client::new(&base, Some(OPS));
    let key = "0b1e9c62-3f5a-4d7e-8a2b-6c4d9e1f0a37";
    let body = json!({"folderId": DEFAULT_FOLDER_ID, "name": "idem-robot"});
    let first = ops.send(Method::POST, "/iam/v1/serviceAccounts", Some(body.clone()), Some(key)).await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    let again = ops.send(Method::POST, "/iam/v1/serviceAccounts", Some(body), Some(key)).await;
    assert_eq!(again.0, StatusCode::OK, "{}", again.1);
    assert_eq!(again.1["id"], first.1["id"], "the same operation");
    assert_eq!(again.1["response"]["id"], first.1["response"]["id"], "the same account");
    let (_, listed) = ops.get(&format!("/iam/v1/serviceAccounts?folderId={DEFAULT_FOLDER_ID}")).await;
    let named = listed["serviceAccounts"].as_array().unwrap().iter().filter(|a| a["name"] == "idem-robot").count();
    assert_eq!(named, 1, "the repeat made nothing");
    // The header says it is a replay.
    let replay = reqwest::Client::new()
        .post(format!("{base}/iam/v1/serviceAccounts"))
        .bearer_auth(OPS)
        .header("Idempotency-Key", key)
        .header("content-type", "application/json")
        .body(json!({"folderId": DEFAULT_FOLDER_ID, "name": "idem-robot"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(replay.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    // The same key with another request is refused, and makes nothing.
    let other = json!({"folderId": DEFAULT_FOLDER_ID, "name": "other-robot"});
    refused(
        &ops.send(Method::POST, "/iam/v1/serviceAccounts", Some(other), Some(key)).await,
        StatusCode::BAD_REQUEST,
        9,
    );
    let (_, listed) = ops.get(&format!("/iam/v1/serviceAccounts?folderId={DEFAULT_FOLDER_ID}")).await;
    assert!(listed["serviceAccounts"].as_array().unwrap().iter().all(|a| a["name"] != "other-robot"));
    // A policy bind with a key of its own, repeated: one log entry.
    let org = "/organization-manager/v1/organizations/defaultorganization0";
    let bind = json!({"accessPolicyBinding": {"accessPolicyTemplateId": "iam.apiKeys.requireExpiry"}});
    let bind_key = Some("5d2f8a1c-7b3e-4f60-9a1d-2e8c4b6f0d19");
    for _ in 0..2 {
        let (status, op) =
            ops.send(Method::POST, &format!("{org}:bindAccessPolicy"), Some(bind.clone()), bind_key).await;
        assert_eq!(status, StatusCode::OK, "{op}");
    }
    let (_, log) = ops.get(&format!("{org}/operations")).await;
    assert_eq!(log["operations"].as_array().unwrap().len(), 1, "{log}");
}
