//! The cloud's `OperationService` over REST: `GET /operations/{operationId}`
//! answers an operation by id, from the operations log (so from any node
//! sharing the store, for as long as the log keeps the entry), with its
//! `response`: the key as the change left it (`yandex.cloud.iam.v1.ApiKey`),
//! or `google.protobuf.Empty` after a delete. `GET
//! /operations/{operationId}:cancel` answers code 9 (`FAILED_PRECONDITION`,
//! HTTP 400): every operation of this API is done when it answers, and a
//! finished operation cannot be cancelled. Both need the same admin
//! authentication as the rest of the API; an operation on a key the
//! caller may not see is "not found", like one that does not exist.
//!
//! An id of a resource's log (a service account, folder, cloud or
//! organization changed) answers that operation, with the resource as
//! the change left it, to a caller who may read the resource.

use axum::extract::{Path, Request};
use axum::response::Response;

use super::api::{AdminApi, Shared, json};
use super::auth::{AdminAction, AdminAuth, AdminCaller};
use super::error::{ApiError, Code};
use super::resources::Changed;
use super::types::{ApiKey, OperationView};
use super::view::{self, View};
use crate::operation::{Operation, OperationChanges, OperationId, OperationKind};
use crate::record::KeyInfo;
use crate::store::KeyStore;

/// The route, relative to where the router is mounted.
pub(super) const ROUTE: &str = "/operations/{operationId}";

/// What an operation answered with, as the log keeps it.
#[derive(Debug, Clone, Copy)]
pub(super) enum OperationResult<'a> {
    /// The key as the change left it.
    Key(&'a KeyInfo),
    /// Nothing: a delete.
    Empty,
    /// What changed: an entry written before the log kept the key.
    Changes(
        #[cfg_attr(not(feature = "grpc"), allow(dead_code, reason = "read by the gRPC services only"))]
        &'a OperationChanges,
    ),
}

impl<'a> OperationResult<'a> {
    /// The result of `op` when it is asked for by id.
    pub(super) fn of(op: &'a Operation) -> Self {
        match (&op.response, op.kind) {
            (_, OperationKind::Delete) => Self::Empty,
            (Some(key), _) => Self::Key(key),
            (None, _) => Self::Changes(&op.changes),
        }
    }
}

/// An operation found by id: a key's or a resource's.
pub(super) enum Found {
    /// A key's log entry.
    Key(Operation),
    /// A resource's log entry.
    Resource(Changed),
}

impl Found {
    fn id(&self) -> &str {
        match self {
            Self::Key(op) => op.id.as_str(),
            Self::Resource(c) => c.op.id.as_str(),
        }
    }
}

impl<S: KeyStore, A: AdminAuth> AdminApi<S, A> {
    /// The operation `raw` names, if `caller` may read its key's log or
    /// its resource.
    ///
    /// # Errors
    /// Code 3 for a malformed id; code 5 for an operation that does not
    /// exist (or is no longer kept) or that the caller may not see; a store
    /// failure.
    pub(super) async fn operation_by_id(&self, caller: &AdminCaller, raw: &str) -> Result<Found, ApiError> {
        let id = OperationId::parse(raw).map_err(|e| ApiError::invalid(format!("operationId: {e}")))?;
        let missing = || ApiError::new(Code::NotFound, format!("operation {id} not found"));
        if let Some(op) = self.manager.operation(&id).await? {
            let allowed = if caller.as_subject().is_some() {
                let account = crate::resource::ResourceRef::ServiceAccount(op.service_account_id.clone());
                self.sees(caller, crate::access_binding::Permission::ReadKeys, &account).await?
            } else {
                self.auth.allows(caller, AdminAction::ListOperations, &op.service_account_id)
            };
            if !allowed {
                return Err(missing());
            }
            return Ok(Found::Key(op));
        }
        self.resource_operation(caller, &id).await?.map(Found::Resource).ok_or_else(missing)
    }

    /// The refusal of a cancel: the operation (found as
    /// [`AdminApi::operation_by_id`] finds it) is done, so code 9.
    pub(super) async fn cancel_operation(&self, caller: &AdminCaller, raw: &str) -> ApiError {
        match self.operation_by_id(caller, raw).await {
            Ok(found) => ApiError::new(
                Code::FailedPrecondition,
                format!("operation {} is done and cannot be cancelled", found.id()),
            ),
            Err(e) => e,
        }
    }
}

/// `GET /operations/{operationId}` and `…:cancel`.
pub(super) async fn get<S: KeyStore, A: AdminAuth>(
    axum::extract::State(api): Shared<S, A>,
    Path(raw): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let caller = api.authenticate(&parts).await?;
    let view = View::of(&parts)?;
    match raw.split_once(':') {
        Some((id, "cancel")) => Err(api.cancel_operation(&caller, id).await),
        Some(_) => Err(ApiError::new(Code::NotFound, "no such method (expected :cancel)")),
        None => match api.operation_by_id(&caller, &raw).await? {
            Found::Key(op) => Ok(json(&OperationView::new(&op, rest_response(&op, view), view))),
            Found::Resource(c) => Ok(json(&super::resources::rest::operation_body(&c))),
        },
    }
}

/// The `response` of `op` in proto3 JSON (`None`: the listing's, the
/// entry's changes).
fn rest_response(op: &Operation, view: View) -> Option<serde_json::Value> {
    match OperationResult::of(op) {
        OperationResult::Key(key) => {
            Some(view::any(view::API_KEY, view.key(serde_json::to_value(ApiKey::from(key)).unwrap_or_default())))
        }
        OperationResult::Empty => Some(view::any(view::EMPTY, serde_json::json!({}))),
        OperationResult::Changes(_) => None,
    }
}
