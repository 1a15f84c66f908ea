//! `keyctl access-policy bind|unbind|list|templates`: the access policies
//! bound on an organization, a cloud or a folder (`--organization-id`,
//! `--cloud-id`, `--folder-id` or `--folder-name`), and those in effect
//! for a service account (`list --service-account-id | --service-account-name`).

use std::collections::BTreeMap;

use api_keys::ServiceAccountId;
use api_keys::access_policy::{AccessPolicyBinding, TEMPLATES};
use api_keys::resource::{ResourceId, ResourceName, ResourceRef};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::{AccountArgs, FolderArgs, OnMissing, parse_id, parse_name};
use crate::context::Context;
use crate::failure::{BAD_INPUT, Failure, manage_failure};
use crate::render::{Format, emit, structured, table};

/// What to do with access policies.
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyAction {
    /// Bind a policy on an organization, cloud or folder (replacing the parameters of the same
    /// template bound there).
    Bind {
        #[command(flatten)]
        on: OnArgs,
        /// The template id (see `keyctl access-policy templates`).
        #[arg(long)]
        template: String,
        /// A parameter, NAME=VALUE; repeatable (e.g. --param max_lifetime=90d).
        #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
    },
    /// Unbind the policy of a template from an organization, cloud or folder.
    Unbind {
        #[command(flatten)]
        on: OnArgs,
        /// The template id.
        #[arg(long)]
        template: String,
    },
    /// The policies bound on an organization, cloud or folder, or those in effect for a service
    /// account (bound on its folder, cloud and organization).
    List {
        #[command(flatten)]
        on: OnArgs,
        /// The service account, by id: the policies on its path.
        #[arg(long, value_name = "ID", conflicts_with = "service_account_name")]
        service_account_id: Option<String>,
        /// The service account, by name in the folder.
        #[arg(long, value_name = "NAME", value_parser = parse_name)]
        service_account_name: Option<ResourceName>,
    },
    /// The templates this keyctl enforces and their parameters.
    Templates,
}

impl PolicyAction {
    /// Whether this is `list` or `templates` (printed as a table by default).
    pub(crate) fn is_listing(&self) -> bool {
        matches!(self, Self::List { .. } | Self::Templates)
    }
}

/// The resource a policy is bound on.
#[derive(Debug, Clone, Args)]
pub(crate) struct OnArgs {
    #[command(flatten)]
    folder: FolderArgs,
    /// A cloud (also where --folder-name is looked up) [default for --folder-name: the default cloud].
    #[arg(long, value_name = "ID", value_parser = parse_id)]
    cloud_id: Option<ResourceId>,
    /// An organization.
    #[arg(long, value_name = "ID", value_parser = parse_id, conflicts_with_all = ["cloud_id", "folder_id", "folder_name"])]
    organization_id: Option<ResourceId>,
}

