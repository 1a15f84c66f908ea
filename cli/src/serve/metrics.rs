//! `/metrics`: Prometheus text through the `metrics` facade and
//! `metrics-exporter-prometheus` (nothing hand-formatted). Served on the
//! main listener, or with `--metrics-listen ADDR` only on a listener of its
//! own ([`serve_apart`]), e.g. on loopback for a local scraper.
//!
//! | metric | kind | meaning |
//! |---|---|---|
//! | `keyctl_authorize_requests_total{outcome}` | counter | `/v1/authorize` answers by class: `ok`, `bad_request`, `unauthenticated`, `forbidden`, `too_many_requests` (429: a rate limit or the usage credits), `unavailable`, `other` |
//! | `keyctl_authorize_seconds` | histogram | time to answer `/v1/authorize` (verification included) |
//! | `keyctl_key_lookups_total` | counter | lookups the verifier made |
//! | `keyctl_store_queries_total` | counter | lookups that reached the store |
//! | `keyctl_cache_hits_total` / `keyctl_cache_misses_total` | counter | lookups answered from memory / by the store (their ratio is the hit ratio) |
//! | `keyctl_cache_entries` | gauge | entries in the record cache (at most `API_KEYS_CACHE_MAX_ENTRIES`, default 100,000) |
//! | `keyctl_invalidations_received_total` | counter | key ids received on the invalidation channel |
//! | `keyctl_invalidation_connected` | gauge | 1 while the channel's subscription is up |
//! | `keyctl_shield_refused_total` | counter | lookups of ids that do not exist, refused by the flood shield without a store query |
//! | `keyctl_shield_trusted` | gauge | 1 while the flood shield refuses unknown ids (0: every lookup asks the store) |
//! | `keyctl_shield_ids` | gauge | ids in the shield's membership set |
//! | `keyctl_shield_bytes` | gauge | heap bytes of that set (about 8 per id) |
//! | `keyctl_lifetime_limited_accounts` | gauge | service accounts with a maximum key lifetime (an `iam.apiKeys.maxLifetime` access policy on their path), as this node applies them |
//! | `keyctl_readyz_requests_total` | counter | `/readyz` probes answered |
//! | `keyctl_readiness_checks_total{result}` | counter | store checks those probes caused (at most one a second): `ready`, `unavailable`, `timeout` |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_keys::KeyStore;
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::{App, Node};
use crate::failure::{Failure, OTHER};

/// Bucket bounds of `keyctl_authorize_seconds`: 50 µs to 1 s.
const BUCKETS: [f64; 12] = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.25, 1.0];

/// How often the recorder folds recorded histogram samples into its
/// buckets. Without it the samples pile up until a scrape (memory grows with
/// every request when nobody scrapes `/metrics`). Every second keeps what is
/// pending small (a second of samples) at any request rate.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// The installed recorder.
pub(crate) struct Metrics {
    handle: PrometheusHandle,
    /// The task running the recorder's upkeep; stopped with the metrics.
    upkeep: tokio::task::JoinHandle<()>,
}

impl Drop for Metrics {
    fn drop(&mut self) {
        self.upkeep.abort();
    }
}

/// Runs the recorder's upkeep every [`UPKEEP_EVERY`], scraped or not.
async fn run_upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

