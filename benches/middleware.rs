//! What the HTTP layer costs on top of the core verify.
//!
//! ```text
//! cargo bench --features axum --bench middleware
//! ```
//!
//! Group `middleware`, over the same 1,000-key memory store as
//! `benches/verify.rs` (`common::fixture`), a random key per iteration:
//!
//! - `core_header_to_principal_1k`: `Verifier::verify` with the scope check,
//!   as `verify/header_to_principal_1k` measures it, for comparison in the
//!   same run;
//! - `tower_without_layer` / `tower_with_layer_1k`: a bare tower
//!   `service_fn` without and with `ApiKeyLayer` (requiring the same scope):
//!   the difference is what the layer adds, verify included;
//! - `axum_without_layer` / `axum_with_layer_1k`: an in-process axum router,
//!   the handler extracting the `Principal` in the second;
//!   `axum_noop_layer` is the same router behind a do-nothing layer, which
//!   shows what `Router::layer` itself costs;
//! - `axum_with_layer_reject_unknown`: an unknown key through the layer (the
//!   401 problem+json rendering path).
//!
//! Target: the layer adds at most twice the core's time
//! (`with − without ≤ 2 × core_header_to_principal_1k`). Requests are built
//! outside the timed region; each is sent with `tower::ServiceExt::oneshot`
//! and polled once (the memory store, the layer and the handlers never
//! wait).

mod common;

use std::convert::Infallible;
use std::hint::black_box;

use api_keys::Principal;
use api_keys::http::ApiKeyLayer;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header::AUTHORIZATION};
use axum::routing::get;
use common::{Fixture, XorShift, configure, fixture, header_for, ready, unknown_key};
use criterion::{BatchSize, Criterion};
use tower::{Layer, ServiceExt};

fn request(header: &[u8]) -> Request<Body> {
    let mut req = Request::new(Body::empty());
    *req.uri_mut() = axum::http::Uri::from_static("/v1/whoami");
    match HeaderValue::from_bytes(header) {
        Ok(v) => req.headers_mut().insert(AUTHORIZATION, v),
        Err(e) => panic!("header: {e}"),
    };
    req
}

fn status(router: &Router, header: &[u8]) -> StatusCode {
    match ready(router.clone().oneshot(request(header))) {
        Ok(res) => res.status(),
        Err(e) => match e {},
    }
}

async fn plain() -> &'static str {
    "ok"
}

async fn authenticated(principal: Principal) -> &'static str {
    black_box(principal);
    "ok"
}

/// Sends a random fixture key per iteration through `router`.
fn bench_router(c: &mut Criterion, id: &str, router: &Router, f: &Fixture) {
    let mut g = c.benchmark_group("middleware");
    configure(&mut g);
    let n = f.headers.len();
    g.bench_function(id, |b| {
        let mut rng = XorShift::new(0x5EED);
        b.iter_batched(
            || request(&f.headers[rng.below(n)]),
            |req| ready(router.clone().oneshot(black_box(req))),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn middleware(c: &mut Criterion) {
    let f = fixture(1_000);
    let without = Router::new().route("/v1/whoami", get(plain));
    let with = Router::new()
        .route("/v1/whoami", get(authenticated))
        .layer(ApiKeyLayer::new(f.verifier.clone()).require_scope(f.need.clone()));
    assert_eq!(status(&without, &f.headers[0]), StatusCode::OK);
    assert_eq!(status(&with, &f.headers[0]), StatusCode::OK);
    // A do-nothing layer: what `Router::layer` itself costs in axum.
    let noop = Router::new().route("/v1/whoami", get(plain)).layer(tower::layer::layer_fn(|s| s));
    let unknown = header_for(&unknown_key());
    assert_eq!(status(&with, &unknown), StatusCode::UNAUTHORIZED);

    let mut g = c.benchmark_group("middleware");
    configure(&mut g);
    let n = f.headers.len();
    g.bench_function("core_header_to_principal_1k", |b| {
        let mut rng = XorShift::new(0x5EED);
        b.iter_batched(
            || f.headers[rng.below(n)],
            |h| ready(f.verifier.verify(black_box(&h), Some(&f.need))).is_ok(),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    bench_router(c, "axum_without_layer", &without, &f);
    bench_router(c, "axum_noop_layer", &noop, &f);
    bench_router(c, "axum_with_layer_1k", &with, &f);

    // The same layer around a bare tower service: what the layer itself adds.
    let inner =
        tower::service_fn(|_: Request<Body>| std::future::ready(Ok::<_, Infallible>(Response::new(Body::empty()))));
    let layered = ApiKeyLayer::new(f.verifier.clone()).require_scope(f.need.clone()).layer(inner);
    let mut g = c.benchmark_group("middleware");
    configure(&mut g);
    g.bench_function("tower_without_layer", |b| {
        let mut rng = XorShift::new(0x5EED);
        b.iter_batched(
            || request(&f.headers[rng.below(n)]),
            |req| ready(inner.oneshot(black_box(req))),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("tower_with_layer_1k", |b| {
        let mut rng = XorShift::new(0x5EED);
        b.iter_batched(
            || request(&f.headers[rng.below(n)]),
            |req| ready(layered.clone().oneshot(black_box(req))),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("middleware");
    configure(&mut g);
    g.bench_function("axum_with_layer_reject_unknown", |b| {
        b.iter_batched(|| request(&unknown), |req| ready(with.clone().oneshot(black_box(req))), BatchSize::SmallInput)
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    middleware(&mut c);
    c.final_summary();
}
