//! The management API in `keyctl serve`: the library's admin router at
//! `/iam/v1`, authenticated by static admin bearer tokens from
//! `API_KEYS_ADMIN_TOKEN` (comma-separated) or the file named by
//! `API_KEYS_ADMIN_TOKEN_FILE` (one token per line, or comma-separated; a
//! regular file, not a link, owned by the user running keyctl, mode 0600 or
//! stricter);
//! with neither, the management API is off. The router includes the web
//! console, so it is served at `/iam/v1/console` alongside.
//!
//! An admin token manages every key, so a guessable one is refused at
//! start: each must carry at least [`MIN_TOKEN_BITS`] bits by a
//! conservative estimate ([`estimated_bits`]: its length times the lesser
//! of the Shannon entropy of its characters and of the steps between
//! consecutive characters, so repeats and runs such as `abcdef…` count for
//! little). Generate one, e.g. `openssl rand -base64 32`.

use api_keys::admin::grpc::ApiEndpoints;
use api_keys::admin::{AdminApi, StaticTokens};
use api_keys::http::TrustedProxies;
use axum::Router;
use zeroize::Zeroizing;

use super::node::Node;
use crate::env::{self, ADMIN_TOKEN_FILE_VAR, ADMIN_TOKEN_VAR};
use crate::failure::{BAD_INPUT, Failure};

/// The least estimated entropy of an admin token, in bits.
pub(crate) const MIN_TOKEN_BITS: f64 = 128.0;

/// A conservative estimate of the entropy of `token`, in bits: its length
/// times the lesser of the Shannon entropy of its characters and that of
/// the differences between consecutive characters. A random token of `n`
/// characters from an alphabet of `k` comes out near `n·log2(min(n, k))`;
/// repeats (`aaaa`, `abab`) and runs (`0123…`, `abcd…`) near nothing.
pub(crate) fn estimated_bits(token: &str) -> f64 {
    let chars: Vec<u32> = token.chars().map(u32::from).collect();
    let steps: Vec<i64> = chars.windows(2).map(|w| i64::from(w[1]) - i64::from(w[0])).collect();
    #[allow(clippy::cast_precision_loss, reason = "token lengths are far below 2^52")]
    let n = chars.len() as f64;
    n * shannon(&chars).min(if steps.is_empty() { 0.0 } else { shannon(&steps) })
}

/// The Shannon entropy of `items`' distribution, in bits per item.
fn shannon<T: Ord>(items: &[T]) -> f64 {
    let mut counts = std::collections::BTreeMap::new();
    for item in items {
        *counts.entry(item).or_insert(0_u32) += 1;
    }
    #[allow(clippy::cast_precision_loss, reason = "token lengths are far below 2^52")]
    let total = items.len() as f64;
    counts
        .values()
        .map(|&c| {
            let p = f64::from(c) / total;
            -p * p.log2()
        })
        .sum()
}

/// What the page-token secret is derived from the pepper for: every node
/// with the same pepper reads the others' page tokens.
const PAGE_TOKENS: &[u8] = b"keyctl serve: management API page tokens";

/// The admin tokens configured, or `None` when the management API is off.
///
/// # Errors
/// [`BAD_INPUT`] when both variables are set, the file cannot be read or is
/// not trusted (it is read as the pepper file is: see
/// [`crate::files::read_secret`]), or a token is too weak (under 16
/// characters or not token68), or guessable (under [`MIN_TOKEN_BITS`]
/// by [`estimated_bits`]).
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
    parse_tokens(&text).map(Some)
}

/// The tokens of `text` (comma- or line-separated), each recorded in the
/// operations log under [`StaticTokens::token_id`] (a digest prefix, stable
/// whatever the token's place in the list).
fn parse_tokens(text: &str) -> Result<StaticTokens, Failure> {
    let mut tokens = StaticTokens::new();
    for (n, token) in text.split([',', '\n']).map(str::trim).filter(|t| !t.is_empty()).enumerate() {
        let bits = estimated_bits(token);
        if bits < MIN_TOKEN_BITS {
            return Err(Failure::new(
                BAD_INPUT,
                format!(
                    "admin token {}: too easy to guess (about {bits:.0} bits estimated; at least {MIN_TOKEN_BITS:.0} \
                     needed); generate one, e.g. `openssl rand -base64 32`",
                    n + 1
                ),
            ));
        }
        let name = StaticTokens::token_id(token);
        tokens =
            tokens.token(&name, token).map_err(|e| Failure::new(BAD_INPUT, format!("admin token {}: {e}", n + 1)))?;
    }
    if tokens.is_empty() {
        return Err(Failure::new(BAD_INPUT, "the admin token variable is set but holds no token"));
    }
    Ok(tokens)
}

