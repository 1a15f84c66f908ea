//! The resource routes, on the cloud's paths:
//!
//! | path | methods |
//! |---|---|
//! | `/iam/v1/serviceAccounts` | `GET ?folderId=` (list), `POST` (create) |
//! | `/iam/v1/serviceAccounts/{serviceAccountId}` | `GET`, `PATCH`, `DELETE` |
//! | `/resource-manager/v1/folders`, `…/clouds` | as above, listed by `cloudId`, `organizationId` |
//! | `/organization-manager/v1/organizations` | as above (create and delete are the project's extension) |
//! | `…/{id}/operations` | `GET`: the resource's log, newest first |
//! | `…/{id}:listAccessPolicyBindings` | `GET` (folders, clouds, organizations) |
//! | `…/{id}:bindAccessPolicy`, `…/{id}:unbindAccessPolicy` | `POST` |
//! | `…/{id}:updateAccessPolicyBindingParameters` | `PATCH` |
//! | `…/{id}:listAccessBindings` | `GET` (every resource) |
//! | `…/{id}:setAccessBindings`, `…/{id}:updateAccessBindings` | `POST` (deltas `ADD`, `REMOVE`) |
//! | `/iam/v1/accessPolicyTemplates` | `GET`: the templates (the project's own route) |
//!
//! A `:verb` sits inside the id's path segment, so `/{id}` takes every
//! method and dispatches on the suffix. Changes answer the cloud's
//! `Operation` (done).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Answer, Changed, Face, Metadata, PolicyCall, PolicyRequest, ResourceCall, SERVICE_ACCOUNTS};
use crate::access_binding::AccessBindingDelta;
use crate::admin::api::{AdminApi, PageQuery, Shared, idempotency_key, json as answer, parse, query};
use crate::admin::auth::AdminAuth;
use crate::admin::error::{ApiError, Code};
use crate::admin::idempotency;
use crate::admin::resource_types::{
    AccessPolicyBindingBody, AccessPolicyTemplateBody, BindAccessPolicyRequest, ListAccessBindingsResponse,
    ListAccessPolicyBindingsResponse, ListAccessPolicyTemplatesResponse, ResourceOperationBody,
    SetAccessBindingsRequest, UnbindAccessPolicyRequest, UpdateAccessBindingsRequest, UpdateResourceRequest,
};
use crate::admin::view::{View, any};
use crate::resource::Resource;
use crate::store::KeyStore;

type Routes<S, A> = Router<Arc<AdminApi<S, A>>>;

/// The routes of `face` under `base` (`/serviceAccounts`).
pub(in crate::admin) fn routes<S: KeyStore, A: AdminAuth>(face: Face, base: &str) -> Routes<S, A> {
    let one = move |State(api): Shared<S, A>, Path(id): Path<String>, request: Request| async move {
        item(&api, face, id, request).await.unwrap_or_else(IntoResponse::into_response)
    };
    let log = move |State(api): Shared<S, A>, Path(id): Path<String>, request: Request| async move {
        operations(&api, face, &id, request).await
    };
    Router::new()
        .route(
            base,
            get(move |State(api): Shared<S, A>, request: Request| async move { list(&api, face, request).await }).post(
                move |State(api): Shared<S, A>, request: Request| async move {
                    change(&api, face, request, |raw| parse(raw, false).map(ResourceCall::Create)).await
                },
            ),
        )
        .route(&format!("{base}/{{id}}"), get(one).patch(one).delete(one).post(one))
        .route(&format!("{base}/{{id}}/operations"), get(log))
}

/// `/serviceAccounts` and `/accessPolicyTemplates`, for the router nested
/// at `/iam/v1`.
pub(in crate::admin) fn iam_routes<S: KeyStore, A: AdminAuth>() -> Routes<S, A> {
    routes(SERVICE_ACCOUNTS, "/serviceAccounts").route("/accessPolicyTemplates", get(templates::<S, A>))
}

/// The query of a listing.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    folder_id: Option<String>,
    cloud_id: Option<String>,
    organization_id: Option<String>,
    page_size: Option<u32>,
    page_token: Option<String>,
    filter: Option<String>,
    #[serde(rename = "view")]
    _view: Option<String>,
}

/// An empty body (`{}` or nothing).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoFields {}

