//! How a resource is printed: one [`View`] for the four kinds (the fields
//! `yc` prints, snake_case, empty ones left out) and the table columns of
//! each kind's `list`.

use api_keys::Timestamp;
use api_keys::resource::{Labels, Resource, ResourceKind};
use serde::Serialize;

/// A resource as printed.
#[derive(Debug, Serialize)]
pub(crate) struct View {
    pub(crate) id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) organization_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cloud_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) folder_id: Option<String>,
    pub(crate) created_at: Timestamp,
    pub(crate) name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) description: String,
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub(crate) labels: Labels,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_authenticated_at: Option<Timestamp>,
}

impl View {
    /// The view of `resource`.
    pub(crate) fn of(resource: &Resource) -> Self {
        let mut v = Self {
            id: resource.reference().id().to_owned(),
            organization_id: None,
            cloud_id: None,
            folder_id: None,
            created_at: resource.created_at(),
            name: resource.name().to_string(),
            title: String::new(),
            description: String::new(),
            labels: Labels::new(),
            status: None,
            last_authenticated_at: None,
        };
        match resource {
            Resource::Organization(o) => {
                v.title = o.title.as_str().to_owned();
                (v.description, v.labels) = (o.description.as_str().to_owned(), o.labels.clone());
            }
            Resource::Cloud(c) => {
                v.organization_id = Some(c.organization_id.to_string());
                (v.description, v.labels) = (c.description.as_str().to_owned(), c.labels.clone());
            }
            Resource::Folder(f) => {
                v.cloud_id = Some(f.cloud_id.to_string());
                v.status = Some(f.status.as_str());
                (v.description, v.labels) = (f.description.as_str().to_owned(), f.labels.clone());
            }
            Resource::ServiceAccount(sa) => {
                v.folder_id = Some(sa.folder_id.to_string());
                v.last_authenticated_at = sa.last_authenticated_at;
                (v.description, v.labels) = (sa.description.as_str().to_owned(), sa.labels.clone());
            }
            _ => {}
        }
        v
    }
}

/// A column of a resource table.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Column {
    Id,
    Name,
    Title,
    Description,
    OrganizationId,
    Labels,
    Status,
}

impl Column {
    fn header(self) -> &'static str {
        match self {
            Self::Id => "ID",
            Self::Name => "NAME",
            Self::Title => "TITLE",
            Self::Description => "DESCRIPTION",
            Self::OrganizationId => "ORGANIZATION ID",
            Self::Labels => "LABELS",
            Self::Status => "STATUS",
        }
    }

    fn cell(self, v: &View) -> String {
        match self {
            Self::Id => v.id.clone(),
            Self::Name => v.name.clone(),
            Self::Title => v.title.clone(),
            Self::Description => v.description.clone(),
            Self::OrganizationId => v.organization_id.clone().unwrap_or_default(),
            Self::Labels => v.labels.to_string(),
            Self::Status => v.status.unwrap_or_default().to_owned(),
        }
    }
}

/// The columns `yc` lists each kind with.
pub(crate) fn columns(kind: ResourceKind) -> &'static [Column] {
    match kind {
        ResourceKind::Organization => &[Column::Id, Column::Name, Column::Title, Column::Labels],
        ResourceKind::Cloud => &[Column::Id, Column::Name, Column::OrganizationId],
        ResourceKind::Folder => &[Column::Id, Column::Name, Column::Labels, Column::Status],
        _ => &[Column::Id, Column::Name, Column::Description],
    }
}

/// The table of `views` in `kind`'s columns.
pub(crate) fn table(kind: ResourceKind, views: &[View]) -> String {
    let cols = columns(kind);
    let headers: Vec<&str> = cols.iter().map(|c| c.header()).collect();
    let rows: Vec<Vec<String>> = views.iter().map(|v| cols.iter().map(|c| c.cell(v)).collect()).collect();
    crate::render::table(&headers, &rows)
}
