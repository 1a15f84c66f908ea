//! Service accounts, folders, clouds and organizations over the API (REST
//! in [`rest`], gRPC in `super::grpc::resources`): each transport turns
//! its request into a [`ResourceCall`], [`AdminApi::change_resource`]
//! validates and authorizes it and makes one manager call (under the
//! caller as the resource log's actor), and the [`Changed`] it returns
//! renders as the cloud's `Operation` in either transport.
//!
//! Who may call: reading a service account needs a caller allowed to read
//! its keys ([`AdminAuth::allows`]); every other resource call (listing
//! or changing service accounts, anything on folders, clouds and
//! organizations, access policies) needs a caller limited to no service
//! accounts (an operator). `Idempotency-Key` is refused on these routes:
//! the resource log keeps no idempotency record.

pub(super) mod rest;

use crate::access_binding::{AccessBinding, AccessBindingDelta, Permission, Permissions, Role, Subject};
use crate::access_policy::AccessPolicyBinding;
use crate::manager::{KeyManager, NewResource};
use crate::record::Description;
use crate::resource::{
    Labels, Resource, ResourceCursor, ResourceId, ResourceKind, ResourceListing, ResourceName, ResourceOperation,
    ResourceOperationKind, ResourceOrder, ResourcePatch, ResourceRef,
};
use crate::store::{KeyStore, PageRequest};

use super::api::{AdminApi, Outcome, PageQuery, camel, detached, page_size};
use super::auth::{AdminAction, AdminAuth, AdminCaller};
use super::error::{ApiError, Code};
use super::resource_types::{
    AccessBindingBody, AccessBindingDeltaBody, AccessPolicyBindingBody, CreateResourceRequest, SubjectBody,
    UpdateResourceRequest,
};

/// The longest id a request may name (the cloud's limit).
const MAX_ID: usize = 50;

/// How one kind of resource appears on the API: its message, package,
/// words and JSON field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Face {
    /// The kind.
    pub(super) kind: ResourceKind,
    /// The cloud's message name (`ServiceAccount`).
    pub(super) message: &'static str,
    /// The cloud's package of the message and its metadata.
    pub(super) package: &'static str,
    /// The kind in words (`service account`).
    pub(super) noun: &'static str,
    /// The id's field in requests and metadata (`serviceAccountId`).
    pub(super) id_field: &'static str,
    /// The parent's field in a create and a listing (`folderId`).
    pub(super) parent_field: Option<&'static str>,
    /// The listing's field (`serviceAccounts`).
    pub(super) list_field: &'static str,
    /// Whether access policies bind on it.
    pub(super) policies: bool,
    /// The page-token tag of its listing.
    tag: u8,
}

/// Service accounts (`yandex.cloud.iam.v1`).
pub(super) const SERVICE_ACCOUNTS: Face = Face {
    kind: ResourceKind::ServiceAccount,
    message: "ServiceAccount",
    package: "yandex.cloud.iam.v1",
    noun: "service account",
    id_field: "serviceAccountId",
    parent_field: Some("folderId"),
    list_field: "serviceAccounts",
    policies: false,
    tag: b'S',
};

/// Folders (`yandex.cloud.resourcemanager.v1`).
pub(super) const FOLDERS: Face = Face {
    kind: ResourceKind::Folder,
    message: "Folder",
    package: "yandex.cloud.resourcemanager.v1",
    noun: "folder",
    id_field: "folderId",
    parent_field: Some("cloudId"),
    list_field: "folders",
    policies: true,
    tag: b'F',
};

/// Clouds (`yandex.cloud.resourcemanager.v1`).
pub(super) const CLOUDS: Face = Face {
    kind: ResourceKind::Cloud,
    message: "Cloud",
    package: "yandex.cloud.resourcemanager.v1",
    noun: "cloud",
    id_field: "cloudId",
    parent_field: Some("organizationId"),
    list_field: "clouds",
    policies: true,
    tag: b'C',
};

/// Organizations (`yandex.cloud.organizationmanager.v1`).
pub(super) const ORGANIZATIONS: Face = Face {
    kind: ResourceKind::Organization,
    message: "Organization",
    package: "yandex.cloud.organizationmanager.v1",
    noun: "organization",
    id_field: "organizationId",
    parent_field: None,
    list_field: "organizations",
    policies: true,
    tag: b'O',
};

/// The page-token tag of every resource's operations log.
const OPERATIONS: u8 = b'p';

