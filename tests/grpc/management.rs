//! The management gRPC services (`api_keys::admin::grpc`) served by tonic on
//! loopback, called with a real tonic client and the generated messages:
//! every RPC, every refusal (no token, wrong token, another account's key,
//! unknown id, bad argument, store down), malformed and oversized messages,
//! unknown methods, `idempotency-key`, and the REST operation route beside.

use std::net::SocketAddr;
use std::sync::Arc;

use api_keys::admin::grpc::ApiEndpoints;
use api_keys::admin::grpc::pb::apikeys::v1 as project;
use api_keys::admin::grpc::pb::yandex::cloud::endpoint as ep;
use api_keys::admin::grpc::pb::yandex::cloud::iam::v1 as iam;
use api_keys::admin::grpc::pb::yandex::cloud::operation as op;
use api_keys::admin::{AdminApi, AdminRouters, StaticTokens};
use api_keys::testing::{Fault, FaultyStore, Op};
use api_keys::{KeyManager, MemoryStore, Pepper, Peppers, ServiceAccountId};
use prost::Message;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::server::TcpIncoming;
use tower::ServiceExt as _;

const ADMIN: &str = "Qm7vT2xK9pL4zR8wN1cF6hJ3bY5sD0gA7eU2iO9tW4=";
const LIMITED: &str = "Zx8cV2bN5mA1sD4fG7hJ0kL3qW6eR9tY2uI5oP8aS1=";
const SA: &str = "grpc-robot";
const KEYS: &str = "/yandex.cloud.iam.v1.ApiKeyService/";
const API_KEY: &str = "type.googleapis.com/yandex.cloud.iam.v1.ApiKey";

type Store = FaultyStore<MemoryStore>;

struct Served {
    addr: SocketAddr,
    store: Arc<Store>,
    manager: KeyManager<Store>,
    routers: AdminRouters<Store, StaticTokens>,
}

