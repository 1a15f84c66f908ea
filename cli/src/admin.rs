//! The management API in `keyctl serve`: the library's admin router at
//! `/iam/v1`, authenticated by static admin bearer tokens from
//! `API_KEYS_ADMIN_TOKEN` (comma-separated) or the file named by
//! `API_KEYS_ADMIN_TOKEN_FILE` (one token per line, or comma-separated);
//! with neither, the management API is off. The router includes the web
//! console, so it is served at `/iam/v1/console` alongside.

use api_keys::admin::{AdminApi, StaticTokens};
use axum::Router;
use zeroize::Zeroizing;

use crate::env::{self, ADMIN_TOKEN_FILE_VAR, ADMIN_TOKEN_VAR};
use crate::serve::Node;
use crate::{BAD_INPUT, Failure};

/// What the page-token secret is derived from the pepper for: every node
/// with the same pepper reads the others' page tokens.
const PAGE_TOKENS: &[u8] = b"keyctl serve: management API page tokens";

/// The admin tokens configured, or `None` when the management API is off.
///
/// # Errors
/// [`BAD_INPUT`] when both variables are set, the file cannot be read, or
/// a token is too weak (under 16 characters or not token68).
pub(crate) fn tokens() -> Result<Option<StaticTokens>, Failure> {
    let text = match (env::var(ADMIN_TOKEN_VAR), env::var(ADMIN_TOKEN_FILE_VAR)) {
        (Some(_), Some(_)) => {
            return Err(Failure::new(BAD_INPUT, format!("set {ADMIN_TOKEN_VAR} or {ADMIN_TOKEN_FILE_VAR}, not both")));
        }
        (Some(t), None) => Zeroizing::new(t),
        (None, Some(path)) => Zeroizing::new(
            std::fs::read_to_string(path.trim())
                .map_err(|e| Failure::new(BAD_INPUT, format!("{ADMIN_TOKEN_FILE_VAR}: cannot read {path}: {e}")))?,
        ),
        (None, None) => return Ok(None),
    };
    parse_tokens(&text).map(Some)
}

/// The tokens of `text` (comma- or line-separated), each recorded in the
/// operations log under [`StaticTokens::token_id`] (a digest prefix, stable
/// whatever the token's place in the list).
fn parse_tokens(text: &str) -> Result<StaticTokens, Failure> {
    let mut tokens = StaticTokens::new();
    for (n, token) in text.split([',', '\n']).map(str::trim).filter(|t| !t.is_empty()).enumerate() {
        let name = StaticTokens::token_id(token);
        tokens =
            tokens.token(&name, token).map_err(|e| Failure::new(BAD_INPUT, format!("admin token {}: {e}", n + 1)))?;
    }
    if tokens.is_empty() {
        return Err(Failure::new(BAD_INPUT, "the admin token variable is set but holds no token"));
    }
    Ok(tokens)
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
            let api = AdminApi::new(node.manager(), tokens).page_token_secret(&node.derived_secret(PAGE_TOKENS));
            router.nest("/iam/v1", api.router())
        }
        None => {
            eprintln!("keyctl: management API off (set {ADMIN_TOKEN_VAR} or {ADMIN_TOKEN_FILE_VAR} to enable it)");
            router
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_named_by_digest_whatever_their_order() {
        let a = "first-admin-token-0123456789";
        let b = "second-admin-token-0123456789";
        let one = format!("{:?}", parse_tokens(&format!("{a},{b}")).unwrap());
        let other = format!("{:?}", parse_tokens(&format!("{b}\n{a}\n")).unwrap());
        for name in [StaticTokens::token_id(a), StaticTokens::token_id(b)] {
            assert!(one.contains(&name) && other.contains(&name), "{one} / {other}");
        }
        assert!(!one.contains("admin-token-1"), "not the position in the list: {one}");
        assert!(!one.contains("0123456789"), "never the token itself");
        assert!(parse_tokens(" , \n").is_err());
    }
}
