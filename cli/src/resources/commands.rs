//! `keyctl service-account|folder|cloud|organization create|list|get|update|delete`:
//! one implementation, parameterised by the [`ResourceKind`] the command
//! names. Parents default to the defaults: a service account's folder as
//! in [`FolderArgs`], a folder's cloud to the default cloud, a cloud's
//! organization to the default organization.

use api_keys::resource::{Labels, Resource, ResourceId, ResourceKind, ResourceListing, ResourceName, ResourcePatch};
use api_keys::resource::{ResourceOrder, ResourceRef};
use api_keys::{Description, NewResource, PageRequest};
use clap::{Args, Subcommand};

use super::view::{self, View};
use super::{FolderArgs, parse_id, parse_name};
use crate::context::Context;
use crate::failure::{BAD_INPUT, Failure, NOT_FOUND, OTHER, manage_failure};
use crate::render::{Format, emit, structured};

/// Resources per page read by `list` (every page is read).
const PAGE: u32 = 1000;

/// What to do with resources of one kind.
#[derive(Debug, Subcommand)]
pub(crate) enum ResourceAction {
    /// Create one; prints it.
    Create(CreateArgs),
    /// List those in the parent (a table by default).
    List(ParentArgs),
    /// Show one, by --id or --name.
    Get(TargetArgs),
    /// Rename (--new-name), re-describe or re-label one; prints it.
    Update(UpdateArgs),
    /// Delete one: a service account with all its keys; a folder, cloud or organization only when
    /// empty (never the defaults).
    Delete(TargetArgs),
}

impl ResourceAction {
    /// Whether this is `list` (printed as a table by default).
    pub(crate) fn is_list(&self) -> bool {
        matches!(self, Self::List(_))
    }

    /// Whether this is `create` (which may bring a new SQLite database into being).
    pub(crate) fn is_create(&self) -> bool {
        matches!(self, Self::Create(_))
    }
}

/// Where the resources are: the parent of the kind the command names.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ParentArgs {
    #[command(flatten)]
    folder: FolderArgs,
    /// The cloud (of folders; where --folder-name is looked up) [default: the default cloud].
    #[arg(long, value_name = "ID", value_parser = parse_id)]
    cloud_id: Option<ResourceId>,
    /// The organization (of clouds) [default: the default organization].
    #[arg(long, value_name = "ID", value_parser = parse_id)]
    organization_id: Option<ResourceId>,
}

impl ParentArgs {
    /// The listing of `kind` in the parent these flags give (or the default).
    ///
    /// # Errors
    /// Exit 2 for a flag that does not apply to `kind`; 3 for an unknown folder name.
    async fn listing(&self, kind: ResourceKind, cx: &Context) -> Result<ResourceListing, Failure> {
        let given = [
            ("--folder-id or --folder-name", self.folder.given(), kind == ResourceKind::ServiceAccount),
            (
                "--cloud-id",
                self.cloud_id.is_some(),
                matches!(kind, ResourceKind::ServiceAccount | ResourceKind::Folder),
            ),
            ("--organization-id", self.organization_id.is_some(), kind == ResourceKind::Cloud),
        ];
        if let Some((flag, ..)) = given.iter().find(|(_, given, applies)| *given && !applies) {
            return Err(Failure::new(BAD_INPUT, format!("{flag} does not apply to `keyctl {}`", command(kind))));
        }
        Ok(match kind {
            ResourceKind::Organization => ResourceListing::Organizations,
            ResourceKind::Cloud => {
                ResourceListing::Clouds(self.organization_id.unwrap_or_else(ResourceId::default_organization))
            }
            ResourceKind::Folder => ResourceListing::Folders(self.cloud_id.unwrap_or_else(ResourceId::default_cloud)),
            _ => ResourceListing::ServiceAccounts(self.folder.resolve(cx, self.cloud_id).await?),
        })
    }
}

/// `create --name NAME [--description D] [--labels k=v,…] [--title T]` and the parent.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    parent: ParentArgs,
    /// The name: [a-z]([-a-z0-9]{0,61}[a-z0-9])?, unique in the parent (a service account's in its cloud).
    #[arg(long, value_parser = parse_name)]
    name: ResourceName,
    #[command(flatten)]
    fields: Fields,
}

/// The fields `create` and `update` set.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct Fields {
    /// Free text (at most 256 characters).
    #[arg(long, value_parser = parse_description)]
    description: Option<Description>,
    /// Labels, key=value,… (at most 64; keys and values at most 63 of `[-_./\@0-9a-z]`); update replaces
    /// them all ("" clears them).
    #[arg(long, value_name = "K=V,…", value_parser = parse_labels)]
    labels: Option<Labels>,
    /// The display title (organizations only).
    #[arg(long, value_parser = parse_description)]
    title: Option<Description>,
}

fn parse_description(text: &str) -> Result<Description, String> {
    Description::new(text).map_err(|e| e.to_string())
}

fn parse_labels(text: &str) -> Result<Labels, String> {
    text.parse::<Labels>().map_err(|e| e.to_string())
}

/// One resource: `--id ID` or `--name NAME` (in the parent).
#[derive(Debug, Args)]
pub(crate) struct TargetArgs {
    #[command(flatten)]
    parent: ParentArgs,
    /// Its id.
    #[arg(long, required_unless_present = "name", conflicts_with = "name")]
    id: Option<String>,
    /// Its name, in the parent.
    #[arg(long, value_parser = parse_name)]
    name: Option<ResourceName>,
}

