//! The cloud's gRPC management services (feature `grpc`), beside the REST
//! API and over the same [`AdminApi`](super::AdminApi) (one admin
//! authentication, failed-authentication throttle, `Idempotency-Key` rules
//! over the records in the key store, and the same validation and manager
//! calls):
//!
//! | service | methods | module |
//! |---|---|---|
//! | `yandex.cloud.iam.v1.ApiKeyService` | `List`, `Get`, `Create`, `Update`, `Delete`, `ListOperations`, `ListScopes` | [`api_key`] |
//! | `yandex.cloud.operation.OperationService` | `Get`, `Cancel` | [`operation`] |
//! | `yandex.cloud.iam.v1.ServiceAccountService` | `Get`, `List`, `Create`, `Update`, `Delete`, `ListOperations` | [`resources`] |
//! | `yandex.cloud.resourcemanager.v1.FolderService`, `CloudService` | the same, and `ListAccessPolicyBindings`, `BindAccessPolicy`, `UnbindAccessPolicy`, `UpdateAccessPolicyBindingParameters` | [`resources`] |
//! | `yandex.cloud.organizationmanager.v1.OrganizationService` | `Get`, `List`, `Update`, `ListOperations` and the four policy methods | [`resources`] |
//! | `yandex.cloud.endpoint.ApiEndpointService` | `List`, `Get` (no authentication) | [`endpoint`] |
//!
//! [`AdminRouters::grpc`](super::AdminRouters::grpc) makes them an axum
//! router; mount it for requests whose `content-type` is
//! `application/grpc` (its fallback answers `UNIMPLEMENTED`).
//!
//! Calls authenticate with the metadata `authorization: Bearer <admin
//! token>`; refusals are gRPC statuses with the `google.rpc` codes of the
//! REST answers (`UNAUTHENTICATED`, `PERMISSION_DENIED`, `NOT_FOUND`,
//! `INVALID_ARGUMENT`, `FAILED_PRECONDITION`, `RESOURCE_EXHAUSTED`,
//! `UNAVAILABLE`). proto3 reads an empty string, an empty list and a
//! missing timestamp as unset; update masks name snake_case paths
//! (`description`, `scopes`, `expires_at`). `Create`, `Update` and
//! `Delete` accept the metadata `idempotency-key` (a UUID) as REST accepts
//! the header (a replay is rebuilt from the logged operation and carries
//! `idempotent-replayed: true`; a replayed create has no secret). Operations are done when they answer; their
//! `metadata` and `response` are `google.protobuf.Any`s with the type URLs
//! of [`super::view`]. Messages are capped at the API's body limit.

pub mod api_key;
pub mod endpoint;
pub mod operation;
pub mod resources;

use axum::Router;
use axum::http::request::Parts;
use axum::http::{Method, Uri};
use tonic::service::Routes;

use super::api::{AdminRouters, Outcome, idempotency_key};
use super::auth::{AdminAuth, AdminCaller};
use super::error::ApiError;
use super::operations::OperationResult;
use super::types;
use super::view;
use crate::clock::Timestamp;
use crate::operation::{Operation, OperationKind};
use crate::store::KeyStore;
use crate::store::idempotency::IdempotencyClaim;

/// The messages and service traits generated from `proto/` (the cloud's
/// definitions, and the project's `apikeys.v1`).
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic, rust_2018_idioms, reason = "generated code")]
pub mod pb {
    /// `google.rpc`.
    pub mod google {
        /// `google.rpc`.
        pub mod rpc {
            include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        }
    }
    /// The project's own types.
    pub mod apikeys {
        /// `apikeys.v1`.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/apikeys.v1.rs"));
        }
    }
    /// The cloud's types.
    pub mod yandex {
        /// `yandex.cloud`.
        pub mod cloud {
            /// `yandex.cloud.iam.v1`.
            pub mod iam {
                /// `yandex.cloud.iam.v1`.
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/yandex.cloud.iam.v1.rs"));
                }
            }
            /// `yandex.cloud.access`.
            pub mod access {
                include!(concat!(env!("OUT_DIR"), "/yandex.cloud.access.rs"));
            }
            /// `yandex.cloud.resourcemanager`.
            pub mod resourcemanager {
                /// `yandex.cloud.resourcemanager.v1`.
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/yandex.cloud.resourcemanager.v1.rs"));
                }
            }
            /// `yandex.cloud.organizationmanager`.
            pub mod organizationmanager {
                /// `yandex.cloud.organizationmanager.v1`.
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/yandex.cloud.organizationmanager.v1.rs"));
                }
            }
            /// `yandex.cloud.operation`.
            pub mod operation {
                include!(concat!(env!("OUT_DIR"), "/yandex.cloud.operation.rs"));
            }
            /// `yandex.cloud.endpoint`.
            pub mod endpoint {
                include!(concat!(env!("OUT_DIR"), "/yandex.cloud.endpoint.rs"));
            }
        }
    }
}

use pb::yandex::cloud::{iam::v1 as iam, operation as op};

