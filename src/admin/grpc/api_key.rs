//! `yandex.cloud.iam.v1.ApiKeyService` over the REST API's steps: each
//! method authenticates, converts its message to the REST request (proto3
//! unset rules), and calls the same validation and manager call.

use tonic::{Request, Response, Status};

use super::Services;
use super::iam::api_key_service_server::ApiKeyService;
use super::iam::{
    ApiKey, CreateApiKeyRequest, CreateApiKeyResponse, DeleteApiKeyRequest, GetApiKeyRequest,
    ListApiKeyOperationsRequest, ListApiKeyOperationsResponse, ListApiKeyScopesRequest, ListApiKeyScopesResponse,
    ListApiKeysRequest, ListApiKeysResponse, UpdateApiKeyRequest,
};
use super::op::Operation;
use super::{
    api_key, call, change_caller, listed_operation, logged_key, operation_message, page_size, respond, set, set_list,
    status, time_text,
};
use crate::admin::api::{ListQuery, PageQuery, apply_create, apply_delete};
use crate::admin::auth::{AdminAction, AdminAuth};
use crate::admin::error::ApiError;
use crate::admin::operations::OperationResult;
use crate::admin::sealed;
use crate::admin::types;
use crate::store::KeyStore;

const GET: &str = "/yandex.cloud.iam.v1.ApiKeyService/Get";
const LIST: &str = "/yandex.cloud.iam.v1.ApiKeyService/List";
const CREATE: &str = "/yandex.cloud.iam.v1.ApiKeyService/Create";
const UPDATE: &str = "/yandex.cloud.iam.v1.ApiKeyService/Update";
const DELETE: &str = "/yandex.cloud.iam.v1.ApiKeyService/Delete";
const LIST_OPERATIONS: &str = "/yandex.cloud.iam.v1.ApiKeyService/ListOperations";
const LIST_SCOPES: &str = "/yandex.cloud.iam.v1.ApiKeyService/ListScopes";

/// The REST create request of a gRPC one.
#[allow(deprecated, reason = "the cloud's deprecated `scope` is still accepted, as one scope")]
fn create_request(m: CreateApiKeyRequest) -> Result<types::CreateApiKeyRequest, Status> {
    Ok(types::CreateApiKeyRequest {
        service_account_id: set(m.service_account_id),
        scope: set(m.scope),
        description: set(m.description),
        scopes: set_list(m.scopes),
        expires_at: m.expires_at.map(|t| time_text("expires_at", t)).transpose()?,
        ..types::CreateApiKeyRequest::default()
    })
}

/// The REST update request of a gRPC one: the mask's snake_case paths, and
/// the fields as set (proto3: empty is unset).
fn update_request(m: UpdateApiKeyRequest) -> Result<types::UpdateApiKeyRequest, Status> {
    Ok(types::UpdateApiKeyRequest {
        update_mask: m.update_mask.map(|mask| mask.paths.join(",")),
        description: set(m.description),
        scopes: set_list(m.scopes),
        expires_at: m.expires_at.map(|t| time_text("expires_at", t)).transpose()?,
        ..types::UpdateApiKeyRequest::default()
    })
}

#[tonic::async_trait]
impl<S: KeyStore, A: AdminAuth> ApiKeyService for Services<S, A> {
    async fn get(&self, request: Request<GetApiKeyRequest>) -> Result<Response<ApiKey>, Status> {
        let (parts, m) = call(request, GET);
        let caller = self.api.authenticate(&parts).await.map_err(status)?;
        let key = self.api.key_for(&caller, AdminAction::Get, &m.api_key_id).await.map_err(status)?;
        Ok(Response::new(api_key(&types::ApiKey::from(&key))))
    }

    async fn list(&self, request: Request<ListApiKeysRequest>) -> Result<Response<ListApiKeysResponse>, Status> {
        let (parts, m) = call(request, LIST);
        let caller = self.api.authenticate(&parts).await.map_err(status)?;
        let q = ListQuery::of_account(m.service_account_id, page_size(m.page_size)?, m.page_token);
        let (keys, next_page_token) = self.api.list_keys(&caller, q).await.map_err(status)?;
        let api_keys = keys.iter().map(|k| api_key(&types::ApiKey::from(k))).collect();
        Ok(Response::new(ListApiKeysResponse { api_keys, next_page_token }))
    }