impl OnArgs {
    /// The organization, cloud or folder the flags name.
    ///
    /// # Errors
    /// Exit 2 when none or several are named; 3 for an unknown folder name.
    async fn resolve(&self, cx: &Context) -> Result<ResourceRef, Failure> {
        if self.folder.folder_id.is_some() && self.cloud_id.is_some() {
            return Err(Failure::new(BAD_INPUT, "give --folder-id or --cloud-id, not both"));
        }
        if self.folder.given() {
            return Ok(ResourceRef::Folder(self.folder.resolve(cx, self.cloud_id).await?));
        }
        match (self.cloud_id, self.organization_id) {
            (Some(cloud), _) => Ok(ResourceRef::Cloud(cloud)),
            (None, Some(org)) => Ok(ResourceRef::Organization(org)),
            (None, None) => Err(Failure::new(
                BAD_INPUT,
                "name the resource: --organization-id, --cloud-id, --folder-id or --folder-name",
            )),
        }
    }
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    let (k, v) = text.split_once('=').ok_or_else(|| format!("{text:?} is not NAME=VALUE"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

/// A binding as printed.
#[derive(Serialize)]
struct Bound {
    access_policy_template_id: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    parameters: BTreeMap<String, String>,
    bound_on: String,
}

/// A template as printed.
#[derive(Serialize)]
struct Template {
    id: &'static str,
    parameters: &'static [&'static str],
    description: &'static str,
}

/// Runs `keyctl access-policy <action>`.
///
/// # Errors
/// Exit 2 for bad input (an unknown template, a bad parameter), 3 for an
/// unknown resource, 4 to unbind a policy that is not bound.
pub(crate) async fn run(action: PolicyAction, format: Format, cx: &Context) -> Result<(), Failure> {
    if let PolicyAction::Templates = action {
        return templates(format);
    }
    let dir = cx.directory();
    match action {
        PolicyAction::Bind { on, template, params } => {
            let target = on.resolve(cx).await?;
            let binding =
                params.into_iter().fold(AccessPolicyBinding::new(template), |b, (k, v)| b.with_parameter(k, v));
            let shown = describe(&binding);
            dir.bind_access_policy(&target, binding).await.map_err(|e| manage_failure(&e))?;
            eprintln!("keyctl: bound {shown} on {target}");
            Ok(())
        }
        PolicyAction::Unbind { on, template } => {
            let target = on.resolve(cx).await?;
            dir.unbind_access_policy(&target, &template).await.map_err(|e| manage_failure(&e))?;
            eprintln!("keyctl: unbound {template} from {target}");
            Ok(())
        }
        PolicyAction::List { on, service_account_id, service_account_name } => {
            let on_path = match (service_account_id, service_account_name) {
                (None, None) => vec![on.resolve(cx).await?],
                (id, name) => {
                    if on.cloud_id.is_some() || on.organization_id.is_some() {
                        return Err(Failure::new(BAD_INPUT, "give a service account or a resource, not both"));
                    }
                    let account = AccountArgs { service_account_id: id, service_account_name: name, folder: on.folder };
                    path(&account.resolve(cx, OnMissing::Refuse).await?.0, cx).await?
                }
            };
            list(&on_path, format, cx).await
        }
        PolicyAction::Templates => templates(format),
    }
}

/// The folder, cloud and organization of a service account.
async fn path(account: &ServiceAccountId, cx: &Context) -> Result<Vec<ResourceRef>, Failure> {
    Ok(cx.directory().path_of(account).await.map_err(|e| manage_failure(&e))?.to_vec())
}

/// `template (k=v, …)` for a message.
fn describe(binding: &AccessPolicyBinding) -> String {
    let params: Vec<String> = binding.parameters.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if params.is_empty() {
        binding.access_policy_template_id.clone()
    } else {
        format!("{} ({})", binding.access_policy_template_id, params.join(", "))
    }
}

/// Prints the bindings on each of `on`.
async fn list(on: &[ResourceRef], format: Format, cx: &Context) -> Result<(), Failure> {
    let mut rows = Vec::new();
    for target in on {
        let bindings = cx.directory().access_policy_bindings(target).await.map_err(|e| manage_failure(&e))?;
        rows.extend(bindings.into_iter().map(|b| Bound {
            access_policy_template_id: b.access_policy_template_id,
            parameters: b.parameters,
            bound_on: target.to_string(),
        }));
    }
    if format != Format::Table {
        return emit(structured(format, &rows));
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|b| {
            let params: Vec<String> = b.parameters.iter().map(|(k, v)| format!("{k}={v}")).collect();
            vec![b.access_policy_template_id.clone(), params.join(","), b.bound_on.clone()]
        })
        .collect();
    emit(Ok(table(&["TEMPLATE", "PARAMETERS", "BOUND ON"], &cells)))
}

/// Prints the templates (no store needed).
pub(crate) fn templates(format: Format) -> Result<(), Failure> {
    let all: Vec<Template> =
        TEMPLATES.iter().map(|t| Template { id: t.id, parameters: t.parameters, description: t.description }).collect();
    if format != Format::Table {
        return emit(structured(format, &all));
    }
    let cells: Vec<Vec<String>> =
        all.iter().map(|t| vec![t.id.to_owned(), t.parameters.join(","), t.description.to_owned()]).collect();
    emit(Ok(table(&["ID", "PARAMETERS", "DESCRIPTION"], &cells)))
}