impl Face {
    /// The face of `kind`.
    pub(super) fn of(kind: ResourceKind) -> Self {
        match kind {
            ResourceKind::Organization => ORGANIZATIONS,
            ResourceKind::Cloud => CLOUDS,
            ResourceKind::Folder => FOLDERS,
            ResourceKind::ServiceAccount => SERVICE_ACCOUNTS,
        }
    }

    /// The type URL of the resource's message.
    pub(super) fn type_url(self) -> String {
        format!("type.googleapis.com/{}.{}", self.package, self.message)
    }

    /// The type URL of the metadata of a `verb` (`Create`, `Update`,
    /// `Delete`): the cloud's, or the project's `apikeys.v1` where the
    /// cloud has none (an organization's create and delete).
    pub(super) fn metadata_type(self, verb: &str) -> String {
        let package =
            if self.kind == ResourceKind::Organization && verb != "Update" { "apikeys.v1" } else { self.package };
        format!("type.googleapis.com/{package}.{verb}{}Metadata", self.message)
    }

    /// The resource `raw` names.
    ///
    /// # Errors
    /// Code 3 for an id that is not one of this kind.
    pub(super) fn reference(self, raw: &str) -> Result<ResourceRef, ApiError> {
        parse_ref(self.kind, self.id_field, raw)
    }
}

/// The resource of `kind` that `raw` (a request's `field`) names.
fn parse_ref(kind: ResourceKind, field: &str, raw: &str) -> Result<ResourceRef, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::invalid(format!("{field} is required")));
    }
    if raw.len() > MAX_ID {
        return Err(ApiError::invalid(format!("{field}: at most {MAX_ID} characters")));
    }
    ResourceRef::parse(kind, raw).map_err(|e| ApiError::invalid(format!("{field}: {e}")))
}

/// The parent id of `kind` a request's `field` names.
fn parent_id(kind: ResourceKind, field: &str, raw: &str) -> Result<ResourceId, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::invalid(format!("{field} is required")));
    }
    ResourceId::new(raw).map_err(|e| ApiError::invalid(format!("{field}: {e} (no {kind} has this id)")))
}

/// An access policy change on an organization, cloud or folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PolicyCall {
    /// Binds a policy (replacing the parameters of one of the same template).
    Bind(AccessPolicyBinding),
    /// Unbinds the policy of a template.
    Unbind(String),
    /// Changes the parameters of a bound policy.
    UpdateParameters(AccessPolicyBinding),
}

impl PolicyCall {
    /// The cloud's name of the call (`BindAccessPolicy`, …).
    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::Bind(_) => "BindAccessPolicy",
            Self::Unbind(_) => "UnbindAccessPolicy",
            Self::UpdateParameters(_) => "UpdateAccessPolicyBindingParameters",
        }
    }
}

/// A resource change as a transport asked for it.
#[derive(Debug, Clone)]
pub(super) enum ResourceCall {
    /// Create.
    Create(CreateResourceRequest),
    /// Update the resource of the id.
    Update(String, UpdateResourceRequest),
    /// Delete the resource of the id.
    Delete(String),
    /// Bind, unbind or re-parameterize a policy on the resource of the id.
    Policy(String, PolicyRequest),
    /// Set (`true`: replace) or update the access bindings on the resource
    /// of the id.
    Access(String, Vec<AccessBindingDelta>, bool),
}

/// An access policy call as a transport asked for it.
#[derive(Debug, Clone)]
pub(super) enum PolicyRequest {
    /// `bindAccessPolicy`.
    Bind(AccessPolicyBindingBody),
    /// `unbindAccessPolicy` of a template id.
    Unbind(String),
    /// `updateAccessPolicyBindingParameters`.
    UpdateParameters(AccessPolicyBindingBody),
}

/// A change, validated, for the manager.
enum Prepared {
    Create(NewResource),
    Update(ResourceRef, ResourcePatch),
    Delete(ResourceRef),
    Policy(ResourceRef, PolicyCall),
    Access(ResourceRef, Vec<AccessBindingDelta>, bool),
}

/// What a change was, for its operation's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change {
    /// A create, update or delete (`Create`, `Update`, `Delete`).
    Resource(ResourceOperationKind),
    /// An access policy call.
    Policy(PolicyCall),
    /// `SetAccessBindings` (`true`) or `UpdateAccessBindings`.
    Access(bool),
}

/// A change made (or a listed one): the face of its resource, what it
/// was and its log entry.
#[derive(Debug, Clone)]
pub(super) struct Changed {
    /// The resource's face.
    pub(super) face: Face,
    /// What was done.
    pub(super) change: Change,
    /// The log entry.
    pub(super) op: ResourceOperation,
}

