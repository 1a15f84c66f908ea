//! `keyctl serve`: the key service. One process verifies keys for reverse
//! proxies and applications over the store the other commands manage.
//!
//! | route | answers |
//! |---|---|
//! | `/v1/authorize` (any method) | forward auth: 200 with `X-Api-Key-Id`, `X-Service-Account-Id`, `X-Api-Key-Scopes`; otherwise the tower layer's own 401/403/400/429/503 |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 when the store answers, else 503; one store check a second at most ([`ready`]) |
//! | `GET /metrics` | Prometheus text format; with `--metrics-listen ADDR` only on that address ([`metrics`]) |
//! | `POST /v1/secret-scanning/github` | GitHub's secret-scanning reports, when `API_KEYS_GITHUB_KEYS_FILE` is set ([`github`]) |
//! | `/iam/v1/…` | the management API (`api_keys::admin`), when admin tokens are configured (see [`admin`]) |
//! | `GET /iam/v1/console` | the management console (`api_keys::admin::console`), with the management API |
//! | `GET /operations/{operationId}` | an operation by id (the cloud's `OperationService` over REST), with the management API |
//! | gRPC (`content-type: application/grpc`) | `ApiKeyService`, `OperationService`, `ApiEndpointService` (`api_keys::admin::grpc`), with the management API; see [`grpc`] |
//!
//! The request path reads like the library's verify path: [`scope`] parses
//! the required scope (`?scope=` or `X-Required-Scope`) → the library's
//! `ApiKeyLayer` verifies `Authorization` and renders every refusal → the
//! library's scope guard checks the scope → [`authorize`] renders the
//! grant.
//!
//! Each grant spends one credit of a key with usage credits, and counts
//! against the key's rate limits: **per node** (in this process's memory),
//! or shared by all nodes in Redis when the store is Redis or
//! `--rate-limit-redis URL` (`API_KEYS_RATE_LIMIT_REDIS`) is given.
//! The client address for keys with an IP allow-list is the connection's
//! peer, or, from `--trusted-proxy` ranges, their forwarding header
//! ([`proxy`]).
//!
//! For PostgreSQL and Redis the verifier reads through a `CachedStore` that
//! listens on the store's invalidation channel (see [`node`]); SQLite is read
//! directly, since other processes write the same file without a channel.

mod admin;
mod durability;
mod github;
pub(crate) mod grpc;
pub(crate) mod listener;
mod metered;
mod metrics;
mod node;
mod options;
mod proxy;
mod ready;
mod scope;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use api_keys::http::{ApiKeyLayer, RequireScopeLayer};
use api_keys::{KeyStore, Principal, RequiredScope, Verifier};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};

use crate::failure::{BAD_INPUT, Failure, OTHER};
pub(crate) use listener::{ListenerArgs, Listening};
pub(crate) use node::{CacheSettings, Node};
pub(crate) use options::ServeOptions;
pub(crate) use proxy::Proxies;

/// How often pending last-used times are written to the store.
const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// How often a node re-reads the access policies' maximum lifetimes (one
/// store read of the resource head when nothing changed): a policy bound
/// on any node applies on every node within a second.
const LIFETIMES_EVERY: Duration = Duration::from_millis(250);
/// How often a node prunes the store's change feed.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// How long `/readyz` waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long shutdown waits for in-flight requests before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The listen address: `--listen`, else `API_KEYS_LISTEN`, else
/// [`crate::env::DEFAULT_LISTEN`].
///
/// # Errors
/// A [`BAD_INPUT`] failure naming the text when it is not `IP:PORT`.
pub(crate) fn listen_address(flag: Option<String>) -> Result<SocketAddr, Failure> {
    let (text, from) = match flag {
        Some(t) => (t, "--listen"),
        None => match crate::env::var(crate::env::LISTEN_VAR) {
            Some(t) => (t, crate::env::LISTEN_VAR),
            None => (crate::env::DEFAULT_LISTEN.to_owned(), "the default"),
        },
    };
    text.trim().parse().map_err(|_| {
        let shown: String = text.chars().take(64).collect();
        Failure::new(
            BAD_INPUT,
            format!("{from}: `{shown}` is not a listen address; expected IP:PORT, e.g. 127.0.0.1:8080"),
        )
    })
}

/// What the handlers share.
struct App<S> {
    verifier: Arc<Verifier<S>>,
    node: Arc<Node>,
    metrics: metrics::Metrics,
    /// `/readyz`'s single-flight store check.
    readiness: ready::Readiness,
}

