//! `keyctl serve`'s GitHub secret-scanning endpoint
//! (`POST /v1/secret-scanning/github`, the library's
//! [`api_keys::scan::github`]), configured from the environment:
//!
//! | variable | meaning |
//! |---|---|
//! | `API_KEYS_GITHUB_KEYS_FILE` | GitHub's signing keys: a JSON file in the shape of `GET https://api.github.com/meta/public_keys/secret_scanning`. Unset: the endpoint is off, and `serve` says so at start. It must be a regular file (a link is followed) owned by the user running keyctl and not writable by group or others, checked every time it is read: whoever can write it decides whose reports revoke keys. |
//! | `API_KEYS_GITHUB_LEAK_ACTION` | `revoke` (default): reported keys of ours are revoked; `record`: only logged |
//!
//! `keyctl` does not fetch GitHub's keys over the network itself: download
//! the file and refresh it as GitHub rotates keys:
//!
//! ```text
//! curl -s https://api.github.com/meta/public_keys/secret_scanning > github-keys.json
//! ```
//!
//! **When a change takes effect.** The file is checked for a change (its
//! contents, size, owner, mode, or a new file at the path) every
//! [`WATCH_EVERY`] and re-read when it changed; it is also re-read when a
//! report names a key it does not hold (at most once a minute). A key added
//! to the file is trusted, and a key removed from it — or listed with
//! `"is_current": false`, which GitHub sets on a retired key — is refused,
//! within [`WATCH_EVERY`] of the change. A file that no longer reads (bad
//! JSON, no current key, a mode or owner that is not trusted) is refused
//! with a warning and the last good set stays in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use api_keys::scan::github::{
    FetchFuture, KeyRing, LeakAction, PATH, PublicKeySource, PublicKeys, PublicKeysError, SecretScanning,
};
use axum::Router;

use super::node::Node;
use crate::failure::{BAD_INPUT, Failure, chain};

/// Names the public-keys file; unset turns the endpoint off.
pub(crate) const KEYS_FILE_VAR: &str = "API_KEYS_GITHUB_KEYS_FILE";
/// `revoke` or `record`.
pub(crate) const ACTION_VAR: &str = "API_KEYS_GITHUB_LEAK_ACTION";
/// How often the keys file is checked for a change.
pub(crate) const WATCH_EVERY: Duration = Duration::from_secs(2);

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
    let seen = Stamp::of(&path);
    let ring = KeyRing::from_source(CheckedKeyFile(path.clone()))
        .await
        .map_err(|e| Failure::new(BAD_INPUT, format!("{KEYS_FILE_VAR}: {}", chain(&e))))?;
    eprintln!(
        "keyctl: GitHub secret scanning at POST {PATH} ({} from {}; reported keys: {})",
        held(&ring.snapshot()),
        path.display(),
        if action == LeakAction::Revoke { "revoked" } else { "recorded only" }
    );
    tokio::spawn(reload_on_change(ring.clone(), path, seen));
    Ok(SecretScanning::new(Arc::new(node.manager()), ring).action(action).router())
}

/// `N public key(s)[, M retired]`.
fn held(keys: &PublicKeys) -> String {
    let retired = keys.len() - keys.current_len();
    match retired {
        0 => format!("{} public key(s)", keys.current_len()),
        n => format!("{} public key(s), {n} retired", keys.current_len()),
    }
}

/// GitHub's keys file, checked ([`crate::files::read_protected`]) every
/// time it is read.
struct CheckedKeyFile(PathBuf);

impl PublicKeySource for CheckedKeyFile {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async move {
            let path = self.0.clone();
            let read = tokio::task::spawn_blocking(move || crate::files::read_protected(&path))
                .await
                .map_err(|e| PublicKeysError::Fetch(Box::new(e)))?;
            let bytes = read.map_err(|e| match e {
                crate::files::FileError::Read { path, source } => PublicKeysError::Read { path, source },
                untrusted => PublicKeysError::Fetch(Box::new(untrusted)),
            })?;
            PublicKeys::from_json(&bytes)
        })
    }
}

/// What tells a changed keys file from the one last read: the file the
/// path leads to, its size, and its change times (`ctime` moves with the
/// owner and mode too). `None` while it cannot be seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(Option<(u64, u64, u64, i64, i64, i64, i64)>);

impl Stamp {
    fn of(path: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self(
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec())),
        )
    }
}

/// Re-reads the keys file into `ring` whenever its [`Stamp`] changes,
/// checking every [`WATCH_EVERY`]; a file that does not read is refused
/// with a warning and the last good set stays.
async fn reload_on_change(ring: KeyRing, path: PathBuf, mut seen: Stamp) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Stamp::of(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match ring.reload().await {
            Ok(keys) => {
                tracing::info!(keys = %held(&keys), "secret scanning: GitHub's public keys re-read after a change")
            }
            Err(e) => tracing::warn!(
                error = %chain(&e),
                "secret scanning: the changed GitHub public-keys file is refused; keeping the last good set"
            ),
        }
    }
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