/// What `ApiEndpointService` advertises: the `HOST:PORT` clients reach
/// this server at (the SDKs connect to it for every service they find).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiEndpoints {
    address: String,
}

impl ApiEndpoints {
    /// The services, all at `address` (`HOST:PORT`, e.g. the TLS
    /// certificate's name and the public port).
    #[must_use]
    pub fn at(address: impl Into<String>) -> Self {
        Self { address: address.into() }
    }

    /// The advertised address.
    #[must_use]
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl<S: KeyStore, A: AdminAuth> AdminRouters<S, A> {
    /// The gRPC services, advertising `endpoints`, as an axum router whose
    /// fallback answers `UNIMPLEMENTED`; route `application/grpc` requests
    /// to it (over HTTP/2).
    pub fn grpc(&self, endpoints: ApiEndpoints) -> Router {
        let limit = self.api.body_limit;
        let services = Services { api: std::sync::Arc::clone(&self.api) };
        let keys =
            iam::api_key_service_server::ApiKeyServiceServer::new(services.clone()).max_decoding_message_size(limit);
        let operations = op::operation_service_server::OperationServiceServer::new(services.clone())
            .max_decoding_message_size(limit);
        let accounts = iam::service_account_service_server::ServiceAccountServiceServer::new(services.clone())
            .max_decoding_message_size(limit);
        let folders =
            pb::yandex::cloud::resourcemanager::v1::folder_service_server::FolderServiceServer::new(services.clone())
                .max_decoding_message_size(limit);
        let clouds =
            pb::yandex::cloud::resourcemanager::v1::cloud_service_server::CloudServiceServer::new(services.clone())
                .max_decoding_message_size(limit);
        let organizations =
            pb::yandex::cloud::organizationmanager::v1::organization_service_server::OrganizationServiceServer::new(
                services,
            )
            .max_decoding_message_size(limit);
        let endpoints = pb::yandex::cloud::endpoint::api_endpoint_service_server::ApiEndpointServiceServer::new(
            endpoint::Endpoints::new(endpoints),
        )
        .max_decoding_message_size(limit);
        Routes::new(keys)
            .add_service(operations)
            .add_service(accounts)
            .add_service(folders)
            .add_service(clouds)
            .add_service(organizations)
            .add_service(endpoints)
            .into_axum_router()
    }
}

/// The management services over an [`AdminApi`](super::AdminApi) (one
/// value serves them all).
pub struct Services<S, A> {
    api: std::sync::Arc<super::AdminApi<S, A>>,
}

impl<S, A> Clone for Services<S, A> {
    fn clone(&self) -> Self {
        Self { api: std::sync::Arc::clone(&self.api) }
    }
}

impl<S, A> std::fmt::Debug for Services<S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

/// A gRPC request as the REST steps read it (metadata as headers, the
/// connection's extensions such as the peer address), on `path`, and its
/// message.
fn call<T>(request: tonic::Request<T>, path: &'static str) -> (Parts, T) {
    let (metadata, extensions, message) = request.into_parts();
    let (mut parts, ()) = axum::http::Request::new(()).into_parts();
    parts.method = Method::POST;
    parts.uri = Uri::from_static(path);
    parts.headers = metadata.into_headers();
    parts.extensions = extensions;
    (parts, message)
}

/// The gRPC status of an API error: the same `google.rpc` code and message.
fn status(e: ApiError) -> tonic::Status {
    tonic::Status::new(tonic::Code::from_i32(e.code().number()), e.message())
}

/// Refuses a page size outside `0..=u32::MAX` (the API's own limit
/// follows).
fn page_size(n: i64) -> Result<Option<u32>, tonic::Status> {
    u32::try_from(n).map(Some).map_err(|_| status(ApiError::invalid("page_size must be 0 to 1000")))
}

/// A proto3 string: empty is unset.
fn set(text: String) -> Option<String> {
    Some(text).filter(|t| !t.is_empty())
}

/// A proto3 list: empty is unset.
fn set_list(items: Vec<String>) -> Option<Vec<String>> {
    Some(items).filter(|i| !i.is_empty())
}

/// A timestamp as RFC 3339, for the REST request types (whose parsing
/// checks the range); a malformed one or one before 1970 is refused.
fn time_text(field: &str, t: prost_types::Timestamp) -> Result<String, tonic::Status> {
    let bad = |why: &str| status(ApiError::invalid(format!("{field}: {why}")));
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(bad("nanos must be 0 to 999999999"));
    }
    if t.seconds < 0 {
        return Err(bad("must not be before 1970-01-01T00:00:00Z"));
    }
    let nanos = i64::try_from(i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos))
        .map_err(|_| bad("at most 2105-12-31T23:59:59.999999999Z"))?;
    Timestamp::from_unix_nanos(nanos)
        .to_offset_date_time()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|_| bad("not a valid time"))
}

/// A time as a protobuf timestamp.
fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    let nanos = t.unix_nanos();
    // rem_euclid of 10^9 is below 10^9, so it fits an i32.
    prost_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000),
        nanos: i32::try_from(nanos.rem_euclid(1_000_000_000)).unwrap_or(0),
    }
}

