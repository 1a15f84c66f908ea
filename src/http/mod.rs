//! HTTP integration: a tower [`ApiKeyLayer`] for any tower stack (axum,
//! hyper, tonic), per-route scope guards ([`require_scope`]), a pluggable
//! [`BearerValidator`] for `Authorization: Bearer`, and, with the `axum`
//! feature, extractors for [`Principal`](crate::Principal) and [`Identity`].
//!
//! # What the layer does
//!
//! It reads the `Authorization` field lines with `HeaderMap::get_all` (two or
//! more are refused, never one silently picked), hands the raw bytes to the
//! [`Verifier`](crate::Verifier) (or a `Bearer` token to the validator),
//! checks the layer's required scope, removes the header so handlers cannot
//! log it, puts the [`Principal`](crate::Principal) (API key) or the
//! [`BearerIdentity`] (bearer token) into the request extensions
//! ([`Identity::from_extensions`] reads either), and calls the inner service. Its response body is [`AuthBody<B>`]: the inner body or a
//! rejection's, with no boxing, which `axum::Router::layer` accepts as is.
//!
//! # Rejections
//!
//! All refusals are rendered in one place from the error's
//! [`ClientClass`](crate::ClientClass):
//!
//! | class               | status | `WWW-Authenticate` (one field line per scheme)                   |
//! |---------------------|--------|------------------------------------------------------------------|
//! | `NoCredentials`     | 401    | `Api-Key realm="…"` (+ `Bearer realm="…"`), no `error=`          |
//! | `InvalidToken`      | 401    | `error="invalid_token"` on the scheme used                       |
//! | `InvalidRequest`    | 400    | `error="invalid_request"`                                        |
//! | `InsufficientScope` | 403    | `error="insufficient_scope", scope="…"` on the scheme used       |
//! | `Forbidden`         | 403    | none (key used from outside its IP allow-list)                   |
//! | `UsageExceeded`     | 429    | none (key's usage credits spent)                                 |
//! | `RateLimited`       | 429    | none; `Retry-After`, `RateLimit-Policy`, `RateLimit` instead     |
//! | `Unavailable`       | 503    | none; `Retry-After` instead (fail closed)                        |
//! | layer missing       | 500    | none                                                             |
//!
//! Bodies are RFC 9457 `application/problem+json` (`type`, `title`,
//! `status`, `detail`, plus `error` and `scope` where they apply), built
//! from the class alone: an unknown key, a wrong secret, an expired,
//! revoked, disabled, mistyped or malformed key get byte-identical answers. Every
//! rejection carries `Cache-Control: no-store`. The real reason goes to
//! `tracing` (key id at most, never the secret or the header): `debug` for
//! requests without credentials, `info` for refused credentials, `warn` when
//! the store is unavailable, `error` for a route missing the layer.
//!
//! Layer order matters: anything that must answer unauthenticated requests
//! (a CORS layer answering preflight `OPTIONS`, a health check) goes outside
//! the `ApiKeyLayer` (in axum: added with `.layer` after it, or routed on a
//! router it does not wrap). Request tracing outside it sees the
//! `Authorization` header: mark it sensitive there (tower-http's
//! `SetSensitiveRequestHeadersLayer`); inside it the header is already gone.
//!
//! # With tower alone
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use api_keys::http::ApiKeyLayer;
//! use api_keys::{CreateRequest, KeyManager, MemoryStore, Pepper, Peppers, Principal, ScopeCatalog};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let manager = KeyManager::builder(
//!     Arc::new(MemoryStore::new()),
//!     Peppers::single(Pepper::generate(1)?),
//!     ScopeCatalog::builder().scope("yc.monitoring.read", "Viewing monitoring data").build()?,
//! )
//! .build();
//! let key = manager.create(CreateRequest::new("my-robot")).await?;
//!
//! let service = ServiceBuilder::new().layer(ApiKeyLayer::new(manager.verifier().build())).service_fn(
//!     |req: Request<String>| async move {
//!         let who = req.extensions().get::<Principal>().map(|p| p.service_account_id().to_string());
//!         assert!(req.headers().get("authorization").is_none()); // stripped
//!         Ok::<_, Infallible>(Response::new(who.unwrap_or_default()))
//!     },
//! );
//! let req = Request::builder()
//!     .header("authorization", format!("Api-Key {}", key.secret.expose_secret()))
//!     .body(String::new())?;
//! let res = service.clone().oneshot(req).await?;
//! assert_eq!(res.status(), 200);
//!
//! let res = service.oneshot(Request::new(String::new())).await?;
//! assert_eq!(res.status(), 401);
//! assert_eq!(res.headers()["www-authenticate"], "Api-Key realm=\"api\"");
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
#![cfg_attr(
    feature = "axum",
    doc = r#"
# With axum

```no_run
use std::sync::Arc;
use api_keys::http::{ApiKeyLayer, require_scope};
use api_keys::{CreateRequest, KeyManager, MemoryStore, Pepper, Peppers, Principal, ScopeCatalog};
use axum::{Router, routing::get};

async fn whoami(key: Principal) -> String {
    format!("{} via key {}", key.service_account_id(), key.key_id())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let catalog = ScopeCatalog::builder().scope("yc.monitoring.manage", "").scope("yc.monitoring.read", "").build()?;
    let peppers = Peppers::single(Pepper::generate(1)?); // in production: from your secret store
    let keys = KeyManager::builder(Arc::new(MemoryStore::new()), peppers, catalog.clone()).build();
    let demo = keys.create(CreateRequest::new("my-robot").scopes(["yc.monitoring.manage"])).await?;
    eprintln!("Authorization: Api-Key {}", demo.secret.expose_secret());

    let app = Router::new()
        .route("/whoami", get(whoami))
        .route("/metrics", get(whoami).route_layer(require_scope(&catalog, "yc.monitoring.read")?))
        .layer(ApiKeyLayer::new(keys.verifier().build()));
    axum::serve(tokio::net::TcpListener::bind("127.0.0.1:3000").await?, app).await?;
    Ok(())
}
```

`route_layer` puts the scope guard inside the authenticating layer, so one
router can demand a different scope on each route; the catalog's
implications apply (`yc.monitoring.manage` passes a guard for
`yc.monitoring.read`).
"#
)]

mod bearer;
mod client_ip;
#[cfg(feature = "axum")]
mod extract;
mod grpc;
mod identity;
mod layer;
mod rejection;
mod scope;

pub use bearer::{BearerError, BearerIdentity, BearerToken, BearerValidator, NoBearer};
pub use client_ip::{ForwardedHeader, TrustedProxies, peer_addr};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::Rejection;
pub use identity::Identity;
pub use layer::{ApiKeyLayer, ApiKeyService, AuthBody, Cost};
pub use rejection::{AuthError, MAX_REALM_LEN, RealmError};
pub use scope::{RequireScopeLayer, RequireScopeService, require_scope};
