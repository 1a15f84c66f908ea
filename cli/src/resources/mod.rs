//! Resources from the terminal: organizations, clouds, folders and service
//! accounts (`keyctl service-account|folder|cloud|organization …`, one
//! implementation for the four kinds in [`commands`]), the access policies
//! bound on them (`keyctl access-policy …`, [`policy`]), and the service
//! account a key command names (`--service-account-id` or
//! `--service-account-name` in a folder, [`AccountArgs`]).
//!
//! A folder is `--folder-id`, else `--folder-name` (looked up in the
//! default cloud, or `--cloud-id` where a command takes it), else
//! `API_KEYS_FOLDER_ID`, else the default folder.

pub(crate) mod commands;
pub(crate) mod policy;
mod view;

use api_keys::resource::{Resource, ResourceChange, ResourceId, ResourceListing, ResourceLogEntry, ResourceName};
use api_keys::{KeyStore, OperationId, ServiceAccountId, Timestamp};
use clap::Args;

use crate::context::{Context, actor};
use crate::env;
use crate::failure::{BAD_INPUT, Failure, NOT_FOUND, OTHER, manage_failure, store_failure};

/// A resource name from the command line (exit 2 when it breaks the pattern).
pub(crate) fn parse_name(text: &str) -> Result<ResourceName, String> {
    ResourceName::new(text).map_err(|e| e.to_string())
}

/// A resource id from the command line (exit 2 when it is not one).
pub(crate) fn parse_id(text: &str) -> Result<ResourceId, String> {
    ResourceId::new(text).map_err(|e| e.to_string())
}

/// Where a folder is given: by id, or by name in a cloud.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct FolderArgs {
    /// The folder, by id [env: API_KEYS_FOLDER_ID] [default: the default folder].
    #[arg(long, value_name = "ID", value_parser = parse_id, conflicts_with = "folder_name")]
    pub(crate) folder_id: Option<ResourceId>,
    /// The folder, by name (in the default cloud unless --cloud-id is given where a command takes it).
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub(crate) folder_name: Option<ResourceName>,
}

impl FolderArgs {
    /// Whether a folder flag was given.
    pub(crate) fn given(&self) -> bool {
        self.folder_id.is_some() || self.folder_name.is_some()
    }

    /// The folder: `--folder-id`, `--folder-name` in `cloud` (default: the
    /// default cloud), `API_KEYS_FOLDER_ID`, the default folder.
    ///
    /// # Errors
    /// Exit 3 for an unknown folder name, 2 for a bad variable.
    pub(crate) async fn resolve(&self, cx: &Context, cloud: Option<ResourceId>) -> Result<ResourceId, Failure> {
        if let Some(id) = self.folder_id {
            return Ok(id);
        }
        if let Some(name) = &self.folder_name {
            let cloud = cloud.unwrap_or_else(ResourceId::default_cloud);
            let found = cx.directory().find_resource(&ResourceListing::Folders(cloud), name).await;
            return match found.map_err(|e| manage_failure(&e))? {
                Some(folder) => Ok(folder_id(&folder)),
                None => Err(Failure::new(NOT_FOUND, format!("no folder named {name} in cloud {cloud}"))),
            };
        }
        match env::var(env::FOLDER_ID_VAR) {
            Some(text) => ResourceId::new(text.trim())
                .map_err(|e| Failure::new(BAD_INPUT, format!("{}: {e}", env::FOLDER_ID_VAR))),
            None => Ok(ResourceId::default_folder()),
        }
    }
}

/// The id of a folder found by name.
fn folder_id(folder: &Resource) -> ResourceId {
    match folder {
        Resource::Folder(f) => f.id,
        _ => ResourceId::default_folder(),
    }
}

/// The service account a key command names.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct AccountArgs {
    /// The service account, by id.
    #[arg(long, value_name = "ID", conflicts_with = "service_account_name")]
    pub(crate) service_account_id: Option<String>,
    /// The service account, by name in the folder (--folder-id, --folder-name, API_KEYS_FOLDER_ID or the
    /// default folder).
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub(crate) service_account_name: Option<ResourceName>,
    #[command(flatten)]
    pub(crate) folder: FolderArgs,
}

/// Whether an unknown service account is made on first use (`create` and
/// `import --create-service-account`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnMissing {
    /// An unknown account is an error naming the command that makes one.
    Refuse,
    /// An unknown account is created in the folder.
    Create,
}