/// The `metadata` of an operation, for either transport.
pub(super) enum Metadata<'a> {
    /// `{<kind>_id}` under a type URL.
    Id {
        /// The type URL.
        type_url: String,
        /// The id's JSON field (`serviceAccountId`).
        field: &'static str,
        /// The resource's id.
        id: &'a str,
    },
    /// A policy call's: `{resource_id, access_policy_binding}` or
    /// `{resource_id, access_policy_template_id}`.
    Policy {
        /// The type URL.
        type_url: String,
        /// The resource's id.
        resource_id: &'a str,
        /// The call.
        call: &'a PolicyCall,
    },
}

/// The `response` of an operation, for either transport.
pub(super) enum Answer<'a> {
    /// The resource as the change left it.
    Resource(&'a Resource),
    /// An empty message of the type URL.
    Empty(String),
}

/// `type.googleapis.com/google.protobuf.Empty`.
const EMPTY: &str = "type.googleapis.com/google.protobuf.Empty";

impl Changed {
    /// A listed log entry of `face`.
    pub(super) fn listed(face: Face, op: ResourceOperation) -> Self {
        Self { face, change: Change::Resource(op.kind), op }
    }

    fn verb(&self) -> &'static str {
        match &self.change {
            Change::Resource(ResourceOperationKind::Create) => "Create",
            Change::Resource(ResourceOperationKind::Delete) => "Delete",
            _ => "Update",
        }
    }

    /// What was done, in words.
    pub(super) fn description(&self) -> String {
        match &self.change {
            Change::Policy(call) => format!("{} on {}", call.name(), self.face.noun),
            Change::Access(replace) => format!("{} on {}", access_call_name(*replace), self.face.noun),
            Change::Resource(_) => format!("{} {}", self.verb(), self.face.noun),
        }
    }

    /// The operation's metadata.
    pub(super) fn metadata(&self) -> Metadata<'_> {
        let id = self.op.resource.id();
        match &self.change {
            Change::Policy(call) => Metadata::Policy {
                type_url: format!("type.googleapis.com/yandex.cloud.access.{}Metadata", call.name()),
                resource_id: id,
                call,
            },
            Change::Resource(_) => {
                Metadata::Id { type_url: self.face.metadata_type(self.verb()), field: self.face.id_field, id }
            }
            Change::Access(replace) => Metadata::Id {
                type_url: format!("type.googleapis.com/yandex.cloud.access.{}Metadata", access_call_name(*replace)),
                field: "resourceId",
                id,
            },
        }
    }

    /// The operation's response.
    pub(super) fn answer(&self) -> Answer<'_> {
        match (&self.change, &self.op.response) {
            (Change::Policy(call), _) => {
                Answer::Empty(format!("type.googleapis.com/yandex.cloud.access.{}Response", call.name()))
            }
            (Change::Access(replace), _) => {
                Answer::Empty(format!("type.googleapis.com/yandex.cloud.access.{}Response", access_call_name(*replace)))
            }
            (Change::Resource(ResourceOperationKind::Delete), _) | (_, None) => Answer::Empty(EMPTY.to_owned()),
            (_, Some(resource)) => Answer::Resource(resource),
        }
    }
}

/// The cloud's name of an access bindings call.
fn access_call_name(replace: bool) -> &'static str {
    if replace { "SetAccessBindings" } else { "UpdateAccessBindings" }
}

// ----- validation -----

fn description(field: &str, text: Option<&str>) -> Result<Description, ApiError> {
    Description::new(text.unwrap_or_default()).map_err(|e| ApiError::invalid(format!("{field}: {e}")))
}

fn name(text: &str) -> Result<ResourceName, ApiError> {
    ResourceName::new(text).map_err(|e| ApiError::invalid(format!("name: {e}")))
}

fn labels(map: Option<&std::collections::BTreeMap<String, String>>) -> Result<Labels, ApiError> {
    let Some(map) = map else { return Ok(Labels::new()) };
    Labels::from_pairs(map.iter()).map_err(|e| ApiError::invalid(format!("labels: {e}")))
}

/// Refuses a title (`given`) on anything but an organization.
fn check_title(face: Face, given: bool) -> Result<(), ApiError> {
    if given && face.kind != ResourceKind::Organization {
        return Err(ApiError::invalid(format!("title: a {} has no title", face.noun)));
    }
    Ok(())
}