    async fn create(&self, request: Request<CreateApiKeyRequest>) -> Result<Response<CreateApiKeyResponse>, Status> {
        let (parts, m) = call(request, CREATE);
        let (caller, claim) = match change_caller(&self.api, &parts, CREATE, &m).await? {
            Ok(started) => started,
            Err(recorded) => return respond(recorded, replayed_create),
        };
        // The pgp_key is checked with the rest, before the key is made.
        let pgp_key = m.pgp_key.clone();
        let prepared = self.api.prepare_create(&caller, &create_request(m)?).await.and_then(|create| {
            let to = sealed::recipient("pgp_key", Some(&pgp_key))?;
            Ok((create, to))
        });
        let outcome = self
            .api
            .change_keyed(&caller, claim, prepared, |manager, (create, to)| async move {
                let (key, created) = apply_create(manager, create).await?;
                let api_key = Some(api_key(&key));
                Ok(match to {
                    Some(to) => CreateApiKeyResponse {
                        api_key,
                        secret: String::new(),
                        encrypted_secret: sealed::seal(&to, &created)?,
                    },
                    None => CreateApiKeyResponse {
                        api_key,
                        secret: created.secret.expose_secret().to_owned(),
                        encrypted_secret: String::new(),
                    },
                })
            })
            .await;
        respond(outcome, replayed_create)
    }

    async fn update(&self, request: Request<UpdateApiKeyRequest>) -> Result<Response<Operation>, Status> {
        let (parts, m) = call(request, UPDATE);
        let (caller, claim) = match change_caller(&self.api, &parts, UPDATE, &m).await? {
            Ok(started) => started,
            Err(recorded) => return respond(recorded, replayed_update),
        };
        let id = m.api_key_id.clone();
        let prepared = self.api.prepare_update(&caller, &id, &update_request(m)?).await;
        let outcome = self
            .api
            .change_keyed(&caller, claim, prepared, |manager, (update, id)| async move {
                let (info, op) = manager.update(&id, update).await?;
                Ok(operation_message(&op, OperationResult::Key(&info)))
            })
            .await;
        respond(outcome, replayed_update)
    }

    async fn delete(&self, request: Request<DeleteApiKeyRequest>) -> Result<Response<Operation>, Status> {
        let (parts, m) = call(request, DELETE);
        let (caller, claim) = match change_caller(&self.api, &parts, DELETE, &m).await? {
            Ok(started) => started,
            Err(recorded) => return respond(recorded, replayed_delete),
        };
        let prepared = self.api.key_for(&caller, AdminAction::Delete, &m.api_key_id).await;
        let outcome = self
            .api
            .change_keyed(&caller, claim, prepared, |manager, key| async move {
                let op = apply_delete(manager, key).await?;
                Ok(operation_message(&op, OperationResult::Empty))
            })
            .await;
        respond(outcome, replayed_delete)
    }

    async fn list_operations(
        &self,
        request: Request<ListApiKeyOperationsRequest>,
    ) -> Result<Response<ListApiKeyOperationsResponse>, Status> {
        let (parts, m) = call(request, LIST_OPERATIONS);
        let caller = self.api.authenticate(&parts).await.map_err(status)?;
        let q = PageQuery::new(page_size(m.page_size)?, m.page_token);
        let (operations, next_page_token) =
            self.api.list_operations(&caller, &m.api_key_id, q).await.map_err(status)?;
        let operations = operations.iter().map(listed_operation).collect();
        Ok(Response::new(ListApiKeyOperationsResponse { operations, next_page_token }))
    }

    async fn list_scopes(
        &self,
        request: Request<ListApiKeyScopesRequest>,
    ) -> Result<Response<ListApiKeyScopesResponse>, Status> {
        let (parts, m) = call(request, LIST_SCOPES);
        self.api.authenticate(&parts).await.map_err(status)?;
        let q = PageQuery::new(page_size(m.page_size)?, m.page_token);
        let (page, next_page_token) = self.api.scope_page(&q).map_err(status)?;
        let scopes = page.iter().map(|s| s.scope.as_str().to_owned()).collect();
        Ok(Response::new(ListApiKeyScopesResponse { scopes, next_page_token }))
    }
}

/// A replayed create: the key the logged operation made, never its secret
/// (nor, for a create with `pgp_key`, the encrypted secret: it is not kept).
fn replayed_create(op: &crate::operation::Operation) -> Result<CreateApiKeyResponse, ApiError> {
    let key = api_key(&types::ApiKey::from(logged_key(op)?));
    Ok(CreateApiKeyResponse { api_key: Some(key), secret: String::new(), encrypted_secret: String::new() })
}

/// A replayed update: the logged operation with the key it left.
fn replayed_update(op: &crate::operation::Operation) -> Result<Operation, ApiError> {
    Ok(operation_message(op, OperationResult::Key(logged_key(op)?)))
}

/// A replayed delete: the logged operation.
#[allow(clippy::unnecessary_wraps, reason = "the shape every replay has")]
fn replayed_delete(op: &crate::operation::Operation) -> Result<Operation, ApiError> {
    Ok(operation_message(op, OperationResult::Empty))
}
