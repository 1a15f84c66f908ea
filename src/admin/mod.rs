//! Operator endpoints for an axum application (feature `admin`).
//!
//! - [`github`]: GitHub's secret-scanning partner endpoint,
//!   `POST /v1/secret-scanning/github`, which checks and revokes keys that
//!   GitHub found in public code.

pub mod github;
