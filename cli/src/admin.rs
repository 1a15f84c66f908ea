//! The management API in `keyctl serve`: the library's admin router at
//! `/iam/v1`, authenticated by static admin bearer tokens from
//! `API_KEYS_ADMIN_TOKEN` (comma-separated) or the file named by
//! `API_KEYS_ADMIN_TOKEN_FILE` (one token per line, or comma-separated; a
//! regular file, not a link, owned by the user running keyctl, mode 0600 or
//! stricter);
//! with neither, the management API is off. The router includes the web
//! console, so it is served at `/iam/v1/console` alongside.

use api_keys::admin::{AdminApi, StaticTokens};
use axum::Router;
use zeroize::Zeroizing;

use crate::env::{self, ADMIN_TOKEN_FILE_VAR, ADMIN_TOKEN_VAR};
use crate::serve::Node;
use crate::{BAD_INPUT, Failure};

/// The admin tokens configured, or `None` when the management API is off.
///
/// # Errors
/// [`BAD_INPUT`] when both variables are set, the file cannot be read or is
/// not trusted (it is read as the pepper file is: see
/// [`crate::files::read_secret`]), or a token is too weak (under 16
/// characters or not token68).
pub(crate) fn tokens() -> Result<Option<StaticTokens>, Failure> {
    let text = match (env::var(ADMIN_TOKEN_VAR), env::var(ADMIN_TOKEN_FILE_VAR)) {
        (Some(_), Some(_)) => {
            return Err(Failure::new(BAD_INPUT, format!("set {ADMIN_TOKEN_VAR} or {ADMIN_TOKEN_FILE_VAR}, not both")));
        }
        (Some(t), None) => Zeroizing::new(t),
        (None, Some(path)) => crate::files::read_secret(std::path::Path::new(path.trim()))
            .map_err(|e| Failure::new(BAD_INPUT, format!("{ADMIN_TOKEN_FILE_VAR}: {e}")))?,
        (None, None) => return Ok(None),
    };
    let mut tokens = StaticTokens::new();
    for (n, token) in text.split([',', '\n']).map(str::trim).filter(|t| !t.is_empty()).enumerate() {
        let name = format!("admin-token-{}", n + 1);
        tokens =
            tokens.token(&name, token).map_err(|e| Failure::new(BAD_INPUT, format!("admin token {}: {e}", n + 1)))?;
    }
    if tokens.is_empty() {
        return Err(Failure::new(BAD_INPUT, "the admin token variable is set but holds no token"));
    }
    Ok(Some(tokens))
}

/// Nests the management API at `/iam/v1` when tokens are configured, and
/// says at start which it is.
pub(crate) fn mount(router: Router, node: &Node, tokens: Option<StaticTokens>) -> Router {
    match tokens {
        Some(tokens) => {
            eprintln!(
                "keyctl: management API at /iam/v1 ({} admin token(s)); console at /iam/v1/console",
                tokens.len()
            );
            router.nest("/iam/v1", AdminApi::new(node.manager(), tokens).router())
        }
        None => {
            eprintln!("keyctl: management API off (set {ADMIN_TOKEN_VAR} or {ADMIN_TOKEN_FILE_VAR} to enable it)");
            router
        }
    }
}
