//! The JSON bodies of the resource routes: service
//! accounts, folders, clouds and organizations in the cloud's shape
//! (camelCase, RFC 3339 times, labels as an object), their requests, and
//! the access policy bodies. Requests refuse unknown fields. The resource
//! bodies below document the answers; the answers themselves are the
//! library's [`Resource`](crate::resource::Resource) types, which
//! serialize in this shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A service account: the cloud's `yandex.cloud.iam.v1.ServiceAccount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ServiceAccountBody {
    /// Its id (the one its keys name).
    pub id: String,
    /// The folder holding it.
    pub folder_id: String,
    /// Creation time.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Its name, unique within its cloud.
    pub name: String,
    /// Free text (empty when none).
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The latest use of any of its keys; absent if never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub last_authenticated_at: Option<String>,
}

/// A folder: the cloud's `yandex.cloud.resourcemanager.v1.Folder`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FolderBody {
    /// Its id.
    pub id: String,
    /// The cloud holding it.
    pub cloud_id: String,
    /// Creation time.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Its name, unique within its cloud.
    pub name: String,
    /// Free text (empty when none).
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `ACTIVE` (every folder here is).
    #[schema(example = "ACTIVE")]
    pub status: String,
}

/// A cloud: the cloud's `yandex.cloud.resourcemanager.v1.Cloud`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CloudBody {
    /// Its id.
    pub id: String,
    /// The organization holding it.
    pub organization_id: String,
    /// Creation time.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Its name, unique within its organization.
    pub name: String,
    /// Free text (empty when none).
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// An organization: the cloud's
/// `yandex.cloud.organizationmanager.v1.Organization`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct OrganizationBody {
    /// Its id.
    pub id: String,
    /// Creation time.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Its name, unique among organizations.
    pub name: String,
    /// Its display title (empty when none).
    pub title: String,
    /// Free text (empty when none).
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A create: the resource's parent (the one field of its kind:
/// `folderId` for a service account, `cloudId` for a folder,
/// `organizationId` for a cloud, none for an organization), its name,
/// and optionally a description, labels and (organizations only) a title.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct CreateResourceRequest {
    /// The folder of a new service account.
    #[serde(default)]
    pub folder_id: Option<String>,
    /// The cloud of a new folder.
    #[serde(default)]
    pub cloud_id: Option<String>,
    /// The organization of a new cloud.
    #[serde(default)]
    pub organization_id: Option<String>,
    /// The name: `[a-z]([-a-z0-9]{0,61}[a-z0-9])?`, unique where the cloud
    /// makes it so (a service account's and a folder's in their cloud).
    #[schema(pattern = "^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", example = "my-robot")]
    pub name: String,
    /// Free text, at most 256 characters.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub description: Option<String>,
    /// At most 64 labels; keys 1 to 63 of `[-_./\@0-9a-z]` starting with a
    /// letter, values at most 63 of the same.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// The display title (organizations only).
    #[serde(default)]
    #[schema(max_length = 256)]
    pub title: Option<String>,
}

/// An update (`PATCH`). `updateMask` names the fields to change
/// (comma-separated, lowerCamel or snake_case: `name`, `description`,
/// `labels`, `title` for organizations); fields present but not named are
/// left untouched. Without a mask (or with an empty one) the mask is the
/// fields present. A named `description`, `labels` or `title` that is
/// absent is cleared; a named `name` must be given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct UpdateResourceRequest {
    /// The fields to change.
    #[serde(default)]
    #[schema(example = "name,description")]
    pub update_mask: Option<String>,
    /// The new name.
    #[serde(default)]
    #[schema(pattern = "^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")]
    pub name: Option<String>,
    /// The new description.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub description: Option<String>,
    /// The new labels (replacing all of them).
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// The new title (organizations only).
    #[serde(default)]
    #[schema(max_length = 256)]
    pub title: Option<String>,
}

/// An access policy bound on an organization, cloud or folder: the cloud's
/// `yandex.cloud.access.AccessPolicyBinding`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct AccessPolicyBindingBody {
    /// The template's id (see `GET /iam/v1/accessPolicyTemplates`).
    #[schema(example = "iam.denyServiceAccountApiKeysCreation", max_length = 64)]
    pub access_policy_template_id: String,
    /// The template's parameters.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

/// `POST …/{id}:bindAccessPolicy` and `PATCH
/// …/{id}:updateAccessPolicyBindingParameters`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct BindAccessPolicyRequest {
    /// The binding.
    pub access_policy_binding: AccessPolicyBindingBody,
}