impl AccountArgs {
    /// The account's id, and whether this call created the account. By
    /// name: looked up in the folder. Where the store keeps resources, an
    /// unknown account is refused (exit 3) or, with [`OnMissing::Create`],
    /// created in the folder (by id: under that id, as the store upgrade
    /// made the accounts of existing keys).
    ///
    /// # Errors
    /// Exit 2 for a bad id or flags, 3 for an unknown account.
    pub(crate) async fn resolve(
        &self,
        cx: &Context,
        on_missing: OnMissing,
    ) -> Result<(ServiceAccountId, bool), Failure> {
        if let Some(id) = &self.service_account_id {
            let id =
                ServiceAccountId::new(id).map_err(|e| Failure::new(BAD_INPUT, format!("--service-account-id: {e}")))?;
            let created = self.ensure_by_id(cx, &id, on_missing).await?;
            return Ok((id, created));
        }
        let Some(name) = &self.service_account_name else {
            return Err(Failure::new(BAD_INPUT, "give --service-account-id or --service-account-name"));
        };
        let folder = self.folder.resolve(cx, None).await?;
        let listing = ResourceListing::ServiceAccounts(folder);
        let found = cx.directory().find_resource(&listing, name).await.map_err(|e| manage_failure(&e))?;
        match (found.and_then(Resource::into_service_account), on_missing) {
            (Some(sa), _) => Ok((sa.id, false)),
            (None, OnMissing::Create) => Ok((create_named(cx, folder, name).await?, true)),
            (None, OnMissing::Refuse) => Err(Failure::new(
                NOT_FOUND,
                format!(
                    "no service account named {name} in folder {folder}; create it with `keyctl service-account \
                     create --name {name}{}` (or pass --create-service-account)",
                    folder_flag(folder)
                ),
            )),
        }
    }

    /// Checks that the account `id` exists, or adopts it into the folder;
    /// returns whether it adopted it.
    async fn ensure_by_id(&self, cx: &Context, id: &ServiceAccountId, on_missing: OnMissing) -> Result<bool, Failure> {
        let target = api_keys::resource::ResourceRef::ServiceAccount(id.clone());
        if cx.store.resource(&target).await.map_err(|e| store_failure(&e))?.is_some() {
            return Ok(false);
        }
        match on_missing {
            OnMissing::Refuse => Err(Failure::new(
                NOT_FOUND,
                format!(
                    "service account {id} not found; create one with `keyctl service-account create --name NAME` \
                     and use its id or --service-account-name, or pass --create-service-account to make {id} one"
                ),
            )),
            OnMissing::Create => adopt(cx, id, self.folder.resolve(cx, None).await?).await.map(|()| true),
        }
    }
}

/// `--folder-id ID` for a hint, or nothing for the default folder.
fn folder_flag(folder: ResourceId) -> String {
    if folder == ResourceId::default_folder() { String::new() } else { format!(" --folder-id {folder}") }
}

/// Creates the service account `name` in `folder`, saying so on stderr.
async fn create_named(cx: &Context, folder: ResourceId, name: &ResourceName) -> Result<ServiceAccountId, Failure> {
    let new = api_keys::NewResource::service_account(folder, name.clone());
    let op = cx.directory().create_resource(new).await.map_err(|e| manage_failure(&e))?;
    let Some(Resource::ServiceAccount(sa)) = op.response else {
        return Err(Failure::new(OTHER, "the store did not return the created service account"));
    };
    eprintln!("keyctl: created service account {name} ({}) in folder {folder}", sa.id);
    Ok(sa.id)
}

/// Makes the existing id `id` a service account in `folder`, named as the
/// store upgrade names the accounts of existing keys.
async fn adopt(cx: &Context, id: &ServiceAccountId, folder: ResourceId) -> Result<(), Failure> {
    let random = |e: api_keys::RandomError| Failure::new(OTHER, crate::failure::chain(&e));
    let name = ResourceName::for_legacy_account(id).map_err(random)?;
    let now = Timestamp::now();
    let sa = api_keys::resource::ServiceAccount::new(id.clone(), folder, now, name.clone());
    let log = ResourceLogEntry::new(OperationId::generate().map_err(random)?, actor(), now);
    let change = ResourceChange::Create(Resource::ServiceAccount(sa));
    cx.store.commit_resource(change, &log).await.map_err(|e| store_failure(&e))?;
    eprintln!("keyctl: created service account {name} ({id}) in folder {folder}");
    Ok(())
}
