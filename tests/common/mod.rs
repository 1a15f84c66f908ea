//! Shared test helpers.

#[cfg(feature = "axum")]
pub(crate) mod app;
pub(crate) mod hostile;
pub(crate) mod services;
pub(crate) mod stress;