/// The manager's create of a `face` resource.
fn new_resource(face: Face, req: &CreateResourceRequest) -> Result<NewResource, ApiError> {
    let given = [("folderId", &req.folder_id), ("cloudId", &req.cloud_id), ("organizationId", &req.organization_id)];
    if let Some((field, _)) = given.iter().find(|(f, v)| v.is_some() && Some(*f) != face.parent_field) {
        return Err(ApiError::invalid(format!("{field}: a {} is not created in one", face.noun)));
    }
    check_title(face, req.title.is_some())?;
    let parent = |field: &str, kind: ResourceKind| {
        let raw = given.iter().find(|(f, _)| *f == field).and_then(|(_, v)| v.as_deref()).unwrap_or_default();
        parent_id(kind, field, raw)
    };
    let name = name(&req.name)?;
    let new = match (face.kind, face.parent_field) {
        (ResourceKind::ServiceAccount, Some(f)) => NewResource::service_account(parent(f, ResourceKind::Folder)?, name),
        (ResourceKind::Folder, Some(f)) => NewResource::folder(parent(f, ResourceKind::Cloud)?, name),
        (ResourceKind::Cloud, Some(f)) => NewResource::cloud(parent(f, ResourceKind::Organization)?, name),
        _ => NewResource::organization(name).title(description("title", req.title.as_deref())?),
    };
    Ok(new.description(description("description", req.description.as_deref())?).labels(labels(req.labels.as_ref())?))
}

/// The fields an update's mask may name.
const UPDATE_FIELDS: [&str; 4] = ["name", "description", "labels", "title"];

/// The fields an update changes: the mask's, or without one the fields
/// present.
fn update_fields(req: &UpdateResourceRequest) -> Result<Vec<&'static str>, ApiError> {
    let Some(mask) = req.update_mask.as_deref().map(str::trim).filter(|m| !m.is_empty()) else {
        let present = [req.name.is_some(), req.description.is_some(), req.labels.is_some(), req.title.is_some()];
        return Ok(UPDATE_FIELDS.into_iter().zip(present).filter(|(_, p)| *p).map(|(f, _)| f).collect());
    };
    mask.split(',')
        .map(|f| {
            let field = camel(f.trim());
            UPDATE_FIELDS.into_iter().find(|known| *known == field).ok_or_else(|| {
                ApiError::invalid(format!(
                    "updateMask names an unknown field {:?} (known: {})",
                    f.trim().chars().take(64).collect::<String>(),
                    UPDATE_FIELDS.join(", ")
                ))
            })
        })
        .collect()
}

/// The manager's patch of a `face` resource.
fn patch(face: Face, req: &UpdateResourceRequest) -> Result<ResourcePatch, ApiError> {
    let fields = update_fields(req)?;
    let mut patch = ResourcePatch::new();
    for field in fields {
        patch = match field {
            "name" => {
                let given =
                    req.name.as_deref().ok_or_else(|| ApiError::invalid("name: the mask names it, so give it"))?;
                patch.name(name(given)?)
            }
            "description" => patch.description(description("description", req.description.as_deref())?),
            "labels" => patch.labels(labels(req.labels.as_ref())?),
            _ => {
                check_title(face, true)?;
                patch.title(description("title", req.title.as_deref())?)
            }
        };
    }
    if patch == ResourcePatch::new() {
        return Err(ApiError::invalid("the update changes nothing: name a field in updateMask or give one"));
    }
    Ok(patch)
}

/// A binding from its JSON, checked against its template.
fn binding(body: AccessPolicyBindingBody) -> Result<AccessPolicyBinding, ApiError> {
    if body.access_policy_template_id.is_empty() {
        return Err(ApiError::invalid("accessPolicyBinding.accessPolicyTemplateId is required"));
    }
    let mut b = AccessPolicyBinding::new(body.access_policy_template_id);
    b.parameters = body.parameters;
    b.rule().map_err(|e| ApiError::invalid(format!("accessPolicyBinding: {e}")))?;
    Ok(b)
}

/// A policy call from its request.
fn policy_call(face: Face, request: PolicyRequest) -> Result<PolicyCall, ApiError> {
    if !face.policies {
        return Err(ApiError::invalid(format!("access policies do not bind on a {}", face.noun)));
    }
    Ok(match request {
        PolicyRequest::Bind(b) => PolicyCall::Bind(binding(b)?),
        PolicyRequest::UpdateParameters(b) => PolicyCall::UpdateParameters(binding(b)?),
        PolicyRequest::Unbind(t) if t.is_empty() => {
            return Err(ApiError::invalid("accessPolicyTemplateId is required"));
        }
        PolicyRequest::Unbind(t) => PolicyCall::Unbind(t.chars().take(64).collect()),
    })
}