async fn list<S: KeyStore, A: AdminAuth>(api: &AdminApi<S, A>, face: Face, request: Request) -> Response {
    let run = async {
        let (parts, _) = request.into_parts();
        let caller = api.authenticate(&parts).await?;
        View::of(&parts)?;
        let q: ListQuery = query(&parts)?;
        let given = [("folderId", q.folder_id), ("cloudId", q.cloud_id), ("organizationId", q.organization_id)];
        let mut parent = String::new();
        for (field, value) in given {
            match value {
                Some(v) if Some(field) == face.parent_field => parent = v,
                Some(_) => return Err(ApiError::invalid(format!("{field}: {}s are not listed by it", face.noun))),
                None => {}
            }
        }
        let page = PageQuery::new(q.page_size, q.page_token.unwrap_or_default());
        let filter = q.filter.unwrap_or_default();
        let (items, next) = api.list_resources(&caller, face, &parent, &filter, &page).await?;
        let items: Vec<Value> = items.iter().map(resource_json).collect();
        Ok(answer(&json!({ face.list_field: items, "nextPageToken": next })))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET`, `PATCH`, `DELETE` and `POST` on `/{id}`, by method and `:verb`.
async fn item<S: KeyStore, A: AdminAuth>(
    api: &AdminApi<S, A>,
    face: Face,
    id: String,
    request: Request,
) -> Result<Response, ApiError> {
    let (id, verb) = match id.split_once(':') {
        Some((id, verb)) => (id.to_owned(), Some(verb.to_owned())),
        None => (id, None),
    };
    let method = request.method().clone();
    match (method, verb.as_deref()) {
        (Method::GET, None) => {
            let (parts, _) = request.into_parts();
            let caller = api.authenticate(&parts).await?;
            View::of(&parts)?;
            Ok(answer(&resource_json(&api.get_resource(&caller, face, &id).await?)))
        }
        (Method::PATCH, None) => {
            let call = |raw: &[u8]| parse::<UpdateResourceRequest>(raw, false).map(|r| ResourceCall::Update(id, r));
            Ok(change(api, face, request, call).await)
        }
        (Method::DELETE, None) => {
            let call = |raw: &[u8]| parse::<NoFields>(raw, true).map(|NoFields {}| ResourceCall::Delete(id));
            Ok(change(api, face, request, call).await)
        }
        (method, Some(verb @ ("listAccessBindings" | "setAccessBindings" | "updateAccessBindings"))) => {
            access(api, face, id, &method, verb, request).await
        }
        (method, Some(verb)) if face.policies => policy(api, face, id, &method, verb, request).await,
        _ => Err(ApiError::new(Code::NotFound, format!("no such method on a {}", face.noun))),
    }
}

/// The access policy methods (`:listAccessPolicyBindings`, …).
async fn policy<S: KeyStore, A: AdminAuth>(
    api: &AdminApi<S, A>,
    face: Face,
    id: String,
    method: &Method,
    verb: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let body = |raw: &[u8]| parse::<BindAccessPolicyRequest>(raw, false).map(|r| r.access_policy_binding);
    let call = match (method, verb) {
        (&Method::GET, "listAccessPolicyBindings") => return list_bindings(api, face, &id, request).await,
        (&Method::POST, "bindAccessPolicy") => {
            change(api, face, request, |raw| Ok(ResourceCall::Policy(id, PolicyRequest::Bind(body(raw)?)))).await
        }
        (&Method::PATCH, "updateAccessPolicyBindingParameters") => {
            let call = |raw: &[u8]| Ok(ResourceCall::Policy(id, PolicyRequest::UpdateParameters(body(raw)?)));
            change(api, face, request, call).await
        }
        (&Method::POST, "unbindAccessPolicy") => {
            let call = |raw: &[u8]| {
                let r: UnbindAccessPolicyRequest = parse(raw, false)?;
                Ok(ResourceCall::Policy(id, PolicyRequest::Unbind(r.access_policy_template_id)))
            };
            change(api, face, request, call).await
        }
        _ => {
            return Err(ApiError::new(
                Code::NotFound,
                "no such method (expected GET :listAccessPolicyBindings, POST :bindAccessPolicy or \
                 :unbindAccessPolicy, PATCH :updateAccessPolicyBindingParameters)",
            ));
        }
    };
    Ok(call)
}

/// The access binding methods (`:listAccessBindings`, …).
async fn access<S: KeyStore, A: AdminAuth>(
    api: &AdminApi<S, A>,
    face: Face,
    id: String,
    method: &Method,
    verb: &str,
    request: Request,
) -> Result<Response, ApiError> {
    match (method, verb) {
        (&Method::GET, "listAccessBindings") => {
            let (parts, _) = request.into_parts();
            let caller = api.authenticate(&parts).await?;
            View::of(&parts)?;
            let _: PageQuery = query(&parts)?;
            let bindings = api.access_bindings(&caller, face, &id).await?;
            let access_bindings = bindings.iter().map(super::access_binding_body).collect();
            Ok(answer(&ListAccessBindingsResponse { access_bindings, next_page_token: String::new() }))
        }
        (&Method::POST, "setAccessBindings") => {
            let call = |raw: &[u8]| {
                let r: SetAccessBindingsRequest = parse(raw, false)?;
                let deltas = r
                    .access_bindings
                    .into_iter()
                    .map(|b| super::access_binding(b).map(AccessBindingDelta::add))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(ResourceCall::Access(id, deltas, true))
            };
            Ok(change(api, face, request, call).await)
        }
        (&Method::POST, "updateAccessBindings") => {
            let call = |raw: &[u8]| {
                let r: UpdateAccessBindingsRequest = parse(raw, false)?;
                if r.access_binding_deltas.is_empty() {
                    return Err(ApiError::invalid("accessBindingDeltas: give at least one change"));
                }
                let deltas =
                    r.access_binding_deltas.into_iter().map(super::access_delta).collect::<Result<Vec<_>, _>>()?;
                Ok(ResourceCall::Access(id, deltas, false))
            };
            Ok(change(api, face, request, call).await)
        }
        _ => Err(ApiError::new(
            Code::NotFound,
            "no such method (expected GET :listAccessBindings, POST :setAccessBindings or :updateAccessBindings)",
        )),
    }
}

async fn list_bindings<S: KeyStore, A: AdminAuth>(
    api: &AdminApi<S, A>,
    face: Face,
    id: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let caller = api.authenticate(&parts).await?;
    View::of(&parts)?;
    let _: PageQuery = query(&parts)?;
    let bindings = api.policy_bindings(&caller, face, id).await?;
    let access_policy_bindings = bindings
        .into_iter()
        .map(|b| AccessPolicyBindingBody {
            access_policy_template_id: b.access_policy_template_id,
            parameters: b.parameters,
        })
        .collect();
    Ok(answer(&ListAccessPolicyBindingsResponse { access_policy_bindings, next_page_token: String::new() }))
}

/// A change: authenticate, read the body, make `call` of it, answer the
/// operation.
async fn change<S: KeyStore, A: AdminAuth>(
    api: &AdminApi<S, A>,
    face: Face,
    request: Request,
    call: impl FnOnce(&[u8]) -> Result<ResourceCall, ApiError>,
) -> Response {
    let run = async {
        let (parts, body) = request.into_parts();
        let caller = api.authenticate(&parts).await?;
        View::of(&parts)?;
        let key = idempotency_key(&parts)?;
        let raw = axum::body::to_bytes(body, api.body_limit).await.map_err(|_| ApiError::too_large(api.body_limit))?;
        let print = || idempotency::fingerprint(parts.method.as_str(), parts.uri.path(), &raw);
        let done = api.change_resource(&caller, face, call(&raw)?, key, print).await?;
        let mut response = answer(&operation_body(&done.changed));
        if done.replayed {
            response.headers_mut().insert(idempotency::REPLAYED_HEADER, HeaderValue::from_static("true"));
        }
        Ok::<_, ApiError>(response)
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn operations<S: KeyStore, A: AdminAuth>(
    api: &AdminApi<S, A>,
    face: Face,
    id: &str,
    request: Request,
) -> Response {
    let run = async {
        let (parts, _) = request.into_parts();
        let caller = api.authenticate(&parts).await?;
        View::of(&parts)?;
        let (log, next_page_token) = api.resource_log(&caller, face, id, &query(&parts)?).await?;
        let operations: Vec<ResourceOperationBody> = log.iter().map(operation_body).collect();
        Ok::<_, ApiError>(answer(&json!({ "operations": operations, "nextPageToken": next_page_token })))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

async fn templates<S: KeyStore, A: AdminAuth>(State(api): Shared<S, A>, request: Request) -> Response {
    let run = async {
        let (parts, _) = request.into_parts();
        api.authenticate(&parts).await?;
        View::of(&parts)?;
        let access_policy_templates = api
            .manager
            .access_policy_templates()
            .iter()
            .map(|t| AccessPolicyTemplateBody {
                id: t.id.to_owned(),
                description: t.description.to_owned(),
                parameters: t.parameters.iter().map(|p| (*p).to_owned()).collect(),
            })
            .collect();
        Ok::<_, ApiError>(answer(&ListAccessPolicyTemplatesResponse { access_policy_templates }))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

// ----- rendering -----

/// A resource in the cloud's JSON.
fn resource_json(r: &Resource) -> Value {
    let value = match r {
        Resource::ServiceAccount(x) => serde_json::to_value(x),
        Resource::Folder(x) => serde_json::to_value(x),
        Resource::Cloud(x) => serde_json::to_value(x),
        Resource::Organization(x) => serde_json::to_value(x),
    };
    value.unwrap_or_default()
}

/// The cloud's `Operation` of a change, in JSON.
/// A change's operation in the cloud's JSON.
pub(in crate::admin) fn operation_body(c: &Changed) -> ResourceOperationBody {
    let metadata = match c.metadata() {
        Metadata::Id { type_url, field, id } => any(&type_url, json!({ field: id })),
        Metadata::Policy { type_url, resource_id, call } => {
            let fields = match call {
                PolicyCall::Bind(b) | PolicyCall::UpdateParameters(b) => json!({
                    "resourceId": resource_id,
                    "accessPolicyBinding": {
                        "accessPolicyTemplateId": b.access_policy_template_id,
                        "parameters": b.parameters,
                    },
                }),
                PolicyCall::Unbind(t) => json!({ "resourceId": resource_id, "accessPolicyTemplateId": t }),
            };
            any(&type_url, fields)
        }
    };
    let response = match c.answer() {
        Answer::Resource(r) => any(&c.face.type_url(), resource_json(r)),
        Answer::Empty(type_url) => any(&type_url, json!({})),
    };
    let at = c.op.created_at.to_string();
    ResourceOperationBody {
        id: c.op.id.as_str().to_owned(),
        description: c.description(),
        created_at: at.clone(),
        created_by: c.op.actor.as_str().to_owned(),
        modified_at: at,
        done: true,
        metadata,
        response,
    }
}