/// Serves `node` on `addr` until SIGINT or SIGTERM, then drains and writes
/// pending last-used times.
///
/// # Errors
/// [`OTHER`] when the address cannot be bound or the server fails;
/// [`BAD_INPUT`] for bad `options` or a Redis store refused by
/// [`durability::check`].
pub(crate) async fn run(
    node: Node,
    addr: SocketAddr,
    proxies: Proxies,
    limits: Option<String>,
    options: ServeOptions,
    listening: Listening,
) -> Result<(), Failure> {
    let metrics_apart = options.metrics_address()?;
    durability::check(node.redis_store(), options.require_durable_redis()?).await?;
    let admin_tokens = admin::tokens()?;
    let metrics = metrics::Metrics::install(&node)?;
    let limiter = match limits {
        Some(url) => Some(shared_limiter(&url).await?),
        None => None,
    };
    let node = Arc::new(node);
    let verifier = Arc::new(node.verifier(limiter));
    let readiness = ready::Readiness::new()?;
    let app = Arc::new(App { verifier: Arc::clone(&verifier), node: Arc::clone(&node), metrics, readiness });
    let router = router(Arc::clone(&app), node.catalog(), &proxies, metrics_apart.is_none())
        .merge(github::endpoint(&node).await?);

    let metrics_server = match metrics_apart {
        Some(at) => Some(metrics::serve_apart(at, Arc::clone(&app)).await?),
        None => None,
    };
    let listener =
        TcpListener::bind(addr).await.map_err(|e| Failure::new(OTHER, format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().map_err(|e| Failure::new(OTHER, format!("cannot listen on {addr}: {e}")))?;
    let router = admin::mount(router, &node, admin_tokens, proxies.trusted(), &listening.public_address(local));
    // Before saying it listens: the shutdown signal is watched from the
    // line that says so on.
    if let Err(e) = node.refresh_lifetimes().await {
        tracing::warn!(error = %crate::failure::chain(&e), "could not read the access policies' maximum lifetimes; will retry");
    }
    let scheme = if listening.is_tls() { "TLS" } else { "plaintext" };
    eprintln!("keyctl: listening on {local} ({}; {scheme})", node.describe());
    eprintln!("keyctl: public address {}", listening.public_address(local));

    let lifetimes = tokio::spawn(refresh_lifetimes_periodically(Arc::clone(&node)));
    let flusher = tokio::spawn(flush_periodically(Arc::clone(&verifier)));
    let pruner = tokio::spawn(prune_periodically(Arc::clone(&node)));
    let served = listener::serve(listener, router, listening, shutdown_signal(), DRAIN_TIMEOUT).await;
    flusher.abort();
    pruner.abort();
    lifetimes.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    let flushed = verifier.flush_last_used().await;
    match (&served, flushed) {
        (_, Ok(n)) => eprintln!("keyctl: stopped; wrote {n} last-used time(s)"),
        (_, Err(e)) => eprintln!("keyctl: stopped; last-used times not written: {}", crate::failure::chain(&e)),
    }
    served
}

/// Where rate limits are counted: `--rate-limit-redis URL`, else
/// `API_KEYS_RATE_LIMIT_REDIS`, else the store itself when it is Redis;
/// `None`: in this process (per node).
pub(crate) fn rate_limit_store(flag: Option<String>, store_url: &str) -> Option<String> {
    flag.or_else(|| crate::env::var(RATE_LIMIT_REDIS_VAR)).or_else(|| {
        (store_url.starts_with("redis://") || store_url.starts_with("rediss://")).then(|| store_url.to_owned())
    })
}

/// The variable naming a Redis for rate limits shared by all nodes.
pub(crate) const RATE_LIMIT_REDIS_VAR: &str = "API_KEYS_RATE_LIMIT_REDIS";

/// Prefix of the rate-limit state keys in Redis.
const RATE_LIMIT_PREFIX: &str = "api-keys";

/// The Redis rate limiter at `url`.
///
/// # Errors
/// [`crate::failure::UNAVAILABLE`] when Redis cannot be reached.
async fn shared_limiter(url: &str) -> Result<api_keys::controls::RedisRateLimiter, Failure> {
    let connecting = api_keys::controls::RedisRateLimiter::connect(url, RATE_LIMIT_PREFIX);
    match tokio::time::timeout(READY_TIMEOUT * 5, connecting).await {
        Ok(Ok(l)) => Ok(l),
        Ok(Err(e)) => {
            Err(Failure::new(crate::failure::UNAVAILABLE, format!("rate-limit Redis: {}", crate::failure::chain(&e))))
        }
        Err(_) => Err(Failure::new(crate::failure::UNAVAILABLE, "rate-limit Redis did not answer in time")),
    }
}

/// Prunes the store's change feed every [`PRUNE_EVERY`] (the first time
/// after one period, so a fleet's start does not prune at once).
async fn prune_periodically(node: Arc<Node>) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + PRUNE_EVERY, PRUNE_EVERY);
    loop {
        tick.tick().await;
        match node.prune_feed().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(entries = n, "pruned the change feed"),
            Err(e) => tracing::warn!(error = %crate::failure::chain(&e), "could not prune the change feed; will retry"),
        }
    }
}