/// Nests the management API at `/iam/v1` (and its operations at
/// `/operations/{operationId}`) when tokens are configured, answers gRPC
/// calls (by `content-type`) with its gRPC services advertising `public`
/// (`HOST:PORT`), and says at start which it is. Behind `trusted` proxies
/// the failed-authentication throttle counts the forwarded client. Without tokens, gRPC
/// calls get `UNIMPLEMENTED` saying so.
pub(crate) fn mount(
    router: Router,
    node: &Node,
    tokens: Option<StaticTokens>,
    trusted: Option<TrustedProxies>,
    public: &str,
) -> Router {
    match tokens {
        Some(tokens) => {
            eprintln!(
                "keyctl: management API at /iam/v1 ({} admin token(s)); console at /iam/v1/console; gRPC services \
                 advertised at {public}",
                tokens.len()
            );
            let mut api = AdminApi::new(node.manager(), tokens).page_token_secret(&node.derived_secret(PAGE_TOKENS));
            if let Some(trusted) = trusted {
                api = api.trusted_proxies(trusted);
            }
            let routers = api.shared();
            let rest =
                router.nest("/iam/v1", routers.iam()).merge(routers.operations()).merge(routers.resource_managers());
            crate::serve::grpc::route(rest, routers.grpc(ApiEndpoints::at(public)))
        }
        None => {
            eprintln!("keyctl: management API off (set {ADMIN_TOKEN_VAR} or {ADMIN_TOKEN_FILE_VAR} to enable it)");
            crate::serve::grpc::route(router, crate::serve::grpc::off())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guessable_tokens_estimate_low_and_random_ones_high() {
        for weak in [
            "aaaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "abababababababababababababababababababababababababababab",
            "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghij",
            "serve-admin-token-0123456789",
            "Password1Password1Password1Password1",
        ] {
            assert!(estimated_bits(weak) < MIN_TOKEN_BITS, "{weak}: {}", estimated_bits(weak));
        }
        // `openssl rand -base64 32` and `-hex 32` outputs.
        for strong in [
            "Yx3Jm0Hq9v1nZ8lKcR2tW5pQe7uB4sAaG6dFhN0oXiM=",
            "9f2c4e1a7b3d58e0c6f1a2b9d4e7c3f05a8b1d6e2f9c4a7b0e3d5f8a1c6b9e2d",
        ] {
            assert!(estimated_bits(strong) >= MIN_TOKEN_BITS, "{strong}: {}", estimated_bits(strong));
        }
        assert!(estimated_bits("").abs() < f64::EPSILON && estimated_bits("x").abs() < f64::EPSILON);
    }

    #[test]
    fn tokens_are_named_by_digest_whatever_their_order() {
        let a = "Yx3Jm0Hq9v1nZ8lKcR2tW5pQe7uB4sAaG6dFhN0oXiM=";
        let b = "9f2c4e1a7b3d58e0c6f1a2b9d4e7c3f05a8b1d6e2f9c4a7b0e3d5f8a1c6b9e2d";
        let one = format!("{:?}", parse_tokens(&format!("{a},{b}")).unwrap());
        let other = format!("{:?}", parse_tokens(&format!("{b}\n{a}\n")).unwrap());
        for name in [StaticTokens::token_id(a), StaticTokens::token_id(b)] {
            assert!(one.contains(&name) && other.contains(&name), "{one} / {other}");
        }
        assert!(!one.contains("admin-token-1"), "not the position in the list: {one}");
        assert!(!one.contains("Yx3Jm0Hq9v1n"), "never the token itself");
        assert!(parse_tokens(" , \n").is_err());
    }
}