/// A binding from its JSON.
pub(super) fn access_binding(body: AccessBindingBody) -> Result<AccessBinding, ApiError> {
    let bad = |e: crate::access_binding::AccessBindingError| ApiError::invalid(format!("accessBinding: {e}"));
    let role = Role::parse(&body.role_id).map_err(bad)?;
    let subject = Subject::parse(&body.subject.kind, &body.subject.id).map_err(bad)?;
    Ok(AccessBinding::new(role, subject))
}

/// A binding's JSON.
pub(super) fn access_binding_body(b: &AccessBinding) -> AccessBindingBody {
    AccessBindingBody {
        role_id: b.role.id().to_owned(),
        subject: SubjectBody { id: b.subject.id().to_owned(), kind: b.subject.kind().to_owned() },
    }
}

/// A delta from its JSON (`ADD` or `REMOVE`).
pub(super) fn access_delta(body: AccessBindingDeltaBody) -> Result<AccessBindingDelta, ApiError> {
    let binding = access_binding(body.access_binding)?;
    match body.action.as_str() {
        "ADD" => Ok(AccessBindingDelta::add(binding)),
        "REMOVE" => Ok(AccessBindingDelta::remove(binding)),
        _ => Err(ApiError::invalid("accessBindingDeltas: action must be ADD or REMOVE")),
    }
}

/// The permission reading a resource of `kind` needs.
fn read_permission(kind: ResourceKind) -> Permission {
    if kind == ResourceKind::ServiceAccount { Permission::SeeServiceAccounts } else { Permission::Read }
}

/// The parent a new resource of `kind` names.
fn new_parent(kind: ResourceKind, parent: ResourceId) -> ResourceRef {
    match kind {
        ResourceKind::Cloud => ResourceRef::Organization(parent),
        ResourceKind::Folder => ResourceRef::Cloud(parent),
        _ => ResourceRef::Folder(parent),
    }
}

/// A page token's position: `name/id` of the last resource seen.
fn cursor_text(c: &ResourceCursor) -> String {
    format!("{}/{}", c.name, c.id)
}

fn cursor_of(text: &str) -> Result<ResourceCursor, ApiError> {
    let (name, id) = text.split_once('/').ok_or_else(|| ApiError::invalid("invalid pageToken"))?;
    Ok(ResourceCursor { name: name.to_owned(), id: id.to_owned() })
}

/// The name a listing's `filter` asks for: `name="…"` (the one filter
/// supported); empty: none.
pub(super) fn filter_name(filter: &str) -> Result<Option<ResourceName>, ApiError> {
    let filter = filter.trim();
    if filter.is_empty() {
        return Ok(None);
    }
    let bad = || ApiError::invalid("filter: only name=\"<name>\" is supported");
    let value = filter.strip_prefix("name").map(str::trim_start).and_then(|f| f.strip_prefix('=')).ok_or_else(bad)?;
    let value = value.trim();
    let quoted = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .ok_or_else(bad)?;
    name(quoted).map(Some)
}

// ----- the API's resource calls -----

impl<S: KeyStore, A: AdminAuth> AdminApi<S, A> {
    /// Refuses a caller limited to some service accounts by a list (not by
    /// roles).
    fn operator(&self, caller: &AdminCaller) -> Result<(), ApiError> {
        if !caller.is_unlimited() && caller.as_subject().is_none() {
            return Err(ApiError::new(
                Code::PermissionDenied,
                "managing resources and access policies needs an operator's credentials (not limited to service \
                 accounts)",
            ));
        }
        Ok(())
    }

    /// Whether `caller` may read `target`: an operator any resource, a
    /// subject what its roles show, a caller limited by a list the service
    /// accounts whose keys it may read.
    async fn may_read(&self, caller: &AdminCaller, target: &ResourceRef) -> Result<bool, ApiError> {
        if caller.as_subject().is_some() {
            return self.sees(caller, read_permission(target.kind()), target).await;
        }
        Ok(match target {
            ResourceRef::ServiceAccount(sa) => self.auth.allows(caller, AdminAction::Get, sa),
            _ => caller.is_unlimited(),
        })
    }

