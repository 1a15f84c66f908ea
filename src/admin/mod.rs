//! The management REST API for an axum application (feature `admin`): an
//! axum [`Router`](axum::Router) in the shape of the cloud's own
//! `/iam/v1/apiKeys` to nest at `/iam/v1`. GitHub's secret-scanning partner
//! endpoint is `scan::github` (feature `github`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use api_keys::admin::{AdminApi, StaticTokens};
//! use api_keys::{KeyManager, MemoryStore, Pepper, Peppers, ScopeCatalog};
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = KeyManager::builder(
//!     Arc::new(MemoryStore::new()),
//!     Peppers::single(Pepper::generate(1)?),
//!     ScopeCatalog::builder().scope("yc.monitoring.read", "Viewing monitoring data").build()?,
//! )
//! .build();
//! let auth = StaticTokens::new().token("ops", "a-long-random-admin-token-0123456789")?;
//! let app = axum::Router::new().nest("/iam/v1", AdminApi::new(manager, auth).router());
//! # let _ = app; Ok(()) }
//! ```
//!
//! With the feature `console`, the router also serves `console`, a web page
//! over the API, at `/console` (`/iam/v1/console` when nested as above).
//!
//! See [`api`] for the routes, the error shape and idempotency, [`auth`] for
//! who may call it, [`types`] for the JSON bodies, [`view`] for the cloud's
//! shape and the project's extension fields, and [`openapi`] for the
//! generated OpenAPI 3.1 document.

mod access;
pub mod api;
pub mod auth;
#[cfg(feature = "console")]
#[cfg_attr(docsrs, doc(cfg(feature = "console")))]
pub mod console;
mod error;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod idempotency;
pub mod openapi;
pub(crate) mod operations;
mod page_token;
pub mod resource_types;
mod resources;
mod sealed;
mod throttle;
pub mod types;
pub mod view;

pub use api::{AdminApi, AdminRouters, DEFAULT_BODY_LIMIT};
pub use auth::{AdminAction, AdminAuth, AdminCaller, AdminRejection, ApiKeyAdmin, StaticTokens, TokenError};
pub use error::{ApiError, Code};
