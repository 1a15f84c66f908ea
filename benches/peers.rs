//! Against a published peer: the `prefixed-api-key` crate (0.3).
//!
//! Group `peers`:
//! - `prefixed_api_key_parse_check`: its own check of one of its keys,
//!   `PrefixedApiKey::from_string` + `PrefixedApiKeyController::check_hash`
//!   (split on `_`, SHA-256 of the long token, hex, constant-time compare of
//!   the hex strings), against the stored hash;
//! - `ours_parse_check`: the same step here, `Token::parse` (length,
//!   alphabet, checksum) + `Peppers::verify` (HMAC-SHA256 from the
//!   precomputed keyed state, constant-time compare);
//! - `ours_verify_1k`: our whole `Verifier::verify` from header bytes to
//!   `Principal` (store lookup, status, expiry, scope), random key of 1,000.
//!
//! Clock: on-CPU time of the bench thread by default, `BENCH_CLOCK=wall` for
//! wall time (see `benches/verify.rs`).
//!
//! Ratio reported: `ours_parse_check / prefixed_api_key_parse_check` (and the
//! same for `ours_verify_1k`).

mod common;

use std::hint::black_box;
use std::time::Duration;

use api_keys::{Token, TokenFormat};
use common::{CpuTime, XorShift, fixture, peppers, poll_once, run_with_chosen_clock};
use criterion::measurement::{Measurement, WallTime};
use criterion::{BatchSize, Criterion};
use prefixed_api_key::{PakControllerOsSha256, PrefixedApiKey};

fn peer<M: Measurement + 'static>(c: &mut Criterion<M>) {
    let controller = match PakControllerOsSha256::configure().seam_defaults().prefix("mycompany".to_owned()).finalize()
    {
        Ok(c) => c,
        Err(e) => panic!("peer controller: {e:?}"),
    };
    let (pak, hash) = controller.generate_key_and_hash();
    let text = pak.to_string();
    assert!(matches!(PrefixedApiKey::from_string(&text), Ok(k) if controller.check_hash(&k, &hash)));

    let mut g = c.benchmark_group("peers");
    g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.bench_function("prefixed_api_key_parse_check", |b| {
        b.iter(|| match PrefixedApiKey::from_string(black_box(&text)) {
            Ok(k) => controller.check_hash(&k, black_box(&hash)),
            Err(_) => false,
        })
    });

    let format = TokenFormat::default();
    let peppers = peppers();
    let key = match format.generate() {
        Ok(k) => k.secret.expose_secret().to_owned(),
        Err(e) => panic!("generate: {e}"),
    };
    let (version, digest) = match Token::parse(key.as_bytes(), &format) {
        Ok(t) => peppers.digest_current(t.secret_bytes()),
        Err(e) => panic!("parse: {e}"),
    };
    g.bench_function("ours_parse_check", |b| {
        b.iter(|| match Token::parse(black_box(key.as_bytes()), &format) {
            Ok(t) => peppers.verify(version, t.secret_bytes(), black_box(&digest)) == Some(true),
            Err(_) => false,
        })
    });

    let f = fixture(1_000);
    let n = f.headers.len();
    g.bench_function("ours_verify_1k", |b| {
        let mut rng = XorShift::new(0x5EED);
        b.iter_batched(
            || f.headers[rng.below(n)],
            |h| poll_once!(f.verifier.verify(black_box(&h), Some(&f.need))).is_ok(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn main() {
    run_with_chosen_clock(peer::<CpuTime>, peer::<WallTime>);
}
