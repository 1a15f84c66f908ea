//! `keyctl serve`'s GitHub secret-scanning endpoint
//! (`POST /v1/secret-scanning/github`, the library's
//! [`api_keys::admin::github`]), configured from the environment:
//!
//! | variable | meaning |
//! |---|---|
//! | `API_KEYS_GITHUB_KEYS_FILE` | GitHub's signing keys: a JSON file in the shape of `GET https://api.github.com/meta/public_keys/secret_scanning`. Unset: the endpoint is off, and `serve` says so at start. The file is re-read when a report names a key it does not hold (at most once a minute), so a rotated key can be added without a restart. |
//! | `API_KEYS_GITHUB_LEAK_ACTION` | `revoke` (default): reported keys of ours are revoked; `record`: only logged |
//!
//! `keyctl` does not fetch GitHub's keys over the network itself: download
//! the file and refresh it as GitHub rotates keys:
//!
//! ```text
//! curl -s https://api.github.com/meta/public_keys/secret_scanning > github-keys.json
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use api_keys::admin::github::{KeyFile, KeyRing, LeakAction, PATH, SecretScanning};
use axum::Router;

use crate::serve::Node;
use crate::{BAD_INPUT, Failure, chain};

/// Names the public-keys file; unset turns the endpoint off.
pub(crate) const KEYS_FILE_VAR: &str = "API_KEYS_GITHUB_KEYS_FILE";
/// `revoke` or `record`.
pub(crate) const ACTION_VAR: &str = "API_KEYS_GITHUB_LEAK_ACTION";

/// The endpoint's router, or an empty router when it is off; says which on
/// stderr.
///
/// # Errors
/// [`BAD_INPUT`] when the file is unreadable or not GitHub's shape, or the
/// action is neither `revoke` nor `record`.
pub(crate) async fn endpoint(node: &Node) -> Result<Router, Failure> {
    let Some(file) = crate::env::var(KEYS_FILE_VAR) else {
        eprintln!("keyctl: GitHub secret scanning is off ({KEYS_FILE_VAR} is not set)");
        return Ok(Router::new());
    };
    let action = leak_action()?;
    let path = PathBuf::from(file);
    let ring = KeyRing::from_source(KeyFile(path.clone()))
        .await
        .map_err(|e| Failure::new(BAD_INPUT, format!("{KEYS_FILE_VAR}: {}", chain(&e))))?;
    let held = ring.snapshot().len();
    eprintln!(
        "keyctl: GitHub secret scanning at POST {PATH} ({held} public key(s) from {}; reported keys: {})",
        path.display(),
        if action == LeakAction::Revoke { "revoked" } else { "recorded only" }
    );
    Ok(SecretScanning::new(Arc::new(node.manager()), ring).action(action).router())
}

fn leak_action() -> Result<LeakAction, Failure> {
    match crate::env::var(ACTION_VAR).as_deref().map(str::trim) {
        None | Some("revoke") => Ok(LeakAction::Revoke),
        Some("record") => Ok(LeakAction::Record),
        Some(other) => {
            let shown: String = other.chars().take(32).collect();
            Err(Failure::new(BAD_INPUT, format!("{ACTION_VAR}: `{shown}` is not `revoke` or `record`")))
        }
    }
}
