//! `yandex.cloud.iam.v1.ServiceAccountService`,
//! `yandex.cloud.resourcemanager.v1.FolderService` and `CloudService`,
//! `yandex.cloud.organizationmanager.v1.OrganizationService`, over the
//! REST routes' steps: each method
//! authenticates, turns its message into the REST request (proto3: empty
//! is unset; update masks name snake_case paths) and makes the same call;
//! changes answer the cloud's `Operation`, done. The metadata
//! `idempotency-key` is refused, as the REST header is.

use std::collections::{BTreeMap, HashMap};

use tonic::{Request, Response, Status};

use super::op::Operation;
use super::pb::yandex::cloud::access;
use super::pb::yandex::cloud::iam::v1 as iam;
use super::pb::yandex::cloud::organizationmanager::v1 as org;
use super::pb::yandex::cloud::resourcemanager::v1 as rm;
use super::{Services, any, call, page_size, set, status, timestamp};
use crate::access_policy::AccessPolicyBinding;
use crate::admin::api::{PageQuery, idempotency_key};
use crate::admin::auth::{AdminAuth, AdminCaller};
use crate::admin::error::{ApiError, Code};
use crate::admin::idempotency::{REPLAYED_HEADER, fingerprint};
use crate::admin::resource_types::{AccessPolicyBindingBody, CreateResourceRequest, UpdateResourceRequest};
use crate::admin::resources::{
    Answer, CLOUDS, Changed, FOLDERS, Face, Metadata, ORGANIZATIONS, PolicyCall, PolicyRequest, ResourceCall,
    SERVICE_ACCOUNTS,
};
use crate::resource::{Labels, Resource};
use crate::store::KeyStore;

const SERVICE_ACCOUNT_SERVICE: &str = "/yandex.cloud.iam.v1.ServiceAccountService";
const FOLDER_SERVICE: &str = "/yandex.cloud.resourcemanager.v1.FolderService";
const CLOUD_SERVICE: &str = "/yandex.cloud.resourcemanager.v1.CloudService";
const ORGANIZATION_SERVICE: &str = "/yandex.cloud.organizationmanager.v1.OrganizationService";

// ----- messages -----

fn label_pairs(labels: &Labels) -> HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// proto3 labels: an empty map is unset.
fn label_map(labels: HashMap<String, String>) -> Option<BTreeMap<String, String>> {
    Some(labels.into_iter().collect::<BTreeMap<_, _>>()).filter(|m| !m.is_empty())
}

/// The cloud's message of a resource, and which it is.
enum Message {
    ServiceAccount(iam::ServiceAccount),
    Folder(rm::Folder),
    Cloud(rm::Cloud),
    Organization(org::Organization),
}

fn message(r: &Resource) -> Message {
    match r {
        Resource::ServiceAccount(x) => Message::ServiceAccount(iam::ServiceAccount {
            id: x.id.as_str().to_owned(),
            folder_id: x.folder_id.as_str().to_owned(),
            created_at: Some(timestamp(x.created_at)),
            name: x.name.as_str().to_owned(),
            description: x.description.as_str().to_owned(),
            labels: label_pairs(&x.labels),
            last_authenticated_at: x.last_authenticated_at.map(timestamp),
            status: iam::service_account::Status::Active.into(),
            expires_at: None,
        }),
        Resource::Folder(x) => Message::Folder(rm::Folder {
            id: x.id.as_str().to_owned(),
            cloud_id: x.cloud_id.as_str().to_owned(),
            created_at: Some(timestamp(x.created_at)),
            name: x.name.as_str().to_owned(),
            description: x.description.as_str().to_owned(),
            labels: label_pairs(&x.labels),
            status: rm::folder::Status::Active.into(),
        }),
        Resource::Cloud(x) => Message::Cloud(rm::Cloud {
            id: x.id.as_str().to_owned(),
            created_at: Some(timestamp(x.created_at)),
            name: x.name.as_str().to_owned(),
            description: x.description.as_str().to_owned(),
            organization_id: x.organization_id.as_str().to_owned(),
            labels: label_pairs(&x.labels),
        }),
        Resource::Organization(x) => Message::Organization(org::Organization {
            id: x.id.as_str().to_owned(),
            created_at: Some(timestamp(x.created_at)),
            name: x.name.as_str().to_owned(),
            description: x.description.as_str().to_owned(),
            title: x.title.as_str().to_owned(),
            labels: label_pairs(&x.labels),
        }),
    }
}