async fn serve() -> Served {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let peppers = Peppers::single(Pepper::generate(1).unwrap());
    let manager = KeyManager::builder(Arc::clone(&store), peppers, api_keys::testing::scope_catalog()).build();
    let auth = StaticTokens::new()
        .token("ops", ADMIN)
        .unwrap()
        .limited_token("other-ops", LIMITED, [ServiceAccountId::new("other-robot").unwrap()])
        .unwrap();
    let routers = AdminApi::new(manager.clone(), auth).shared();
    let grpc = routers.grpc(ApiEndpoints::at("keys.example:443"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder().add_routes(grpc.into());
    tokio::spawn(server.serve_with_incoming(TcpIncoming::from(listener)));
    Served { addr, store, manager, routers }
}

/// One unary call of `method` (a full path) with `token` and extra metadata.
async fn call<Req, Resp>(
    addr: SocketAddr,
    method: &str,
    token: Option<&str>,
    metadata: &[(&'static str, &str)],
    message: Req,
) -> Result<tonic::Response<Resp>, tonic::Status>
where
    Req: Message + Send + Sync + 'static,
    Resp: Message + Default + Send + Sync + 'static,
{
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(message);
    if let Some(t) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    for (name, value) in metadata {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    let path = PathAndQuery::try_from(method.to_owned()).unwrap();
    grpc.unary(request, path, tonic_prost::ProstCodec::default()).await
}

/// An `ApiKeyService` call as the admin.
async fn keys<Req, Resp>(addr: SocketAddr, method: &str, message: Req) -> Result<Resp, tonic::Status>
where
    Req: Message + Send + Sync + 'static,
    Resp: Message + Default + Send + Sync + 'static,
{
    call(addr, &format!("{KEYS}{method}"), Some(ADMIN), &[], message).await.map(tonic::Response::into_inner)
}

fn ts(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().try_into().unwrap()
}

fn create(scopes: &[&str]) -> iam::CreateApiKeyRequest {
    iam::CreateApiKeyRequest {
        service_account_id: SA.into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

fn expect_code<T: std::fmt::Debug>(what: &str, r: Result<T, tonic::Status>, code: Code) -> String {
    match r {
        Ok(v) => panic!("{what}: expected {code:?}, got {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{what}: {s:?}");
            s.message().to_owned()
        }
    }
}

fn response_of(o: &op::Operation) -> &prost_types::Any {
    match &o.result {
        Some(op::operation::Result::Response(any)) => any,
        other => panic!("no response: {other:?}"),
    }
}

#[tokio::test]
async fn every_rpc_answers_in_the_clouds_shape() {
    let s = serve().await;
    let expiry = ts(now() + 86_400);
    let made: iam::CreateApiKeyResponse = keys(
        s.addr,
        "Create",
        iam::CreateApiKeyRequest {
            description: "by gRPC".into(),
            expires_at: Some(expiry),
            ..create(&["yc.monitoring.read", "yc.logging.write"])
        },
    )
    .await
    .unwrap();
    let key = made.api_key.unwrap();
    assert!(made.secret.len() > 40 && made.secret.ends_with(&key.masked_secret[4..]), "{key:?}");
    assert_eq!((key.service_account_id.as_str(), key.expires_at), (SA, Some(expiry)));
    let mut scopes = key.scopes.clone();
    scopes.sort();
    assert_eq!(scopes, ["yc.logging.write", "yc.monitoring.read"]);

    let got: iam::ApiKey = keys(s.addr, "Get", iam::GetApiKeyRequest { api_key_id: key.id.clone() }).await.unwrap();
    assert_eq!(got, key);

    // The deprecated `scope` is one scope.
    #[allow(deprecated, reason = "the cloud's deprecated field, accepted")]
    let one = iam::CreateApiKeyRequest { scope: "yc.postbox.send".into(), ..create(&[]) };
    let second: iam::CreateApiKeyResponse = keys(s.addr, "Create", one).await.unwrap();
    assert_eq!(second.api_key.unwrap().scopes, ["yc.postbox.send"]);
    // List, two pages.
    let first: iam::ListApiKeysResponse = keys(
        s.addr,
        "List",
        iam::ListApiKeysRequest { service_account_id: SA.into(), page_size: 1, ..Default::default() },
    )
    .await
    .unwrap();
    assert_eq!(first.api_keys.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let rest: iam::ListApiKeysResponse = keys(
        s.addr,
        "List",
        iam::ListApiKeysRequest {
            service_account_id: SA.into(),
            page_size: 1,
            page_token: first.next_page_token.clone(),
        },
    )
    .await
    .unwrap();
    assert_eq!((rest.api_keys.len(), rest.next_page_token.as_str()), (1, ""));

    // Update with a mask: only the masked field changes (scopes outside it stay).
    let update = iam::UpdateApiKeyRequest {
        api_key_id: key.id.clone(),
        update_mask: Some(prost_types::FieldMask { paths: vec!["description".into()] }),
        description: "renamed".into(),
        scopes: vec!["yc.postbox.send".into()],
        expires_at: None,
    };
    let updated: op::Operation = keys(s.addr, "Update", update).await.unwrap();
    assert!(updated.done);
    let metadata = updated.metadata.clone().unwrap();
    assert_eq!(metadata.type_url, "type.googleapis.com/yandex.cloud.iam.v1.UpdateApiKeyMetadata");
    assert_eq!(iam::UpdateApiKeyMetadata::decode(&*metadata.value).unwrap().api_key_id, key.id);
    let response = response_of(&updated);
    assert_eq!(response.type_url, API_KEY);
    let after = iam::ApiKey::decode(&*response.value).unwrap();
    assert_eq!((after.description.as_str(), after.scopes.len(), after.expires_at), ("renamed", 2, Some(expiry)));
    // The masked expiry, absent: removed.
    let cleared: op::Operation = keys(
        s.addr,
        "Update",
        iam::UpdateApiKeyRequest {
            api_key_id: key.id.clone(),
            update_mask: Some(prost_types::FieldMask { paths: vec!["expires_at".into()] }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(iam::ApiKey::decode(&*response_of(&cleared).value).unwrap().expires_at, None);

    // OperationService.Get: the same operation, response included; Cancel: done.
    let again: op::Operation = call(
        s.addr,
        "/yandex.cloud.operation.OperationService/Get",
        Some(ADMIN),
        &[],
        op::GetOperationRequest { operation_id: updated.id.clone() },
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(again, updated);
    let cancel = call::<_, op::Operation>(
        s.addr,
        "/yandex.cloud.operation.OperationService/Cancel",
        Some(ADMIN),
        &[],
        op::CancelOperationRequest { operation_id: updated.id.clone() },
    )
    .await;
    assert!(expect_code("cancel", cancel, Code::FailedPrecondition).contains("cannot be cancelled"));

    // ListOperations: newest first, with the project's type for the create.
    let listed: iam::ListApiKeyOperationsResponse = keys(
        s.addr,
        "ListOperations",
        iam::ListApiKeyOperationsRequest { api_key_id: key.id.clone(), ..Default::default() },
    )
    .await
    .unwrap();
    let types: Vec<&str> = listed.operations.iter().map(|o| o.metadata.as_ref().unwrap().type_url.as_str()).collect();
    assert_eq!(
        types,
        [
            "type.googleapis.com/yandex.cloud.iam.v1.UpdateApiKeyMetadata",
            "type.googleapis.com/yandex.cloud.iam.v1.UpdateApiKeyMetadata",
            "type.googleapis.com/apikeys.v1.CreateApiKeyMetadata"
        ]
    );
    let changes = response_of(&listed.operations[1]);
    assert_eq!(changes.type_url, "type.googleapis.com/apikeys.v1.ApiKeyChanges");
    assert_eq!(project::ApiKeyChanges::decode(&*changes.value).unwrap().description, "renamed");

    // ListScopes, paged: the catalog's names, once each.
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page: iam::ListApiKeyScopesResponse =
            keys(s.addr, "ListScopes", iam::ListApiKeyScopesRequest { page_size: 5, page_token: token }).await.unwrap();
        assert!(page.scopes.len() <= 5);
        names.extend(page.scopes);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let catalog = api_keys::testing::scope_catalog();
    let catalog: Vec<&str> = catalog.list().iter().map(|s| s.scope.as_str()).collect();
    assert_eq!(names, catalog);

    // Delete: Empty; the key is gone.
    let deleted: op::Operation =
        keys(s.addr, "Delete", iam::DeleteApiKeyRequest { api_key_id: key.id.clone() }).await.unwrap();
    assert_eq!(
        deleted.metadata.as_ref().unwrap().type_url,
        "type.googleapis.com/yandex.cloud.iam.v1.DeleteApiKeyMetadata"
    );
    assert_eq!(response_of(&deleted).type_url, "type.googleapis.com/google.protobuf.Empty");
    let gone = keys::<_, iam::ApiKey>(s.addr, "Get", iam::GetApiKeyRequest { api_key_id: key.id.clone() }).await;
    expect_code("get after delete", gone, Code::NotFound);

    // ApiEndpointService: no token needed; iam and operation at the public address.
    let endpoints: ep::ListApiEndpointsResponse = call(
        s.addr,
        "/yandex.cloud.endpoint.ApiEndpointService/List",
        None,
        &[],
        ep::ListApiEndpointsRequest::default(),
    )
    .await
    .unwrap()
    .into_inner();
    let listed: Vec<(&str, &str)> = endpoints.endpoints.iter().map(|e| (e.id.as_str(), e.address.as_str())).collect();
    assert_eq!(
        listed,
        [
            ("iam", "keys.example:443"),
            ("operation", "keys.example:443"),
            ("resource-manager", "keys.example:443"),
            ("organization-manager", "keys.example:443")
        ]
    );
    let iam_endpoint: ep::ApiEndpoint = call(
        s.addr,
        "/yandex.cloud.endpoint.ApiEndpointService/Get",
        None,
        &[],
        ep::GetApiEndpointRequest { api_endpoint_id: "iam".into() },
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(iam_endpoint.address, "keys.example:443");
    let unknown = call::<_, ep::ApiEndpoint>(
        s.addr,
        "/yandex.cloud.endpoint.ApiEndpointService/Get",
        None,
        &[],
        ep::GetApiEndpointRequest { api_endpoint_id: "compute".into() },
    )
    .await;
    expect_code("unknown endpoint", unknown, Code::NotFound);
}

#[tokio::test]
async fn refusals_are_grpc_statuses_and_change_nothing() {
    let s = serve().await;
    let made: iam::CreateApiKeyResponse = keys(s.addr, "Create", create(&["yc.monitoring.read"])).await.unwrap();
    let key = made.api_key.unwrap();
    let get = |token: Option<&'static str>, id: String| {
        let addr = s.addr;
        async move {
            call::<_, iam::ApiKey>(addr, &format!("{KEYS}Get"), token, &[], iam::GetApiKeyRequest { api_key_id: id })
                .await
        }
    };

    // No token, a wrong token: UNAUTHENTICATED, on every service but the endpoints'.
    expect_code("no token", get(None, key.id.clone()).await, Code::Unauthenticated);
    let wrong = "Wm7vT2xK9pL4zR8wN1cF6hJ3bY5sD0gA7eU2iO9tW4=";
    expect_code("wrong token", get(Some(wrong), key.id.clone()).await, Code::Unauthenticated);
    let no_token_op = call::<_, op::Operation>(
        s.addr,
        "/yandex.cloud.operation.OperationService/Get",
        None,
        &[],
        op::GetOperationRequest { operation_id: "a".repeat(20) },
    )
    .await;
    expect_code("no token, operation", no_token_op, Code::Unauthenticated);
    for (method, body) in [
        ("List", iam::ListApiKeysRequest::default().encode_to_vec()),
        ("Create", create(&[]).encode_to_vec()),
        ("ListScopes", iam::ListApiKeyScopesRequest::default().encode_to_vec()),
    ] {
        let r = call::<_, iam::ApiKey>(s.addr, &format!("{KEYS}{method}"), None, &[], body).await;
        expect_code(method, r, Code::Unauthenticated);
    }

    // A token limited to another account: its key is "not found", a create refused.
    expect_code("another account's key", get(Some(LIMITED), key.id.clone()).await, Code::NotFound);
    let create_path = format!("{KEYS}Create");
    let denied = call::<_, iam::CreateApiKeyResponse>(s.addr, &create_path, Some(LIMITED), &[], create(&[]));
    expect_code("create for another account", denied.await, Code::PermissionDenied);

    // Unknown and malformed ids.
    expect_code("unknown id", get(Some(ADMIN), "b".repeat(20)).await, Code::NotFound);
    expect_code("malformed id", get(Some(ADMIN), "x".into()).await, Code::InvalidArgument);
    expect_code("empty id", get(Some(ADMIN), String::new()).await, Code::InvalidArgument);

    // Bad arguments.
    let bad_creates = [
        ("unknown scope", create(&["no.such.scope"])),
        ("duplicate scopes", create(&["yc.monitoring.read", "yc.monitoring.read"])),
        ("long description", iam::CreateApiKeyRequest { description: "d".repeat(257), ..create(&[]) }),
        ("past expiry", iam::CreateApiKeyRequest { expires_at: Some(ts(now() - 60)), ..create(&[]) }),
        ("expiry after 2105", iam::CreateApiKeyRequest { expires_at: Some(ts(4_291_747_200)), ..create(&[]) }),
        (
            "bad nanos",
            iam::CreateApiKeyRequest {
                expires_at: Some(prost_types::Timestamp { seconds: now() + 60, nanos: -1 }),
                ..create(&[])
            },
        ),
        ("long account id", iam::CreateApiKeyRequest { service_account_id: "s".repeat(51), ..create(&[]) }),
    ];
    for (what, request) in bad_creates {
        expect_code(what, keys::<_, iam::CreateApiKeyResponse>(s.addr, "Create", request).await, Code::InvalidArgument);
    }
    let mask = |paths: &[&str]| Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_owned()).collect() });
    let bad_updates = [
        ("masked scopes absent", iam::UpdateApiKeyRequest { update_mask: mask(&["scopes"]), ..Default::default() }),
        ("unknown mask path", iam::UpdateApiKeyRequest { update_mask: mask(&["status"]), ..Default::default() }),
        ("nothing to change", iam::UpdateApiKeyRequest::default()),
    ];
    for (what, request) in bad_updates {
        let request = iam::UpdateApiKeyRequest { api_key_id: key.id.clone(), ..request };
        expect_code(what, keys::<_, op::Operation>(s.addr, "Update", request).await, Code::InvalidArgument);
    }
    for (what, size, token) in [("page size", 1001, ""), ("negative page size", -1, ""), ("page token", 0, "forged")] {
        let request =
            iam::ListApiKeysRequest { service_account_id: SA.into(), page_size: size, page_token: token.into() };
        expect_code(what, keys::<_, iam::ListApiKeysResponse>(s.addr, "List", request).await, Code::InvalidArgument);
    }
    let bad_key = call::<_, iam::CreateApiKeyResponse>(
        s.addr,
        &create_path,
        Some(ADMIN),
        &[("idempotency-key", "not-a-uuid")],
        create(&[]),
    );
    expect_code("idempotency key", bad_key.await, Code::InvalidArgument);

    // The store down: UNAVAILABLE, fail closed.
    s.store.always(Op::Get, Fault::Error);
    expect_code("store down", get(Some(ADMIN), key.id.clone()).await, Code::Unavailable);
    s.store.heal();

    // Nothing was written: one key, unchanged, and only its create logged.
    let listed = s.manager.list(SA, api_keys::PageRequest::first(100)).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(get(Some(ADMIN), key.id.clone()).await.unwrap().into_inner(), key);
    let ops = s.manager.operations(&listed.items[0].id, api_keys::PageRequest::starting(100, None)).await.unwrap();
    assert_eq!(ops.items.len(), 1);
}

#[tokio::test]
async fn malformed_oversized_and_unknown_calls_get_clear_statuses() {
    let s = serve().await;
    // A string field holding invalid UTF-8 (a BytesValue has the same field
    // number): tonic answers INTERNAL, as gRPC's status code guide says for
    // parse errors.
    let malformed = call::<_, iam::ApiKey>(s.addr, &format!("{KEYS}Get"), Some(ADMIN), &[], vec![0xff_u8, 0xfe]).await;
    expect_code("malformed body", malformed, Code::Internal);
    // Field 1 with the wrong wire type.
    let wrong_type = call::<_, iam::ApiKey>(s.addr, &format!("{KEYS}Get"), Some(ADMIN), &[], 7_u64).await;
    expect_code("wrong wire type", wrong_type, Code::Internal);
    // Over the API's body limit (64 KiB): refused before it is decoded.
    let big = iam::CreateApiKeyRequest { description: "d".repeat(70_000), ..create(&[]) };
    let oversized = keys::<_, iam::CreateApiKeyResponse>(s.addr, "Create", big).await;
    assert!(expect_code("oversized", oversized, Code::OutOfRange).contains("too large"));
    // Unknown methods and services.
    for path in [format!("{KEYS}Frobnicate"), "/yandex.cloud.compute.v1.InstanceService/Get".to_owned()] {
        let r = call::<_, iam::ApiKey>(s.addr, &path, Some(ADMIN), &[], iam::GetApiKeyRequest::default()).await;
        expect_code(&path, r, Code::Unimplemented);
    }
    // Nothing was written.
    let listed = s.manager.list(SA, api_keys::PageRequest::first(100)).await.unwrap();
    assert!(listed.items.is_empty());
}

/// `Create` of a key with `scopes` under `idempotency-key: key`.
async fn create_once(
    addr: SocketAddr,
    key: &str,
    scopes: &[&str],
) -> Result<tonic::Response<iam::CreateApiKeyResponse>, tonic::Status> {
    call(addr, &format!("{KEYS}Create"), Some(ADMIN), &[("idempotency-key", key)], create(scopes)).await
}

#[tokio::test]
async fn idempotency_key_metadata_replays_the_first_answer() {
    let s = serve().await;
    let key = "0b8f7c4e-2a51-4c1e-9d3a-6f0e5b7a9c21";
    let first = create_once(s.addr, key, &["yc.monitoring.read"]).await.unwrap();
    assert!(first.metadata().get("idempotent-replayed").is_none());
    let replay = create_once(s.addr, key, &["yc.monitoring.read"]).await.unwrap();
    assert_eq!(replay.metadata().get("idempotent-replayed").unwrap(), "true");
    let (first, replay) = (first.into_inner(), replay.into_inner());
    assert_eq!(first.api_key, replay.api_key);
    assert!(!first.secret.is_empty() && replay.secret.is_empty(), "a replay never shows the secret");
    let other = create_once(s.addr, key, &["yc.postbox.send"]).await;
    expect_code("the key with another request", other, Code::FailedPrecondition);
    let listed = s.manager.list(SA, api_keys::PageRequest::first(100)).await.unwrap();
    assert_eq!(listed.items.len(), 1, "one key made");

    // A replayed refusal is the same status.
    let refused_key = "5d0c2b8e-7f13-4a9b-8c6d-1e2f3a4b5c6d";
    for _ in 0..2 {
        let r = create_once(s.addr, refused_key, &["no.such.scope"]).await;
        expect_code("refused create", r, Code::InvalidArgument);
    }

    // Update and delete replay their logged operations, on the key's
    // record in the store: a repeated delete of a gone key is its replay,
    // not NOT_FOUND.
    let id = first.api_key.unwrap().id;
    let update = iam::UpdateApiKeyRequest {
        api_key_id: id.clone(),
        description: "renamed".into(),
        update_mask: Some(prost_types::FieldMask { paths: vec!["description".into()] }),
        ..Default::default()
    };
    let update_key = [("idempotency-key", "7a1e0c9b-3d54-4f2a-8b6c-0d1e2f3a4b5c")];
    let path = format!("{KEYS}Update");
    let first: tonic::Response<op::Operation> =
        call(s.addr, &path, Some(ADMIN), &update_key, update.clone()).await.unwrap();
    let replay: tonic::Response<op::Operation> = call(s.addr, &path, Some(ADMIN), &update_key, update).await.unwrap();
    assert!(first.metadata().get("idempotent-replayed").is_none());
    assert_eq!(replay.metadata().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(first.into_inner(), replay.into_inner(), "the update's operation, as first answered");
    let delete = iam::DeleteApiKeyRequest { api_key_id: id };
    let delete_key = [("idempotency-key", "c3d4e5f6-0a1b-4c2d-9e3f-4a5b6c7d8e9f")];
    let path = format!("{KEYS}Delete");
    let first: tonic::Response<op::Operation> =
        call(s.addr, &path, Some(ADMIN), &delete_key, delete.clone()).await.unwrap();
    let replay: tonic::Response<op::Operation> = call(s.addr, &path, Some(ADMIN), &delete_key, delete).await.unwrap();
    assert_eq!(replay.metadata().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(first.into_inner(), replay.into_inner(), "the delete's operation, not NOT_FOUND");
}

/// One REST request to the operations router at the root.
async fn rest(
    routers: &AdminRouters<Store, StaticTokens>,
    path: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut request = axum::http::Request::builder().uri(path);
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let response = routers.operations().oneshot(request.body(axum::body::Body::empty()).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

#[tokio::test]
async fn rest_operations_route_answers_by_id_and_refuses_cancel() {
    let s = serve().await;
    let made: iam::CreateApiKeyResponse = keys(s.addr, "Create", create(&["yc.monitoring.read"])).await.unwrap();
    let id = made.api_key.unwrap().id;
    let update =
        iam::UpdateApiKeyRequest { api_key_id: id.clone(), description: "by REST later".into(), ..Default::default() };
    let updated: op::Operation = keys(s.addr, "Update", update).await.unwrap();

    let (status, body) = rest(&s.routers, &format!("/operations/{}", updated.id), Some(ADMIN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], updated.id.as_str());
    assert_eq!(body["done"], true);
    assert_eq!(body["metadata"]["@type"], "type.googleapis.com/yandex.cloud.iam.v1.UpdateApiKeyMetadata");
    assert_eq!(body["response"]["@type"], API_KEY);
    assert_eq!(body["response"]["description"], "by REST later");
    assert!(body["response"].get("status").is_none(), "extension fields only with view=FULL");

    let (status, body) = rest(&s.routers, &format!("/operations/{}:cancel", updated.id), Some(ADMIN)).await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(9)), "{body}");
    let (status, body) = rest(&s.routers, &format!("/operations/{}", "c".repeat(20)), Some(ADMIN)).await;
    assert_eq!((status, body["code"].as_i64()), (404, Some(5)), "{body}");
    let (status, body) = rest(&s.routers, "/operations/x", Some(ADMIN)).await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(3)), "{body}");
    let (status, body) = rest(&s.routers, &format!("/operations/{}", updated.id), None).await;
    assert_eq!((status, body["code"].as_i64()), (401, Some(16)), "{body}");
    let (status, _) = rest(&s.routers, &format!("/operations/{}", updated.id), Some(LIMITED)).await;
    assert_eq!(status, 404, "another account's operation is not found");
}

/// A resource service's call (`service` is its full name) as the admin.
async fn resources<Req, Resp>(
    addr: SocketAddr,
    service: &str,
    method: &str,
    message: Req,
) -> Result<Resp, tonic::Status>
where
    Req: Message + Send + Sync + 'static,
    Resp: Message + Default + Send + Sync + 'static,
{
    call(addr, &format!("/{service}/{method}"), Some(ADMIN), &[], message).await.map(tonic::Response::into_inner)
}

const ACCOUNTS: &str = "yandex.cloud.iam.v1.ServiceAccountService";
const FOLDERS: &str = "yandex.cloud.resourcemanager.v1.FolderService";
const CLOUDS: &str = "yandex.cloud.resourcemanager.v1.CloudService";
const ORGANIZATIONS: &str = "yandex.cloud.organizationmanager.v1.OrganizationService";

#[tokio::test]
async fn service_accounts_over_grpc() {
    use api_keys::resource::DEFAULT_FOLDER_ID;
    let s = serve().await;
    let create = |name: &str| iam::CreateServiceAccountRequest {
        folder_id: DEFAULT_FOLDER_ID.into(),
        name: name.into(),
        labels: [("team".to_owned(), "web".to_owned())].into(),
        ..Default::default()
    };
    let made: op::Operation = resources(s.addr, ACCOUNTS, "Create", create("my-robot")).await.unwrap();
    assert!(made.done);
    assert_eq!(made.created_by, "ops");
    let meta = made.metadata.as_ref().unwrap();
    assert_eq!(meta.type_url, "type.googleapis.com/yandex.cloud.iam.v1.CreateServiceAccountMetadata");
    let response = response_of(&made);
    assert_eq!(response.type_url, "type.googleapis.com/yandex.cloud.iam.v1.ServiceAccount");
    let sa = iam::ServiceAccount::decode(response.value.as_slice()).unwrap();
    assert_eq!(iam::CreateServiceAccountMetadata::decode(meta.value.as_slice()).unwrap().service_account_id, sa.id);
    assert_eq!((sa.name.as_str(), sa.labels["team"].as_str()), ("my-robot", "web"));
    for name in ["robot-a", "robot-b"] {
        let _: op::Operation = resources(s.addr, ACCOUNTS, "Create", create(name)).await.unwrap();
    }

    let got: iam::ServiceAccount =
        resources(s.addr, ACCOUNTS, "Get", iam::GetServiceAccountRequest { service_account_id: sa.id.clone() })
            .await
            .unwrap();
    assert_eq!(got.folder_id, DEFAULT_FOLDER_ID);

    // Paged, two at a time.
    let list = |token: String| iam::ListServiceAccountsRequest {
        folder_id: DEFAULT_FOLDER_ID.into(),
        page_size: 2,
        page_token: token,
        ..Default::default()
    };
    let first: iam::ListServiceAccountsResponse =
        resources(s.addr, ACCOUNTS, "List", list(String::new())).await.unwrap();
    assert_eq!(first.service_accounts.len(), 2);
    let second: iam::ListServiceAccountsResponse =
        resources(s.addr, ACCOUNTS, "List", list(first.next_page_token)).await.unwrap();
    assert_eq!(second.service_accounts.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["robot-b"]);
    assert!(second.next_page_token.is_empty());

    let update = iam::UpdateServiceAccountRequest {
        service_account_id: sa.id.clone(),
        update_mask: Some(prost_types::FieldMask { paths: vec!["description".into()] }),
        description: "builds".into(),
        name: "not-in-the-mask".into(),
        ..Default::default()
    };
    let updated: op::Operation = resources(s.addr, ACCOUNTS, "Update", update).await.unwrap();
    let after = iam::ServiceAccount::decode(response_of(&updated).value.as_slice()).unwrap();
    assert_eq!((after.name.as_str(), after.description.as_str()), ("my-robot", "builds"));
    // OperationService.Get finds a resource's operation by id too.
    let again: op::Operation = call(
        s.addr,
        "/yandex.cloud.operation.OperationService/Get",
        Some(ADMIN),
        &[],
        op::GetOperationRequest { operation_id: made.id.clone() },
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!((again.id.as_str(), again.done), (made.id.as_str(), true));
    assert_eq!(iam::ServiceAccount::decode(response_of(&again).value.as_slice()).unwrap().id, sa.id);

    // Refusals.
    let taken = resources::<_, op::Operation>(s.addr, ACCOUNTS, "Create", create("my-robot")).await;
    expect_code("taken name", taken, Code::AlreadyExists);
    let bad = resources::<_, op::Operation>(s.addr, ACCOUNTS, "Create", create("My_Robot")).await;
    expect_code("bad name", bad, Code::InvalidArgument);
    let lost = iam::CreateServiceAccountRequest { folder_id: "aaaaaaaaaaaaaaaaaaaa".into(), ..create("lost") };
    expect_code(
        "unknown folder",
        resources::<_, op::Operation>(s.addr, ACCOUNTS, "Create", lost).await,
        Code::NotFound,
    );
    let anonymous = call::<_, iam::ServiceAccount>(
        s.addr,
        &format!("/{ACCOUNTS}/Get"),
        None,
        &[],
        iam::GetServiceAccountRequest { service_account_id: sa.id.clone() },
    )
    .await;
    expect_code("no token", anonymous, Code::Unauthenticated);

    let log: iam::ListServiceAccountOperationsResponse = resources(
        s.addr,
        ACCOUNTS,
        "ListOperations",
        iam::ListServiceAccountOperationsRequest { service_account_id: sa.id.clone(), ..Default::default() },
    )
    .await
    .unwrap();
    assert_eq!(
        log.operations.iter().map(|o| o.description.as_str()).collect::<Vec<_>>(),
        ["Update service account", "Create service account"]
    );
    let deleted: op::Operation =
        resources(s.addr, ACCOUNTS, "Delete", iam::DeleteServiceAccountRequest { service_account_id: sa.id.clone() })
            .await
            .unwrap();
    assert_eq!(response_of(&deleted).type_url, "type.googleapis.com/google.protobuf.Empty");
}

#[tokio::test]
async fn folders_clouds_organizations_and_policies_over_grpc() {
    use api_keys::admin::grpc::pb::yandex::cloud::access;
    use api_keys::admin::grpc::pb::yandex::cloud::organizationmanager::v1 as org;
    use api_keys::admin::grpc::pb::yandex::cloud::resourcemanager::v1 as rm;
    use api_keys::resource::{DEFAULT_CLOUD_ID, DEFAULT_ORGANIZATION_ID};
    let s = serve().await;

    let orgs: org::ListOrganizationsResponse =
        resources(s.addr, ORGANIZATIONS, "List", org::ListOrganizationsRequest::default()).await.unwrap();
    assert_eq!(orgs.organizations[0].id, DEFAULT_ORGANIZATION_ID);
    let clouds: rm::ListCloudsResponse =
        resources(s.addr, CLOUDS, "List", rm::ListCloudsRequest::default()).await.unwrap();
    assert_eq!(clouds.clouds[0].id, DEFAULT_CLOUD_ID);

    let made: op::Operation = resources(
        s.addr,
        FOLDERS,
        "Create",
        rm::CreateFolderRequest { cloud_id: DEFAULT_CLOUD_ID.into(), name: "work".into(), ..Default::default() },
    )
    .await
    .unwrap();
    let folder = rm::Folder::decode(response_of(&made).value.as_slice()).unwrap();
    assert_eq!(folder.status, rm::folder::Status::Active as i32);
    let _: op::Operation = resources(
        s.addr,
        ACCOUNTS,
        "Create",
        iam::CreateServiceAccountRequest { folder_id: folder.id.clone(), name: "inside".into(), ..Default::default() },
    )
    .await
    .unwrap();
    let busy = resources::<_, op::Operation>(
        s.addr,
        FOLDERS,
        "Delete",
        rm::DeleteFolderRequest { folder_id: folder.id.clone(), ..Default::default() },
    )
    .await;
    expect_code("non-empty folder", busy, Code::FailedPrecondition);

    // Policies on the organization.
    let deny = access::AccessPolicyBinding {
        access_policy_template_id: "iam.denyServiceAccountApiKeysCreation".into(),
        ..Default::default()
    };
    let bound: op::Operation = resources(
        s.addr,
        ORGANIZATIONS,
        "BindAccessPolicy",
        access::BindAccessPolicyRequest {
            resource_id: DEFAULT_ORGANIZATION_ID.into(),
            access_policy_binding: Some(deny.clone()),
        },
    )
    .await
    .unwrap();
    assert_eq!(bound.metadata.unwrap().type_url, "type.googleapis.com/yandex.cloud.access.BindAccessPolicyMetadata");
    let listed: access::ListAccessPolicyBindingsResponse = resources(
        s.addr,
        ORGANIZATIONS,
        "ListAccessPolicyBindings",
        access::ListAccessPolicyBindingsRequest { resource_id: DEFAULT_ORGANIZATION_ID.into(), ..Default::default() },
    )
    .await
    .unwrap();
    assert_eq!(listed.access_policy_bindings, [deny]);
    let unknown = resources::<_, op::Operation>(
        s.addr,
        CLOUDS,
        "UpdateAccessPolicyBindingParameters",
        access::UpdateAccessPolicyBindingParametersRequest {
            resource_id: DEFAULT_CLOUD_ID.into(),
            access_policy_binding: Some(access::AccessPolicyBinding {
                access_policy_template_id: "iam.apiKeys.requireExpiry".into(),
                ..Default::default()
            }),
        },
    )
    .await;
    expect_code("not bound there", unknown, Code::NotFound);
    let _: op::Operation = resources(
        s.addr,
        ORGANIZATIONS,
        "UnbindAccessPolicy",
        access::UnbindAccessPolicyRequest {
            resource_id: DEFAULT_ORGANIZATION_ID.into(),
            access_policy_template_id: "iam.denyServiceAccountApiKeysCreation".into(),
        },
    )
    .await
    .unwrap();

    let renamed: op::Operation = resources(
        s.addr,
        ORGANIZATIONS,
        "Update",
        org::UpdateOrganizationRequest {
            organization_id: DEFAULT_ORGANIZATION_ID.into(),
            update_mask: Some(prost_types::FieldMask { paths: vec!["title".into()] }),
            title: "Acme".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(org::Organization::decode(response_of(&renamed).value.as_slice()).unwrap().title, "Acme");
    let log: org::ListOrganizationOperationsResponse = resources(
        s.addr,
        ORGANIZATIONS,
        "ListOperations",
        org::ListOrganizationOperationsRequest {
            organization_id: DEFAULT_ORGANIZATION_ID.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(log.operations.len(), 3, "bind, unbind and update are logged as updates");
}
