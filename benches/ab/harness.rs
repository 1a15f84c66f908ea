//! Paired A/B of the verify path: a baseline commit of this crate and the
//! working tree, linked into one process and measured in alternating
//! rounds, so both see the same machine state (frequency, neighbours,
//! cache pressure). Built and run by `benches/ab/run.sh`, which puts this
//! file, the two versions' `benches/common/mod.rs` and a manifest into
//! `target/ab/`.
//!
//! Criterion runs each bench in its own process, seconds apart: on a shared
//! VM the spread between such runs (10–30 %) is larger than the differences
//! between two commits. Here each round times `PASSES` × 1,000 operations of
//! one side on-CPU (`CLOCK_THREAD_CPUTIME_ID`), then the other, in turn;
//! the figure reported is the median of the per-round ratios head / base.
//!
//! `AB_ONLY=base` or `AB_ONLY=head` runs one side only (for a profiler).
//!
//! Modes (first argument; the second is the number of rounds):
//! - `verify`: `Verifier::verify` of a random key of 1,000 with the scope
//!   check, the work of `verify/header_to_principal_1k`;
//! - `bad-checksum`: the same key with a one-character typo, over and over,
//!   as `verify/reject_bad_checksum`;
//! - `tower`: a request through `ApiKeyLayer` around a bare `service_fn`, as
//!   `middleware/tower_with_layer_1k` (requests are built outside the timed
//!   region).

#[path = "base_common.rs"]
#[allow(dead_code, unused_imports, unused_macros, reason = "each side uses a subset of the bench fixtures")]
mod base_common;
#[path = "head_common.rs"]
#[allow(dead_code, unused_imports, unused_macros, reason = "each side uses a subset of the bench fixtures")]
mod head_common;

#[cfg(feature = "tower")]
use std::convert::Infallible;
use std::hint::black_box;

// Polls a future once (every future measured here is ready at once).
use head_common::poll_once;

#[cfg(feature = "tower")]
use http::header::AUTHORIZATION;
#[cfg(feature = "tower")]
use http::{HeaderValue, Request, Response};
#[cfg(feature = "tower")]
use tower::{Layer, ServiceExt};

/// Keys in each fixture, and operations per pass.
const KEYS: usize = 1_000;

/// This thread's on-CPU time in nanoseconds.
fn cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// A request to `/v1/whoami` with `header` as its `Authorization`.
#[cfg(feature = "tower")]
fn request(header: &[u8]) -> Request<()> {
    let mut req = Request::new(());
    *req.uri_mut() = http::Uri::from_static("/v1/whoami");
    match HeaderValue::from_bytes(header) {
        Ok(v) => req.headers_mut().insert(AUTHORIZATION, v),
        Err(e) => panic!("header: {e}"),
    };
    req
}

/// The bench's typo: one character of the secret changed, so only the
/// checksum catches it.
fn typo(mut header: [u8; 81]) -> [u8; 81] {
    let at = 8 + 3 + 21 + 5;
    header[at] = if header[at] == b'a' { b'b' } else { b'a' };
    header
}

/// One side of the comparison: a closure that runs one pass and returns its
/// on-CPU nanoseconds per operation.
type Pass<'a> = Box<dyn FnMut() -> f64 + 'a>;

/// Builds the pass of `mode` for one version of the crate (`$krate`, whose
/// bench fixtures are `$common`).
macro_rules! side {
    ($krate:ident, $common:ident, $mode:expr, $passes:expr, $order:expr) => {{
        let f = $common::fixture(KEYS);
        let headers: Vec<[u8; 81]> = $order.iter().map(|&i| f.headers[i]).collect();
        let passes: usize = $passes;
        let pass: Pass<'static> = match $mode {
            "verify" => Box::new(move || {
                let t = cpu_ns();
                let mut ok = 0usize;
                for _ in 0..passes {
                    for h in &headers {
                        ok += usize::from(poll_once!(f.verifier.verify(black_box(h), Some(&f.need))).is_ok());
                    }
                }
                let dt = cpu_ns() - t;
                assert_eq!(ok, passes * headers.len(), "every key verifies");
                dt as f64 / (passes * headers.len()) as f64
            }),
            "bad-checksum" => {
                let bad = typo(headers[0]);
                Box::new(move || {
                    let t = cpu_ns();
                    let mut refused = 0usize;
                    for _ in 0..passes * headers.len() {
                        let r = poll_once!(f.verifier.verify(black_box(&bad), Some(&f.need)));
                        refused += usize::from(matches!(r, Err($krate::VerifyError::BadChecksum)));
                    }
                    let dt = cpu_ns() - t;
                    assert_eq!(refused, passes * headers.len(), "every typo is a bad checksum");
                    dt as f64 / (passes * headers.len()) as f64
                })
            }
            #[cfg(feature = "tower")]
            "tower" => {
                let inner =
                    tower::service_fn(|_: Request<()>| std::future::ready(Ok::<_, Infallible>(Response::new(()))));
                let layered =
                    $krate::http::ApiKeyLayer::new(f.verifier.clone()).require_scope(f.need.clone()).layer(inner);
                Box::new(move || {
                    let mut timed = 0u64;
                    for _ in 0..passes {
                        let requests: Vec<Request<()>> = headers.iter().map(|h| request(h)).collect();
                        let t = cpu_ns();
                        for req in requests {
                            let res = poll_once!(layered.clone().oneshot(black_box(req)));
                            assert!(res.is_ok_and(|r| r.status() == 200), "every key is let through");
                        }
                        timed += cpu_ns() - t;
                    }
                    timed as f64 / (passes * headers.len()) as f64
                })
            }
            other => panic!("unknown mode {other}: verify, bad-checksum or tower (built with the feature)"),
        };
        pass
    }};
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "verify".to_owned());
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(60);
    let passes: usize = std::env::var("PASSES").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    // One random key order, the same for both sides.
    let mut rng = head_common::XorShift::new(0x5EED);
    let order: Vec<usize> = (0..KEYS).map(|_| rng.below(KEYS)).collect();
    let mut base = side!(api_keys_base, base_common, mode.as_str(), passes, order);
    let mut head = side!(api_keys_head, head_common, mode.as_str(), passes, order);
    // For a profiler: one side only (`AB_ONLY=base` or `AB_ONLY=head`).
    if let Ok(only) = std::env::var("AB_ONLY") {
        let pass = if only == "base" { &mut base } else { &mut head };
        let times: Vec<f64> = (0..rounds).map(|_| pass()).collect();
        println!("{mode}, {only} only: median {:.1} ns", median(times));
        return;
    }
    for _ in 0..5 {
        base();
        head();
    }
    let (mut b, mut h, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which side goes first.
        let (x, y) = if round % 2 == 0 {
            let x = base();
            (x, head())
        } else {
            let y = head();
            (base(), y)
        };
        b.push(x);
        h.push(y);
        ratio.push(y / x);
    }
    let low = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "{mode}: {rounds} rounds of {} ops each side; base median {:.1} ns (min {:.1}), head median {:.1} ns (min {:.1}); median ratio head/base {:.3}",
        passes * KEYS,
        median(b.clone()),
        low(&b),
        median(h.clone()),
        low(&h),
        median(ratio)
    );
}
