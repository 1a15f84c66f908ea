//! Shared test helpers.

pub(crate) mod hostile;
pub(crate) mod stress;