/// A resource packed as an `Any` of its face's type.
fn resource_any(face: Face, r: &Resource) -> prost_types::Any {
    let url = face.type_url();
    match message(r) {
        Message::ServiceAccount(m) => any(&url, &m),
        Message::Folder(m) => any(&url, &m),
        Message::Cloud(m) => any(&url, &m),
        Message::Organization(m) => any(&url, &m),
    }
}

/// The error of a resource that is not of the kind asked for (a broken
/// store).
fn wrong_kind() -> Status {
    status(ApiError::new(Code::Internal, "the store answered a resource of another kind"))
}

fn service_account(r: &Resource) -> Result<iam::ServiceAccount, Status> {
    if let Message::ServiceAccount(m) = message(r) { Ok(m) } else { Err(wrong_kind()) }
}

fn folder(r: &Resource) -> Result<rm::Folder, Status> {
    if let Message::Folder(m) = message(r) { Ok(m) } else { Err(wrong_kind()) }
}

fn cloud(r: &Resource) -> Result<rm::Cloud, Status> {
    if let Message::Cloud(m) = message(r) { Ok(m) } else { Err(wrong_kind()) }
}

fn organization(r: &Resource) -> Result<org::Organization, Status> {
    if let Message::Organization(m) = message(r) { Ok(m) } else { Err(wrong_kind()) }
}