/// Re-reads the maximum-lifetime policies every [`LIFETIMES_EVERY`]; a
/// failure is logged once (and the recovery), the limits held stay in force.
async fn refresh_lifetimes_periodically(node: Arc<Node>) {
    let mut tick = tokio::time::interval(LIFETIMES_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        match node.refresh_lifetimes().await {
            Ok(read) => {
                if failing {
                    tracing::info!("reading the access policies' maximum lifetimes again");
                    failing = false;
                }
                if read {
                    tracing::debug!(accounts = node.lifetime_limited_accounts(), "maximum lifetimes read");
                }
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(
                    error = %crate::failure::chain(&e),
                    "could not read the access policies' maximum lifetimes; the ones held stay in force; will retry"
                );
            }
            Err(_) => {}
        }
    }
}

async fn flush_periodically<S: KeyStore>(verifier: Arc<Verifier<S>>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tick.tick().await;
        if let Err(e) = verifier.flush_last_used().await {
            tracing::warn!(error = %crate::failure::chain(&e), "could not write last-used times; will retry");
        }
    }
}

/// The routes: forward auth behind the library's layer, and the operator
/// endpoints outside it (`/metrics` only `with_metrics`).
fn router<S: KeyStore>(
    app: Arc<App<S>>,
    catalog: &api_keys::ScopeCatalog,
    proxies: &Proxies,
    with_metrics: bool,
) -> Router {
    let mut layer = ApiKeyLayer::new(Arc::clone(&app.verifier));
    if let Some(header) = proxies.header {
        layer = layer.trusted_proxies(proxies.ranges.iter().copied(), header);
    }
    let authorize = Router::new()
        .route("/v1/authorize", any(authorize))
        .layer(layer)
        .layer(axum::middleware::from_fn_with_state(Arc::new(catalog.clone()), scope::required_scope));
    let mut operator = Router::new().route("/healthz", get(healthz)).route("/readyz", get(ready::readyz::<S>));
    if with_metrics {
        operator = operator.route("/metrics", get(metrics_text::<S>));
    }
    operator
        .with_state(Arc::clone(&app))
        .merge(authorize)
        .layer(axum::middleware::from_fn_with_state(app, metrics::observe::<S>))
}

/// Behind the layer: the key is valid. Checks the required scope with the
/// library's scope guard (so a 403 is rendered as the layer renders it) and
/// answers 200 with the key's identity headers.
async fn authorize(req: Request) -> Response {
    match req.extensions().get::<RequiredScope>().cloned() {
        None => granted(&req),
        Some(required) => {
            let ok = tower::service_fn(|req: Request| async move { Ok::<_, Infallible>(granted(&req)) });
            match RequireScopeLayer::new(required).layer(ok).oneshot(req).await {
                Ok(response) => response.map(Body::new),
                Err(never) => match never {},
            }
        }
    }
}

/// 200 with the principal's id, service account and scopes.
fn granted(req: &Request) -> Response {
    let Some(p) = req.extensions().get::<Principal>() else {
        // The layer always inserts the principal before calling us.
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let scopes: Vec<&str> = p.scopes().iter().map(api_keys::Scope::as_str).collect();
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    // Key ids, service account ids and scope names are visible ASCII by
    // construction; a failure here would be a bug, answered with 500.
    let values = [
        HeaderValue::from_str(p.key_id().as_str()),
        HeaderValue::from_str(p.service_account_id().as_str()),
        HeaderValue::from_str(&scopes.join(",")),
    ];
    let [Ok(id), Ok(account), Ok(scopes)] = values else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    headers.insert("x-api-key-id", id);
    headers.insert("x-service-account-id", account);
    headers.insert("x-api-key-scopes", scopes);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics_text<S: KeyStore>(State(app): State<Arc<App<S>>>) -> Response {
    let text = app.metrics.render(&app.node);
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    eprintln!("keyctl: shutting down: draining requests");
}