    /// Refuses `caller` a prepared change it may not make (a subject
    /// binding roles also needs every permission they grant there).
    async fn authorize_change(&self, caller: &AdminCaller, prepared: &Prepared) -> Result<(), ApiError> {
        if caller.as_subject().is_none() {
            return Ok(());
        }
        let manage = |kind| {
            if kind == ResourceKind::ServiceAccount {
                Permission::ManageServiceAccounts
            } else {
                Permission::ManageResources
            }
        };
        match prepared {
            Prepared::Create(new) => {
                let Some(parent) = new.parent.map(|p| new_parent(new.kind, p)) else {
                    return Err(ApiError::new(Code::PermissionDenied, "creating an organization needs an operator"));
                };
                self.require(caller, manage(new.kind), &parent).await
            }
            Prepared::Update(target, _) | Prepared::Delete(target) => {
                self.require(caller, manage(target.kind()), target).await
            }
            Prepared::Policy(target, _) => self.require(caller, Permission::ManageAccess, target).await,
            Prepared::Access(target, deltas, _) => {
                self.require(caller, Permission::ManageAccess, target).await?;
                let held = self.held(caller, target).await?;
                for d in deltas {
                    let role = d.binding.role;
                    if !held.covers(role.permissions_on(target.kind())) {
                        return Err(ApiError::new(
                            Code::PermissionDenied,
                            format!(
                                "binding role {role} needs every permission it grants, which the caller lacks on {target}"
                            ),
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// What a subject caller holds on `target` (which it may see).
    async fn held(&self, caller: &AdminCaller, target: &ResourceRef) -> Result<Permissions, ApiError> {
        let Some(subject) = caller.as_subject() else { return Ok(Permissions::NONE) };
        Ok(self.access.permissions(&self.manager, subject, target).await?)
    }

    /// The resource log entry `id`, if there is one and `caller` may read
    /// its resource.
    ///
    /// # Errors
    /// A store failure.
    pub(super) async fn resource_operation(
        &self,
        caller: &AdminCaller,
        id: &crate::OperationId,
    ) -> Result<Option<Changed>, ApiError> {
        let found = self.manager.resource_operation(id).await?;
        let found = match found {
            Some(op) if self.may_read(caller, &op.resource).await? => Some(op),
            _ => None,
        };
        Ok(found.map(|op| Changed::listed(Face::of(op.resource.kind()), op)))
    }

    /// The resource `raw` names, if `caller` may read it (one it may not is
    /// "not found").
    pub(super) async fn get_resource(&self, caller: &AdminCaller, face: Face, raw: &str) -> Result<Resource, ApiError> {
        let target = face.reference(raw)?;
        if !self.may_read(caller, &target).await? {
            return Err(ApiError::from(crate::ManageError::Resource(target.not_found())));
        }
        Ok(self.manager.get_resource(&target).await?)
    }

    /// One page of the `face` resources in `parent` (by name), optionally
    /// only the one named by `filter`, and the next page's token.
    pub(super) async fn list_resources(
        &self,
        caller: &AdminCaller,
        face: Face,
        parent: &str,
        filter: &str,
        q: &PageQuery,
    ) -> Result<(Vec<Resource>, String), ApiError> {
        self.operator(caller)?;
        let listing = self.listing(caller, face, parent).await?;
        let mut items = if let Some(name) = filter_name(filter)? {
            (self.manager.find_resource(&listing, &name).await?.into_iter().collect(), String::new())
        } else {
            let after = self.open_token(face.tag, q.page_token.as_deref())?.as_deref().map(cursor_of).transpose()?;
            let page = PageRequest::starting(page_size(q.page_size)?, after);
            let page = self.manager.list_resources(&listing, ResourceOrder::Name, page).await?;
            let next = self.tokens.seal(face.tag, page.next.as_ref().map(cursor_text).as_deref());
            (page.items, next)
        };
        // Organizations have no holder to judge: each is shown if seen.
        if caller.as_subject().is_some() && listing.parent().is_none() {
            let mut seen = Vec::with_capacity(items.0.len());
            for r in items.0 {
                if self.may_read(caller, &r.reference()).await? {
                    seen.push(r);
                }
            }
            items.0 = seen;
        }
        Ok(items)
    }

    /// The listing of `face` in `parent` (which must exist); clouds
    /// without an organization: the default organization's.
    async fn listing(&self, caller: &AdminCaller, face: Face, parent: &str) -> Result<ResourceListing, ApiError> {
        let field = face.parent_field.unwrap_or("parent");
        let listing = match face.kind {
            ResourceKind::Organization => return Ok(ResourceListing::Organizations),
            ResourceKind::Cloud if parent.is_empty() => ResourceListing::Clouds(ResourceId::default_organization()),
            ResourceKind::Cloud => ResourceListing::Clouds(parent_id(ResourceKind::Organization, field, parent)?),
            ResourceKind::Folder => ResourceListing::Folders(parent_id(ResourceKind::Cloud, field, parent)?),
            _ => ResourceListing::ServiceAccounts(parent_id(ResourceKind::Folder, field, parent)?),
        };
        if let Some(holder) = listing.parent() {
            self.manager.get_resource(&holder).await?;
            self.require(caller, read_permission(face.kind), &holder).await?;
        }
        Ok(listing)
    }

    /// One page of the log of the resource `raw` names, newest first, and
    /// the next page's token.
    pub(super) async fn resource_log(
        &self,
        caller: &AdminCaller,
        face: Face,
        raw: &str,
        q: &PageQuery,
    ) -> Result<(Vec<Changed>, String), ApiError> {
        let target = face.reference(raw)?;
        if !self.may_read(caller, &target).await? {
            return Err(ApiError::from(crate::ManageError::Resource(target.not_found())));
        }
        let after = self
            .open_token(OPERATIONS, q.page_token.as_deref())?
            .map(|n| {
                n.parse::<u64>().map(crate::OperationCursor::new).map_err(|_| ApiError::invalid("invalid pageToken"))
            })
            .transpose()?;
        let page =
            self.manager.resource_operations(&target, PageRequest::starting(page_size(q.page_size)?, after)).await?;
        if page.items.is_empty() && after.is_none() {
            // No log at all: the resource never existed here.
            self.manager.get_resource(&target).await?;
        }
        let next = self.tokens.seal(OPERATIONS, page.next.map(|c| c.get().to_string()).as_deref());
        Ok((page.items.into_iter().map(|op| Changed::listed(face, op)).collect(), next))
    }

    /// The access policies bound on the resource `raw` names.
    pub(super) async fn policy_bindings(
        &self,
        caller: &AdminCaller,
        face: Face,
        raw: &str,
    ) -> Result<Vec<AccessPolicyBinding>, ApiError> {
        self.operator(caller)?;
        if !face.policies {
            return Err(ApiError::invalid(format!("access policies do not bind on a {}", face.noun)));
        }
        let target = face.reference(raw)?;
        self.require(caller, Permission::ReadAccess, &target).await?;
        Ok(self.manager.access_policy_bindings(&target).await?)
    }

    /// The access bindings on the resource `raw` names.
    pub(super) async fn access_bindings(
        &self,
        caller: &AdminCaller,
        face: Face,
        raw: &str,
    ) -> Result<Vec<AccessBinding>, ApiError> {
        self.operator(caller)?;
        let target = face.reference(raw)?;
        self.require(caller, Permission::ReadAccess, &target).await?;
        Ok(self.manager.access_bindings(&target).await?)
    }

    /// Validates, authorizes and makes a change by `caller` (logged as its
    /// actor), in a task of its own so it ends whatever the client does.
    /// With an `Idempotency-Key` (`key`, the request's `fingerprint`), the
    /// store records the claim with the change; a repeat of a change that
    /// landed is answered with its logged operation, marked replayed.
    pub(super) async fn change_resource(
        &self,
        caller: &AdminCaller,
        face: Face,
        call: ResourceCall,
        key: Option<uuid::Uuid>,
        fingerprint: impl FnOnce() -> [u8; 32],
    ) -> Result<ResourceAnswer, ApiError> {
        self.operator(caller)?;
        let claim = match self.claim(caller, key, fingerprint).await {
            Ok(claim) => claim,
            Err(recorded) => return answer_of(recorded),
        };
        let prepared = match prepare(face, call) {
            Ok(prepared) => prepared,
            Err(e) => return answer_of(self.failed(claim.as_ref(), e).await),
        };
        if let Err(e) = self.authorize_change(caller, &prepared).await {
            return answer_of(self.failed(claim.as_ref(), e).await);
        }
        let mut manager = self.manager.with_actor(caller.actor().clone());
        if let Some(c) = &claim {
            manager = manager.with_idempotency(c.clone());
        }
        let outcome = detached(apply(manager, face, prepared)).await;
        self.access.invalidate();
        match outcome {
            Ok(changed) => Ok(ResourceAnswer { changed, replayed: false }),
            Err(e) => answer_of(self.failed(claim.as_ref(), e).await),
        }
    }
}

/// What a resource change answers: the change made, or (`replayed`) the
/// logged one of the first request with the same `Idempotency-Key`.
pub(super) struct ResourceAnswer {
    /// The change.
    pub(super) changed: Changed,
    /// Whether it is a replay.
    pub(super) replayed: bool,
}

/// The answer of a change's outcome.
fn answer_of(outcome: Outcome<Changed>) -> Result<ResourceAnswer, ApiError> {
    match outcome {
        Outcome::Ran(ran) => ran.map(|changed| ResourceAnswer { changed, replayed: false }),
        Outcome::Refused(e) => Err(e),
        Outcome::ReplayedResource(op) => {
            Ok(ResourceAnswer { changed: Changed::listed(Face::of(op.resource.kind()), *op), replayed: true })
        }
        // A key's operation never has a resource change's fingerprint.
        Outcome::Replayed(_) => Err(crate::admin::api::mismatch()),
    }
}

/// Validates a call.
fn prepare(face: Face, call: ResourceCall) -> Result<Prepared, ApiError> {
    Ok(match call {
        ResourceCall::Create(req) => Prepared::Create(new_resource(face, &req)?),
        ResourceCall::Update(id, req) => Prepared::Update(face.reference(&id)?, patch(face, &req)?),
        ResourceCall::Delete(id) => Prepared::Delete(face.reference(&id)?),
        ResourceCall::Policy(id, request) => Prepared::Policy(face.reference(&id)?, policy_call(face, request)?),
        ResourceCall::Access(id, deltas, replace) => Prepared::Access(face.reference(&id)?, deltas, replace),
    })
}

/// Makes a prepared change.
async fn apply<S: KeyStore>(manager: KeyManager<S>, face: Face, prepared: Prepared) -> Result<Changed, ApiError> {
    let (change, op) = match prepared {
        Prepared::Create(new) => (ResourceOperationKind::Create, manager.create_resource(new).await?),
        Prepared::Update(target, patch) => {
            (ResourceOperationKind::Update, manager.update_resource(&target, patch).await?)
        }
        Prepared::Delete(target) => (ResourceOperationKind::Delete, manager.delete_resource(&target).await?),
        Prepared::Policy(target, call) => {
            let op = apply_policy(&manager, &target, &call).await?;
            return Ok(Changed { face, change: Change::Policy(call), op });
        }
        Prepared::Access(target, deltas, replace) => {
            let op = manager.update_access_bindings(&target, deltas, replace).await?;
            return Ok(Changed { face, change: Change::Access(replace), op });
        }
    };
    Ok(Changed { face, change: Change::Resource(change), op })
}

/// Makes a policy call; changing parameters needs the policy bound.
async fn apply_policy<S: KeyStore>(
    manager: &KeyManager<S>,
    target: &ResourceRef,
    call: &PolicyCall,
) -> Result<ResourceOperation, ApiError> {
    Ok(match call {
        PolicyCall::Bind(b) => manager.bind_access_policy(target, b.clone()).await?,
        PolicyCall::Unbind(template) => manager.unbind_access_policy(target, template).await?,
        PolicyCall::UpdateParameters(b) => {
            let bound = manager.access_policy_bindings(target).await?;
            if !bound.iter().any(|x| x.access_policy_template_id == b.access_policy_template_id) {
                let e = crate::resource::policy_not_bound(target, &b.access_policy_template_id);
                return Err(ApiError::from(crate::ManageError::Resource(e)));
            }
            manager.bind_access_policy(target, b.clone()).await?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_masks_and_types() {
        assert_eq!(filter_name("name=\"my-robot\"").unwrap().unwrap().as_str(), "my-robot");
        assert_eq!(filter_name(" name = 'a1' ").unwrap().unwrap().as_str(), "a1");
        assert!(filter_name("").unwrap().is_none());
        for bad in ["name=my-robot", "id=\"x\"", "name=\"My\""] {
            assert!(filter_name(bad).is_err(), "{bad}");
        }
        let req = UpdateResourceRequest { update_mask: Some("name,labels".into()), ..Default::default() };
        assert!(patch(SERVICE_ACCOUNTS, &req).is_err(), "a named name must be given");
        let req = UpdateResourceRequest { description: Some("x".into()), ..Default::default() };
        assert_eq!(patch(FOLDERS, &req).unwrap(), ResourcePatch::new().description(Description::new("x").unwrap()));
        let req = UpdateResourceRequest { title: Some("x".into()), ..Default::default() };
        assert!(patch(FOLDERS, &req).is_err(), "only organizations have titles");
        assert!(patch(ORGANIZATIONS, &req).is_ok());
        assert!(patch(FOLDERS, &UpdateResourceRequest::default()).is_err(), "an empty update");
        assert_eq!(ORGANIZATIONS.metadata_type("Create"), "type.googleapis.com/apikeys.v1.CreateOrganizationMetadata");
        assert_eq!(
            SERVICE_ACCOUNTS.metadata_type("Delete"),
            "type.googleapis.com/yandex.cloud.iam.v1.DeleteServiceAccountMetadata"
        );
        let create = CreateResourceRequest { cloud_id: Some("x".into()), name: "a".into(), ..Default::default() };
        assert!(new_resource(SERVICE_ACCOUNTS, &create).is_err(), "the wrong parent");
        assert!(cursor_of("no-slash").is_err());
    }
}