/// The cloud's `ApiKey` of the API's key view (its documented fields).
fn api_key(k: &types::ApiKey) -> iam::ApiKey {
    iam::ApiKey {
        id: k.id.clone(),
        service_account_id: k.service_account_id.clone(),
        created_at: Some(timestamp(k.created_at)),
        description: k.description.clone(),
        last_used_at: k.last_used_at.map(timestamp),
        scopes: k.scopes.clone(),
        expires_at: k.expires_at.map(timestamp),
        masked_secret: k.masked_secret.clone(),
        ..iam::ApiKey::default()
    }
}

/// `message` packed as an `Any` of `type_url`.
fn any(type_url: &str, message: &impl prost::Message) -> prost_types::Any {
    prost_types::Any { type_url: type_url.to_owned(), value: message.encode_to_vec() }
}

/// The `Operation` of a log entry with `result` as its `response`. Every
/// metadata type (the cloud's `UpdateApiKeyMetadata` and
/// `DeleteApiKeyMetadata`, the project's for the other kinds) is
/// `{string api_key_id = 1;}`, so one encoding serves under each type URL.
fn operation_message(o: &Operation, result: OperationResult<'_>) -> op::Operation {
    let metadata = iam::UpdateApiKeyMetadata { api_key_id: o.key_id.as_str().to_owned() };
    let response = match result {
        OperationResult::Key(key) => any(view::API_KEY, &api_key(&types::ApiKey::from(key))),
        OperationResult::Empty => any(view::EMPTY, &()),
        OperationResult::Changes(c) => any(
            view::API_KEY_CHANGES,
            &pb::apikeys::v1::ApiKeyChanges {
                description: c.description.as_ref().map(|d| d.as_str().to_owned()).unwrap_or_default(),
                scopes: c.scopes.iter().flat_map(|s| s.iter()).map(|s| s.as_str().to_owned()).collect(),
                expires_at: c.expires_at.flatten().map(timestamp),
            },
        ),
    };
    op::Operation {
        id: o.id.as_str().to_owned(),
        description: types::describe(o.kind).to_owned(),
        created_at: Some(timestamp(o.created_at)),
        created_by: o.actor.as_str().to_owned(),
        modified_at: Some(timestamp(o.created_at)),
        done: true,
        metadata: Some(any(view::metadata_type(o.kind), &metadata)),
        result: Some(op::operation::Result::Response(response)),
    }
}

/// A listed log entry: `Empty` for a delete, what changed otherwise (as
/// the REST listing shows it).
fn listed_operation(o: &Operation) -> op::Operation {
    let result = match o.kind {
        OperationKind::Delete => OperationResult::Empty,
        _ => OperationResult::Changes(&o.changes),
    };
    operation_message(o, result)
}

/// The gRPC answer of a change's outcome: the message, or the status of
/// its error; a replay is rebuilt from the logged operation by `replay`
/// and marked `idempotent-replayed: true`.
fn respond<M>(
    outcome: Outcome<M>,
    replay: impl FnOnce(&Operation) -> Result<M, ApiError>,
) -> Result<tonic::Response<M>, tonic::Status> {
    match outcome {
        Outcome::Ran(Ok(m)) => Ok(tonic::Response::new(m)),
        Outcome::Ran(Err(e)) | Outcome::Refused(e) => Err(status(e)),
        // A key service's request never has a resource change's fingerprint.
        Outcome::ReplayedResource(_) => Err(status(super::api::mismatch())),
        Outcome::Replayed(op) => {
            let mut response = tonic::Response::new(replay(&op).map_err(status)?);
            response
                .metadata_mut()
                .insert(super::idempotency::REPLAYED_HEADER, tonic::metadata::MetadataValue::from_static("true"));
            Ok(response)
        }
    }
}

/// The key a logged change left, for its replay.
fn logged_key(op: &Operation) -> Result<&crate::record::KeyInfo, ApiError> {
    op.response.as_ref().ok_or_else(|| {
        ApiError::new(super::error::Code::FailedPrecondition, "the recorded change kept no answer to give again")
    })
}

/// What a change starts from: its caller and, with the metadata
/// `idempotency-key`, its claim (the fingerprint of `message` on `path`);
/// or (`Ok(Err(_))`), for a repeat of a request whose change landed, the
/// outcome to answer instead of running (its replay or refusal).
async fn change_caller<S: KeyStore, A: AdminAuth, M>(
    api: &super::AdminApi<S, A>,
    parts: &Parts,
    path: &str,
    message: &impl prost::Message,
) -> Result<Result<(AdminCaller, Option<IdempotencyClaim>), Outcome<M>>, tonic::Status> {
    let caller = api.authenticate(parts).await.map_err(status)?;
    let key = idempotency_key(parts).map_err(status)?;
    let print = || super::idempotency::fingerprint(Method::POST.as_str(), path, &message.encode_to_vec());
    Ok(api.claim(&caller, key, print).await.map(|claim| (caller, claim)))
}
