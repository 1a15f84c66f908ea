//! gRPC behind the tower layer: a real tonic server (tonic's health service)
//! on loopback, wrapped in `ApiKeyLayer`, and a real tonic client sending
//! `authorization: Api-Key …` metadata. Refusals reach the client as gRPC
//! statuses (trailers-only responses), not as HTTP 401s it cannot read. (The
//! layer picks the form by the request's `content-type: application/grpc`;
//! plain HTTP clients keep getting problem+json, as `tests/http.rs` shows.)

#![cfg(all(feature = "tower", feature = "test-util"))]
#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::SocketAddr;
use std::sync::Arc;

use api_keys::http::ApiKeyLayer;
use api_keys::testing::{Fault, FaultyStore, Op};
use api_keys::{CreateRequest, KeyManager, KeyStore, MemoryStore, Pepper, Peppers};
use tonic::Code;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_server::HealthServer};

/// Serves tonic's health service behind `layer` on a loopback port.
async fn serve<S: KeyStore>(layer: ApiKeyLayer<S>) -> SocketAddr {
    let (_reporter, health): (_, HealthServer<_>) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder().layer(layer).add_service(health);
    tokio::spawn(server.serve_with_incoming(TcpIncoming::from(listener)));
    addr
}

/// One `Health/Check` call with the given authorization metadata.
async fn check(addr: SocketAddr, authorization: Option<&str>) -> Result<ServingStatus, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
    if let Some(value) = authorization {
        request.metadata_mut().insert("authorization", value.parse().unwrap());
    }
    let response = client.check(request).await?;
    Ok(response.into_inner().status())
}

fn peppers() -> Peppers {
    Peppers::single(Pepper::generate(1).unwrap())
}

#[tokio::test]
async fn grpc_clients_get_grpc_statuses() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let manager = KeyManager::builder(Arc::clone(&store), peppers(), api_keys::testing::scope_catalog()).build();
    let catalog = manager.catalog().clone();
    let layer =
        ApiKeyLayer::new(manager.verifier().build()).require_scope(catalog.requirement("yc.monitoring.read").unwrap());
    let addr = serve(layer).await;

    let granted = manager.create(CreateRequest::new("grpc-robot").scopes(["yc.monitoring.manage"])).await.unwrap();
    let header = format!("Api-Key {}", granted.secret.expose_secret());
    assert_eq!(check(addr, Some(&header)).await.unwrap(), ServingStatus::Serving);

    // Missing and invalid keys: UNAUTHENTICATED, with the same message for every invalid key.
    let missing = check(addr, None).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated, "{missing:?}");
    let mut tampered = header.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let forged = format!("Api-Key {}", api_keys::TokenFormat::default().generate().unwrap().secret.expose_secret());
    let bad = [String::from_utf8(tampered).unwrap(), forged, "Api-Key short".to_owned()];
    let mut messages = Vec::new();
    for value in &bad {
        let e = check(addr, Some(value)).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{value}: {e:?}");
        messages.push(e.message().to_owned());
    }
    assert!(messages[..2].windows(2).all(|w| w[0] == w[1]), "{messages:?}");

    // A valid key without the scope: PERMISSION_DENIED.
    let narrow = manager.create(CreateRequest::new("grpc-robot").scopes(["yc.postbox.send"])).await.unwrap();
    let e = check(addr, Some(&format!("Api-Key {}", narrow.secret.expose_secret()))).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // The store is down: UNAVAILABLE (fail closed).
    store.always(Op::Get, Fault::Error);
    let e = check(addr, Some(&header)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    store.heal();
    assert_eq!(check(addr, Some(&header)).await.unwrap(), ServingStatus::Serving);
}

/// The management gRPC services (feature `grpc`).
#[cfg(feature = "grpc")]
#[path = "grpc/management.rs"]
mod management;