impl TargetArgs {
    /// The resource named by `--id`, or found by `--name` in the parent.
    ///
    /// # Errors
    /// Exit 2 for a bad id; 3 when no resource has the name.
    async fn resolve(&self, kind: ResourceKind, cx: &Context) -> Result<ResourceRef, Failure> {
        if let Some(id) = &self.id {
            return ResourceRef::parse(kind, id).map_err(|e| Failure::new(BAD_INPUT, format!("--id: {e}")));
        }
        let Some(name) = &self.name else { return Err(Failure::new(BAD_INPUT, "give --id or --name")) };
        let listing = self.parent.listing(kind, cx).await?;
        match cx.directory().find_resource(&listing, name).await.map_err(|e| manage_failure(&e))? {
            Some(found) => Ok(found.reference()),
            None => Err(Failure::new(NOT_FOUND, format!("no {kind} named {name}{}", within(&listing)))),
        }
    }
}

/// `update (--id ID | --name NAME) [--new-name N] [--description D] [--labels k=v,…] [--title T]`.
#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The new name.
    #[arg(long, value_parser = parse_name)]
    new_name: Option<ResourceName>,
    #[command(flatten)]
    fields: Fields,
}

/// The `keyctl` command of `kind`.
pub(crate) fn command(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Organization => "organization",
        ResourceKind::Cloud => "cloud",
        ResourceKind::Folder => "folder",
        _ => "service-account",
    }
}

/// ` in folder X` for a message (nothing for organizations).
fn within(listing: &ResourceListing) -> String {
    listing.parent().map(|p| format!(" in {p}")).unwrap_or_default()
}

/// The resource `new` of the listing's kind in its parent.
fn new_resource(listing: &ResourceListing, name: ResourceName, fields: Fields) -> NewResource {
    let new = match listing {
        ResourceListing::Clouds(org) => NewResource::cloud(*org, name),
        ResourceListing::Folders(cloud) => NewResource::folder(*cloud, name),
        ResourceListing::ServiceAccounts(folder) => NewResource::service_account(*folder, name),
        _ => NewResource::organization(name),
    };
    let Fields { description, labels, title } = fields;
    let new = new.description(description.unwrap_or_default()).labels(labels.unwrap_or_default());
    new.title(title.unwrap_or_default())
}

/// Runs `keyctl <kind> <action>`.
///
/// # Errors
/// The command's failure (exit 2 bad input, 3 not found, 4 refused, 5 store).
pub(crate) async fn run(
    kind: ResourceKind,
    action: ResourceAction,
    format: Format,
    cx: &Context,
) -> Result<(), Failure> {
    let dir = cx.directory();
    match action {
        ResourceAction::Create(args) => {
            let listing = args.parent.listing(kind, cx).await?;
            let op = dir.create_resource(new_resource(&listing, args.name, args.fields)).await;
            show(kind, format, op.map_err(|e| manage_failure(&e))?.response)
        }
        ResourceAction::List(parent) => list(kind, &parent.listing(kind, cx).await?, format, cx).await,
        ResourceAction::Get(target) => {
            let found = dir.get_resource(&target.resolve(kind, cx).await?).await.map_err(|e| manage_failure(&e))?;
            show(kind, format, Some(found))
        }
        ResourceAction::Update(args) => {
            let target = args.target.resolve(kind, cx).await?;
            let Fields { description, labels, title } = args.fields;
            let mut patch = ResourcePatch::new();
            (patch.name, patch.description, patch.labels, patch.title) = (args.new_name, description, labels, title);
            if patch == ResourcePatch::new() {
                return Err(Failure::new(
                    BAD_INPUT,
                    "nothing to update: give --new-name, --description, --labels or --title",
                ));
            }
            show(kind, format, dir.update_resource(&target, patch).await.map_err(|e| manage_failure(&e))?.response)
        }
        ResourceAction::Delete(target) => {
            let target = target.resolve(kind, cx).await?;
            dir.delete_resource(&target).await.map_err(|e| manage_failure(&e))?;
            let keys = if kind == ResourceKind::ServiceAccount { " with its keys" } else { "" };
            eprintln!("keyctl: {target} deleted{keys}");
            Ok(())
        }
    }
}

/// Prints one resource (yaml by default, one table row with --format table).
fn show(kind: ResourceKind, format: Format, resource: Option<Resource>) -> Result<(), Failure> {
    let resource = resource.ok_or_else(|| Failure::new(OTHER, "the store did not return the resource"))?;
    let v = View::of(&resource);
    emit(if format == Format::Table { Ok(view::table(kind, &[v])) } else { structured(format, &v) })
}

/// Prints every resource of `listing`, by name.
async fn list(kind: ResourceKind, listing: &ResourceListing, format: Format, cx: &Context) -> Result<(), Failure> {
    let dir = cx.directory();
    if let Some(parent) = listing.parent() {
        // An unknown parent lists nothing in the store; say it is unknown.
        dir.get_resource(&parent).await.map_err(|e| manage_failure(&e))?;
    }
    let mut views = Vec::new();
    let mut after = None;
    loop {
        let page = dir.list_resources(listing, ResourceOrder::Name, PageRequest::starting(PAGE, after)).await;
        let page = page.map_err(|e| manage_failure(&e))?;
        views.extend(page.items.iter().map(View::of));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    emit(if format == Format::Table { Ok(view::table(kind, &views)) } else { structured(format, &views) })
}
