//! The pluggable key store.
//!
//! [`KeyStore`] is a small async trait (native `impl Future + Send` methods,
//! no boxing, no runtime dependency) that every backend implements: the
//! in-memory [`MemoryStore`], and SQLite, PostgreSQL and
//! Redis behind cargo features. Stores keep [`KeyRecord`](crate::KeyRecord)s —
//! digests, never secrets — and must make `insert`, `reissue`, `revoke` and
//! `delete` all-or-nothing. Any failure to reach the backend is
//! [`StoreError::Unavailable`] or [`StoreError::Timeout`]; the verifier fails
//! closed on both.
//!
//! The memory, SQLite, PostgreSQL and Redis stores also keep the resources
//! that hold service accounts ([`crate::resource`]: organizations, clouds,
//! folders, service accounts) through [`KeyStore`]'s provided resource
//! methods, which every wrapper forwards; a store that keeps none answers
//! them [`StoreError::Unavailable`].
//!
//! The stores themselves, [`KeyStore`], [`StoreError`], [`Page`],
//! [`PageRequest`] and [`OldKeyFate`] are re-exported at the crate root,
//! which is their one public path; this module holds what a backend author
//! or an operator needs beyond them.
//!
//! ```
//! use std::sync::Arc;
//! use api_keys::{KeyStore, MemoryStore, PageRequest, ServiceAccountId};
//!
//! # tokio_test();
//! # fn tokio_test() { tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = Arc::new(MemoryStore::new());
//! let sa = ServiceAccountId::new("my-robot")?;
//! let page = store.list(&sa, PageRequest::first(10)).await?;
//! assert!(page.items.is_empty() && page.next.is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap() }
//! ```

#[cfg(feature = "_backend")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))))]
pub mod any;
#[cfg(feature = "_backend")]
mod backend;
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod cached;
pub mod feed;
mod forward;
pub mod idempotency;
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod invalidation;
pub(crate) mod key_store;
#[cfg(feature = "cache")]
mod membership;
pub(crate) mod memory;
mod memory_resources;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(feature = "redis")]
mod redis_resources;
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod shielded;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql_resources;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
pub(crate) mod view;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::RedisConnection;
pub use crate::operation::{apply_update, check_updatable};
#[cfg(feature = "_backend")]
pub use backend::{ConfigError, DEFAULT_TIMEOUT};
pub use key_store::{apply_reissue, check_reissuable};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use sql::MIGRATIONS_TABLE;

// Crate-internal short paths to the items whose public path is the root.
pub(crate) use key_store::{KeyStore, OldKeyFate, OperationPage, Page, PageRequest, StoreError};
#[cfg(feature = "cache")]
pub(crate) use memory::BuildIdHasher;
#[allow(
    unused_imports,
    reason = "used by the HTTP layer's compile-time checks and by tests, not in every feature set"
)]
pub(crate) use memory::MemoryStore;
pub(crate) use view::RecordView;
#[cfg(feature = "cache")]
pub(crate) use view::{intern_account, intern_scopes};