/// `POST …/{id}:unbindAccessPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct UnbindAccessPolicyRequest {
    /// The template whose binding to remove.
    #[schema(max_length = 64)]
    pub access_policy_template_id: String,
}

/// `GET …/{id}:listAccessPolicyBindings`: every binding on the resource
/// (one page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ListAccessPolicyBindingsResponse {
    /// The bindings, by template id.
    pub access_policy_bindings: Vec<AccessPolicyBindingBody>,
    /// Always empty: every binding is on the first page.
    pub next_page_token: String,
}

/// One access policy template this server enforces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AccessPolicyTemplateBody {
    /// Its id, as bindings name it.
    pub id: String,
    /// What it does.
    pub description: String,
    /// The parameters it takes (all required).
    pub parameters: Vec<String>,
}

/// `GET /iam/v1/accessPolicyTemplates` (the project's own route).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ListAccessPolicyTemplatesResponse {
    /// Every template.
    pub access_policy_templates: Vec<AccessPolicyTemplateBody>,
}

/// An operation on a resource (every one is done when it answers):
/// `metadata` is a `google.protobuf.Any` naming the resource
/// (`CreateServiceAccountMetadata {serviceAccountId}`, …,
/// `BindAccessPolicyMetadata {resourceId, accessPolicyBinding}`), and
/// `response` the resource as the change left it, `google.protobuf.Empty`
/// after a delete, or the policy call's empty response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ResourceOperationBody {
    /// The log entry's id.
    pub id: String,
    /// What was done, in words.
    pub description: String,
    /// When.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Who (the actor the admin authentication named).
    pub created_by: String,
    /// Equal to `createdAt`: operations finish at once.
    #[schema(format = DateTime)]
    pub modified_at: String,
    /// Always `true`.
    pub done: bool,
    /// A `google.protobuf.Any` naming the resource.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// A `google.protobuf.Any`: the resource, or an empty message.
    #[schema(value_type = Object)]
    pub response: serde_json::Value,
}

/// `GET …/{id}/operations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ListResourceOperationsResponse {
    /// One page of the resource's log, newest first.
    pub operations: Vec<ResourceOperationBody>,
    /// Opaque token for the next page; empty on the last page.
    pub next_page_token: String,
}

/// `GET /iam/v1/serviceAccounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ListServiceAccountsResponse {
    /// One page, by name.
    pub service_accounts: Vec<ServiceAccountBody>,
    /// Opaque token for the next page; empty on the last page.
    pub next_page_token: String,
}

/// `GET /resource-manager/v1/folders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ListFoldersResponse {
    /// One page, by name.
    pub folders: Vec<FolderBody>,
    /// Opaque token for the next page; empty on the last page.
    pub next_page_token: String,
}

/// `GET /resource-manager/v1/clouds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ListCloudsResponse {
    /// One page, by name.
    pub clouds: Vec<CloudBody>,
    /// Opaque token for the next page; empty on the last page.
    pub next_page_token: String,
}

/// `GET /organization-manager/v1/organizations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ListOrganizationsResponse {
    /// One page, by name.
    pub organizations: Vec<OrganizationBody>,
    /// Opaque token for the next page; empty on the last page.
    pub next_page_token: String,
}

/// The subject of an access binding: `{id, type}` (`serviceAccount`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SubjectBody {
    /// The subject's id.
    pub id: String,
    /// Its type: `serviceAccount`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// An access binding: `{roleId, subject}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct AccessBindingBody {
    /// The role: `viewer`, `editor`, `admin`, `iam.serviceAccounts.user`,
    /// `iam.serviceAccounts.admin`.
    pub role_id: String,
    /// Who holds it.
    pub subject: SubjectBody,
}

/// `POST …/{id}:setAccessBindings`: the bindings that replace every one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct SetAccessBindingsRequest {
    /// The bindings (an empty list removes every binding).
    #[serde(default)]
    pub access_bindings: Vec<AccessBindingBody>,
}

/// One change of `POST …/{id}:updateAccessBindings`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct AccessBindingDeltaBody {
    /// `ADD` or `REMOVE`.
    pub action: String,
    /// The binding.
    pub access_binding: AccessBindingBody,
}

/// `POST …/{id}:updateAccessBindings`: changes applied in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct UpdateAccessBindingsRequest {
    /// The changes.
    pub access_binding_deltas: Vec<AccessBindingDeltaBody>,
}

/// `GET …/{id}:listAccessBindings`: every binding on the resource (one
/// page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ListAccessBindingsResponse {
    /// The bindings, by role and subject.
    pub access_bindings: Vec<AccessBindingBody>,
    /// Always empty: every binding is on the first page.
    pub next_page_token: String,
}