impl Metrics {
    /// Installs the process-wide Prometheus recorder, starts its upkeep on
    /// the current runtime and describes the metrics.
    ///
    /// # Errors
    /// [`OTHER`] if a recorder is already installed (never, in keyctl).
    pub(crate) fn install(_node: &Node) -> Result<Self, Failure> {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full("keyctl_authorize_seconds".to_owned()), &BUCKETS)
            .and_then(PrometheusBuilder::install_recorder)
            .map_err(|e| Failure::new(OTHER, format!("cannot set up metrics: {e}")))?;
        metrics::describe_counter!("keyctl_authorize_requests_total", "/v1/authorize answers by outcome class");
        metrics::describe_histogram!(
            "keyctl_authorize_seconds",
            metrics::Unit::Seconds,
            "time to answer /v1/authorize"
        );
        metrics::describe_counter!("keyctl_key_lookups_total", "key lookups made by the verifier");
        metrics::describe_counter!("keyctl_store_queries_total", "key lookups that reached the store");
        metrics::describe_counter!("keyctl_cache_hits_total", "key lookups answered from the cache");
        metrics::describe_counter!("keyctl_cache_misses_total", "key lookups the cache passed to the store");
        metrics::describe_counter!(
            "keyctl_invalidations_received_total",
            "key ids received on the invalidation channel"
        );
        metrics::describe_gauge!("keyctl_invalidation_connected", "1 while the invalidation subscription is up");
        metrics::describe_counter!(
            "keyctl_shield_refused_total",
            "unknown ids refused by the flood shield without a query"
        );
        metrics::describe_gauge!("keyctl_shield_trusted", "1 while the flood shield refuses unknown ids");
        metrics::describe_gauge!("keyctl_shield_ids", "ids in the flood shield's membership set");
        metrics::describe_gauge!("keyctl_shield_bytes", "heap bytes of the flood shield's membership set");
        metrics::describe_gauge!("keyctl_cache_entries", "entries in the record cache");
        metrics::describe_gauge!(
            "keyctl_lifetime_limited_accounts",
            "service accounts with a maximum key lifetime, as this node applies them"
        );
        metrics::describe_counter!("keyctl_readyz_requests_total", "/readyz probes answered");
        metrics::describe_counter!("keyctl_readiness_checks_total", "store checks made for /readyz, by result");
        let upkeep = tokio::spawn(run_upkeep(handle.clone()));
        Ok(Self { handle, upkeep })
    }

    /// The text exposition, with the store-side counters brought up to date.
    pub(crate) fn render(&self, node: &Node) -> String {
        let c = node.counters();
        metrics::counter!("keyctl_key_lookups_total").absolute(c.lookups);
        metrics::counter!("keyctl_store_queries_total").absolute(c.store_queries);
        let shield = node.shield();
        let answered_in_memory = c.lookups.saturating_sub(c.store_queries).saturating_sub(shield.refused);
        metrics::counter!("keyctl_cache_hits_total").absolute(answered_in_memory);
        metrics::counter!("keyctl_cache_misses_total").absolute(c.store_queries);
        metrics::counter!("keyctl_invalidations_received_total").absolute(c.invalidations_received);
        metrics::gauge!("keyctl_invalidation_connected").set(if c.channel_connected { 1.0 } else { 0.0 });
        metrics::counter!("keyctl_shield_refused_total").absolute(shield.refused);
        metrics::gauge!("keyctl_shield_trusted").set(if shield.trusted { 1.0 } else { 0.0 });
        #[allow(clippy::cast_precision_loss, reason = "a gauge; exact below 2^53 ids")]
        metrics::gauge!("keyctl_shield_ids").set(shield.ids as f64);
        #[allow(clippy::cast_precision_loss, reason = "a gauge; exact below 2^53 bytes")]
        metrics::gauge!("keyctl_shield_bytes").set(shield.bytes as f64);
        #[allow(clippy::cast_precision_loss, reason = "a gauge; exact below 2^53 entries")]
        metrics::gauge!("keyctl_cache_entries").set(c.cache_entries as f64);
        #[allow(clippy::cast_precision_loss, reason = "a gauge; exact below 2^53 accounts")]
        metrics::gauge!("keyctl_lifetime_limited_accounts").set(node.lifetime_limited_accounts() as f64);
        self.handle.render()
    }
}

/// Binds `addr` and serves `/metrics` alone there (until the task is
/// aborted), saying where on stderr.
///
/// # Errors
/// [`OTHER`] when the address cannot be bound.
pub(crate) async fn serve_apart<S: KeyStore>(
    addr: SocketAddr,
    app: Arc<App<S>>,
) -> Result<tokio::task::JoinHandle<()>, Failure> {
    let cannot = |e: std::io::Error| Failure::new(OTHER, format!("cannot listen on {addr} (--metrics-listen): {e}"));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(cannot)?;
    let local = listener.local_addr().map_err(cannot)?;
    eprintln!("keyctl: metrics at http://{local}/metrics (not on the main listener)");
    let router = Router::new().route("/metrics", axum::routing::get(super::metrics_text::<S>)).with_state(app);
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "the metrics listener failed");
        }
    }))
}

/// Counts `/v1/authorize` answers by class and times them.
pub(crate) async fn observe<S: KeyStore>(State(_app): State<Arc<App<S>>>, req: Request, next: Next) -> Response {
    if req.uri().path() != "/v1/authorize" {
        return next.run(req).await;
    }
    let started = Instant::now();
    let response = next.run(req).await;
    metrics::histogram!("keyctl_authorize_seconds").record(started.elapsed().as_secs_f64());
    let outcome = match response.status().as_u16() {
        200 => "ok",
        400 => "bad_request",
        401 => "unauthenticated",
        403 => "forbidden",
        429 => "too_many_requests",
        503 => "unavailable",
        _ => "other",
    };
    metrics::counter!("keyctl_authorize_requests_total", "outcome" => outcome).increment(1);
    response
}