fn binding_message(b: &AccessPolicyBinding) -> access::AccessPolicyBinding {
    access::AccessPolicyBinding {
        access_policy_template_id: b.access_policy_template_id.clone(),
        parameters: b.parameters.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

/// The cloud's `Operation` of a change. Every `{<kind>_id}` metadata type
/// has the id as field 1, so one encoding serves under each type URL.
pub(super) fn operation(c: &Changed) -> Operation {
    let metadata = match c.metadata() {
        Metadata::Id { type_url, id, .. } => {
            any(&type_url, &iam::UpdateServiceAccountMetadata { service_account_id: id.to_owned() })
        }
        Metadata::Policy { type_url, resource_id, call } => match call {
            PolicyCall::Bind(b) | PolicyCall::UpdateParameters(b) => any(
                &type_url,
                &access::BindAccessPolicyMetadata {
                    resource_id: resource_id.to_owned(),
                    access_policy_binding: Some(binding_message(b)),
                },
            ),
            PolicyCall::Unbind(t) => any(
                &type_url,
                &access::UnbindAccessPolicyMetadata {
                    resource_id: resource_id.to_owned(),
                    access_policy_template_id: t.clone(),
                },
            ),
        },
    };
    let response = match c.answer() {
        Answer::Resource(r) => resource_any(c.face, r),
        Answer::Empty(type_url) => any(&type_url, &()),
    };
    Operation {
        id: c.op.id.as_str().to_owned(),
        description: c.description(),
        created_at: Some(timestamp(c.op.created_at)),
        created_by: c.op.actor.as_str().to_owned(),
        modified_at: Some(timestamp(c.op.created_at)),
        done: true,
        metadata: Some(metadata),
        result: Some(super::op::operation::Result::Response(response)),
    }
}

/// A binding from its message (an unset one is refused).
fn binding_body(b: Option<access::AccessPolicyBinding>) -> Result<AccessPolicyBindingBody, Status> {
    let b = b.ok_or_else(|| status(ApiError::invalid("access_policy_binding is required")))?;
    Ok(AccessPolicyBindingBody {
        access_policy_template_id: b.access_policy_template_id,
        parameters: b.parameters.into_iter().collect(),
    })
}

/// Refuses a timestamp field this server does not implement.
fn unsupported(field: &str, t: Option<&prost_types::Timestamp>) -> Result<(), Status> {
    match t {
        Some(_) => Err(status(ApiError::invalid(format!("{field} is not supported here")))),
        None => Ok(()),
    }
}

/// An update's REST request.
fn update(
    mask: Option<prost_types::FieldMask>,
    name: String,
    description: String,
    labels: HashMap<String, String>,
) -> UpdateResourceRequest {
    UpdateResourceRequest {
        update_mask: mask.map(|m| m.paths.join(",")),
        name: set(name),
        description: set(description),
        labels: label_map(labels),
        title: None,
    }
}

// ----- the steps every method shares -----

impl<S: KeyStore, A: AdminAuth> Services<S, A> {
    /// The caller of a request to `service` and its message.
    async fn caller<M>(&self, request: Request<M>, service: &'static str) -> Result<(AdminCaller, M), Status> {
        let (parts, m) = call(request, service);
        let caller = self.api.authenticate(&parts).await.map_err(status)?;
        Ok((caller, m))
    }

    async fn fetch<M>(
        &self,
        request: Request<M>,
        service: &'static str,
        face: Face,
        id: impl FnOnce(&M) -> &str,
    ) -> Result<Resource, Status> {
        let (caller, m) = self.caller(request, service).await?;
        self.api.get_resource(&caller, face, id(&m)).await.map_err(status)
    }

    async fn page(
        &self,
        caller: &AdminCaller,
        face: Face,
        parent: &str,
        filter: &str,
        size: i64,
        token: String,
    ) -> Result<(Vec<Resource>, String), Status> {
        let q = PageQuery::new(page_size(size)?, token);
        self.api.list_resources(caller, face, parent, filter, &q).await.map_err(status)
    }

    /// A change: authenticated and made; with the metadata
    /// `idempotency-key`, claimed (the fingerprint of the message and its
    /// type) and, for a repeat, replayed (marked `idempotent-replayed`).
    async fn change<M: prost::Message>(
        &self,
        request: Request<M>,
        service: &'static str,
        face: Face,
        make: impl FnOnce(M) -> Result<ResourceCall, Status>,
    ) -> Result<Response<Operation>, Status> {
        let (parts, m) = call(request, service);
        let caller = self.api.authenticate(&parts).await.map_err(status)?;
        let key = idempotency_key(&parts).map_err(status)?;
        let body = m.encode_to_vec();
        let print = || fingerprint("POST", &format!("{service}/{}", std::any::type_name::<M>()), &body);
        let done = self.api.change_resource(&caller, face, make(m)?, key, print).await.map_err(status)?;
        let mut response = Response::new(operation(&done.changed));
        if done.replayed {
            response.metadata_mut().insert(REPLAYED_HEADER, tonic::metadata::MetadataValue::from_static("true"));
        }
        Ok(response)
    }

    /// One page of a resource's log.
    async fn log<M>(
        &self,
        request: Request<M>,
        service: &'static str,
        face: Face,
        page: impl FnOnce(M) -> (String, i64, String),
    ) -> Result<(Vec<Operation>, String), Status> {
        let (caller, m) = self.caller(request, service).await?;
        let (id, size, token) = page(m);
        let q = PageQuery::new(page_size(size)?, token);
        let (log, next) = self.api.resource_log(&caller, face, &id, &q).await.map_err(status)?;
        Ok((log.iter().map(operation).collect(), next))
    }

    async fn bindings(
        &self,
        request: Request<access::ListAccessPolicyBindingsRequest>,
        service: &'static str,
        face: Face,
    ) -> Result<Response<access::ListAccessPolicyBindingsResponse>, Status> {
        let (caller, m) = self.caller(request, service).await?;
        page_size(m.page_size)?;
        let bound = self.api.policy_bindings(&caller, face, &m.resource_id).await.map_err(status)?;
        let access_policy_bindings = bound.iter().map(binding_message).collect();
        Ok(Response::new(access::ListAccessPolicyBindingsResponse {
            access_policy_bindings,
            next_page_token: String::new(),
        }))
    }

    async fn bind(
        &self,
        request: Request<access::BindAccessPolicyRequest>,
        service: &'static str,
        face: Face,
    ) -> Result<Response<Operation>, Status> {
        self.change(request, service, face, |m| {
            Ok(ResourceCall::Policy(m.resource_id, PolicyRequest::Bind(binding_body(m.access_policy_binding)?)))
        })
        .await
    }

    async fn unbind(
        &self,
        request: Request<access::UnbindAccessPolicyRequest>,
        service: &'static str,
        face: Face,
    ) -> Result<Response<Operation>, Status> {
        self.change(request, service, face, |m| {
            Ok(ResourceCall::Policy(m.resource_id, PolicyRequest::Unbind(m.access_policy_template_id)))
        })
        .await
    }

    async fn update_parameters(
        &self,
        request: Request<access::UpdateAccessPolicyBindingParametersRequest>,
        service: &'static str,
        face: Face,
    ) -> Result<Response<Operation>, Status> {
        self.change(request, service, face, |m| {
            let body = binding_body(m.access_policy_binding)?;
            Ok(ResourceCall::Policy(m.resource_id, PolicyRequest::UpdateParameters(body)))
        })
        .await
    }
}

// ----- the services -----

#[tonic::async_trait]
impl<S: KeyStore, A: AdminAuth> iam::service_account_service_server::ServiceAccountService for Services<S, A> {
    async fn get(
        &self,
        request: Request<iam::GetServiceAccountRequest>,
    ) -> Result<Response<iam::ServiceAccount>, Status> {
        let r = self.fetch(request, SERVICE_ACCOUNT_SERVICE, SERVICE_ACCOUNTS, |m| &m.service_account_id).await?;
        Ok(Response::new(service_account(&r)?))
    }

    async fn list(
        &self,
        request: Request<iam::ListServiceAccountsRequest>,
    ) -> Result<Response<iam::ListServiceAccountsResponse>, Status> {
        let (caller, m) = self.caller(request, SERVICE_ACCOUNT_SERVICE).await?;
        let (items, next_page_token) =
            self.page(&caller, SERVICE_ACCOUNTS, &m.folder_id, &m.filter, m.page_size, m.page_token).await?;
        let service_accounts = items.iter().map(service_account).collect::<Result<_, _>>()?;
        Ok(Response::new(iam::ListServiceAccountsResponse { service_accounts, next_page_token }))
    }

    async fn create(&self, request: Request<iam::CreateServiceAccountRequest>) -> Result<Response<Operation>, Status> {
        self.change(request, SERVICE_ACCOUNT_SERVICE, SERVICE_ACCOUNTS, |m| {
            unsupported("expires_at", m.expires_at.as_ref())?;
            Ok(ResourceCall::Create(CreateResourceRequest {
                folder_id: Some(m.folder_id),
                name: m.name,
                description: set(m.description),
                labels: label_map(m.labels),
                ..CreateResourceRequest::default()
            }))
        })
        .await
    }

    async fn update(&self, request: Request<iam::UpdateServiceAccountRequest>) -> Result<Response<Operation>, Status> {
        self.change(request, SERVICE_ACCOUNT_SERVICE, SERVICE_ACCOUNTS, |m| {
            unsupported("expires_at", m.expires_at.as_ref())?;
            let req = update(m.update_mask, m.name, m.description, m.labels);
            Ok(ResourceCall::Update(m.service_account_id, req))
        })
        .await
    }

    async fn delete(&self, request: Request<iam::DeleteServiceAccountRequest>) -> Result<Response<Operation>, Status> {
        self.change(request, SERVICE_ACCOUNT_SERVICE, SERVICE_ACCOUNTS, |m| {
            Ok(ResourceCall::Delete(m.service_account_id))
        })
        .await
    }

    async fn list_operations(
        &self,
        request: Request<iam::ListServiceAccountOperationsRequest>,
    ) -> Result<Response<iam::ListServiceAccountOperationsResponse>, Status> {
        let (operations, next_page_token) = self
            .log(request, SERVICE_ACCOUNT_SERVICE, SERVICE_ACCOUNTS, |m| {
                (m.service_account_id, m.page_size, m.page_token)
            })
            .await?;
        Ok(Response::new(iam::ListServiceAccountOperationsResponse { operations, next_page_token }))
    }
}

#[tonic::async_trait]
impl<S: KeyStore, A: AdminAuth> rm::folder_service_server::FolderService for Services<S, A> {
    async fn get(&self, request: Request<rm::GetFolderRequest>) -> Result<Response<rm::Folder>, Status> {
        let r = self.fetch(request, FOLDER_SERVICE, FOLDERS, |m| &m.folder_id).await?;
        Ok(Response::new(folder(&r)?))
    }

    async fn list(
        &self,
        request: Request<rm::ListFoldersRequest>,
    ) -> Result<Response<rm::ListFoldersResponse>, Status> {
        let (caller, m) = self.caller(request, FOLDER_SERVICE).await?;
        let (items, next_page_token) =
            self.page(&caller, FOLDERS, &m.cloud_id, &m.filter, m.page_size, m.page_token).await?;
        let folders = items.iter().map(folder).collect::<Result<_, _>>()?;
        Ok(Response::new(rm::ListFoldersResponse { folders, next_page_token }))
    }

    async fn create(&self, request: Request<rm::CreateFolderRequest>) -> Result<Response<Operation>, Status> {
        self.change(request, FOLDER_SERVICE, FOLDERS, |m| {
            Ok(ResourceCall::Create(CreateResourceRequest {
                cloud_id: Some(m.cloud_id),
                name: m.name,
                description: set(m.description),
                labels: label_map(m.labels),
                ..CreateResourceRequest::default()
            }))
        })
        .await
    }

    async fn update(&self, request: Request<rm::UpdateFolderRequest>) -> Result<Response<Operation>, Status> {
        self.change(request, FOLDER_SERVICE, FOLDERS, |m| {
            Ok(ResourceCall::Update(m.folder_id, update(m.update_mask, m.name, m.description, m.labels)))
        })
        .await
    }

    async fn delete(&self, request: Request<rm::DeleteFolderRequest>) -> Result<Response<Operation>, Status> {
        self.change(request, FOLDER_SERVICE, FOLDERS, |m| {
            unsupported("delete_after", m.delete_after.as_ref())?;
            Ok(ResourceCall::Delete(m.folder_id))
        })
        .await
    }

    async fn list_operations(
        &self,
        request: Request<rm::ListFolderOperationsRequest>,
    ) -> Result<Response<rm::ListFolderOperationsResponse>, Status> {
        let (operations, next_page_token) =
            self.log(request, FOLDER_SERVICE, FOLDERS, |m| (m.folder_id, m.page_size, m.page_token)).await?;
        Ok(Response::new(rm::ListFolderOperationsResponse { operations, next_page_token }))
    }

    async fn list_access_policy_bindings(
        &self,
        request: Request<access::ListAccessPolicyBindingsRequest>,
    ) -> Result<Response<access::ListAccessPolicyBindingsResponse>, Status> {
        self.bindings(request, FOLDER_SERVICE, FOLDERS).await
    }

    async fn bind_access_policy(
        &self,
        request: Request<access::BindAccessPolicyRequest>,
    ) -> Result<Response<Operation>, Status> {
        self.bind(request, FOLDER_SERVICE, FOLDERS).await
    }

    async fn unbind_access_policy(
        &self,
        request: Request<access::UnbindAccessPolicyRequest>,
    ) -> Result<Response<Operation>, Status> {
        self.unbind(request, FOLDER_SERVICE, FOLDERS).await
    }

    async fn update_access_policy_binding_parameters(
        &self,
        request: Request<access::UpdateAccessPolicyBindingParametersRequest>,
    ) -> Result<Response<Operation>, Status> {
        self.update_parameters(request, FOLDER_SERVICE, FOLDERS).await
    }
}

#[tonic::async_trait]
impl<S: KeyStore, A: AdminAuth> rm::cloud_service_server::CloudService for Services<S, A> {
    async fn get(&self, request: Request<rm::GetCloudRequest>) -> Result<Response<rm::Cloud>, Status> {
        let r = self.fetch(request, CLOUD_SERVICE, CLOUDS, |m| &m.cloud_id).await?;
        Ok(Response::new(cloud(&r)?))
    }

    /// Without `organization_id`: the default organization's clouds.
    async fn list(&self, request: Request<rm::ListCloudsRequest>) -> Result<Response<rm::ListCloudsResponse>, Status> {
        let (caller, m) = self.caller(request, CLOUD_SERVICE).await?;
        let (items, next_page_token) =
            self.page(&caller, CLOUDS, &m.organization_id, &m.filter, m.page_size, m.page_token).await?;
        let clouds = items.iter().map(cloud).collect::<Result<_, _>>()?;
        Ok(Response::new(rm::ListCloudsResponse { clouds, next_page_token }))
    }

    async fn create(&self, request: Request<rm::CreateCloudRequest>) -> Result<Response<Operation>, Status> {
        self.change(request, CLOUD_SERVICE, CLOUDS, |m| {
            Ok(ResourceCall::Create(CreateResourceRequest {
                organization_id: Some(m.organization_id),
                name: m.name,
                description: set(m.description),
                labels: label_map(m.labels),
                ..CreateResourceRequest::default()
            }))
        })
        .await
    }

    async fn update(&self, request: Request<rm::UpdateCloudRequest>) -> Result<Response<Operation>, Status> {
        self.change(request, CLOUD_SERVICE, CLOUDS, |m| {
            Ok(ResourceCall::Update(m.cloud_id, update(m.update_mask, m.name, m.description, m.labels)))
        })
        .await
    }

    async fn delete(&self, request: Request<rm::DeleteCloudRequest>) -> Result<Response<Operation>, Status> {
        self.change(request, CLOUD_SERVICE, CLOUDS, |m| {
            unsupported("delete_after", m.delete_after.as_ref())?;
            Ok(ResourceCall::Delete(m.cloud_id))
        })
        .await
    }

    async fn list_operations(
        &self,
        request: Request<rm::ListCloudOperationsRequest>,
    ) -> Result<Response<rm::ListCloudOperationsResponse>, Status> {
        let (operations, next_page_token) =
            self.log(request, CLOUD_SERVICE, CLOUDS, |m| (m.cloud_id, m.page_size, m.page_token)).await?;
        Ok(Response::new(rm::ListCloudOperationsResponse { operations, next_page_token }))
    }

    async fn list_access_policy_bindings(
        &self,
        request: Request<access::ListAccessPolicyBindingsRequest>,
    ) -> Result<Response<access::ListAccessPolicyBindingsResponse>, Status> {
        self.bindings(request, CLOUD_SERVICE, CLOUDS).await
    }

    async fn bind_access_policy(
        &self,
        request: Request<access::BindAccessPolicyRequest>,
    ) -> Result<Response<Operation>, Status> {
        self.bind(request, CLOUD_SERVICE, CLOUDS).await
    }

    async fn unbind_access_policy(
        &self,
        request: Request<access::UnbindAccessPolicyRequest>,
    ) -> Result<Response<Operation>, Status> {
        self.unbind(request, CLOUD_SERVICE, CLOUDS).await
    }

    async fn update_access_policy_binding_parameters(
        &self,
        request: Request<access::UpdateAccessPolicyBindingParametersRequest>,
    ) -> Result<Response<Operation>, Status> {
        self.update_parameters(request, CLOUD_SERVICE, CLOUDS).await
    }
}

#[tonic::async_trait]
impl<S: KeyStore, A: AdminAuth> org::organization_service_server::OrganizationService for Services<S, A> {
    async fn get(&self, request: Request<org::GetOrganizationRequest>) -> Result<Response<org::Organization>, Status> {
        let r = self.fetch(request, ORGANIZATION_SERVICE, ORGANIZATIONS, |m| &m.organization_id).await?;
        Ok(Response::new(organization(&r)?))
    }

    async fn list(
        &self,
        request: Request<org::ListOrganizationsRequest>,
    ) -> Result<Response<org::ListOrganizationsResponse>, Status> {
        let (caller, m) = self.caller(request, ORGANIZATION_SERVICE).await?;
        let (items, next_page_token) =
            self.page(&caller, ORGANIZATIONS, "", &m.filter, m.page_size, m.page_token).await?;
        let organizations = items.iter().map(organization).collect::<Result<_, _>>()?;
        Ok(Response::new(org::ListOrganizationsResponse { organizations, next_page_token }))
    }

    async fn update(&self, request: Request<org::UpdateOrganizationRequest>) -> Result<Response<Operation>, Status> {
        self.change(request, ORGANIZATION_SERVICE, ORGANIZATIONS, |m| {
            let mut req = update(m.update_mask, m.name, m.description, m.labels);
            req.title = set(m.title);
            Ok(ResourceCall::Update(m.organization_id, req))
        })
        .await
    }

    async fn list_operations(
        &self,
        request: Request<org::ListOrganizationOperationsRequest>,
    ) -> Result<Response<org::ListOrganizationOperationsResponse>, Status> {
        let (operations, next_page_token) = self
            .log(request, ORGANIZATION_SERVICE, ORGANIZATIONS, |m| (m.organization_id, m.page_size, m.page_token))
            .await?;
        Ok(Response::new(org::ListOrganizationOperationsResponse { operations, next_page_token }))
    }

    async fn list_access_policy_bindings(
        &self,
        request: Request<access::ListAccessPolicyBindingsRequest>,
    ) -> Result<Response<access::ListAccessPolicyBindingsResponse>, Status> {
        self.bindings(request, ORGANIZATION_SERVICE, ORGANIZATIONS).await
    }

    async fn bind_access_policy(
        &self,
        request: Request<access::BindAccessPolicyRequest>,
    ) -> Result<Response<Operation>, Status> {
        self.bind(request, ORGANIZATION_SERVICE, ORGANIZATIONS).await
    }

    async fn unbind_access_policy(
        &self,
        request: Request<access::UnbindAccessPolicyRequest>,
    ) -> Result<Response<Operation>, Status> {
        self.unbind(request, ORGANIZATION_SERVICE, ORGANIZATIONS).await
    }

    async fn update_access_policy_binding_parameters(
        &self,
        request: Request<access::UpdateAccessPolicyBindingParametersRequest>,
    ) -> Result<Response<Operation>, Status> {
        self.update_parameters(request, ORGANIZATION_SERVICE, ORGANIZATIONS).await
    }
}
