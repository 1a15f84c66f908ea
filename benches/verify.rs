//! The verify hot path against its physical floor.
//!
//! Group `verify`; function ids are stable so results compare across commits
//! (`target/criterion/verify/<id>/new/estimates.json`):
//!
//! - `floor_hmac`: one HMAC-SHA256 from a precomputed keyed state over a
//!   32-byte secret plus a `subtle` compare of the digest: the least any
//!   peppered digest check can cost;
//! - `header_to_principal_1k` / `_1m`: `Verifier::verify` from raw header
//!   bytes to `Principal` with a scope check, over a memory store of 1,000 /
//!   1,000,000 keys, a random key per iteration (chosen and copied outside
//!   the timed region by `iter_batched`);
//! - `reject_bad_checksum`, `reject_malformed`: garbage that must stop before
//!   the store and the HMAC;
//! - `parse_header`, `generate_key`.
//!
//! Group `controls`: `Verifier::verify_with` of keys with one control set
//! each, over a memory store of 1,000 keys (a random key per iteration):
//! `allow_list` (a 3-range IP allow-list that admits the address),
//! `rate_limit_local` (one limit the keys never reach, on the default
//! per-node `LocalRateLimiter`), `credits_memory` (credits the keys never
//! spend up; one atomic spend in the memory store), and `none` (the same
//! keys without controls, through `verify_with`). Compare `none` and
//! `verify/header_to_principal_1k` with main's head to see that keys
//! without controls pay nothing.
//!
//! Extra ids: `reject_unknown_id` and `reject_wrong_secret` should cost the
//! same (otherwise timing tells which ids exist); `reject_unknown_imported`
//! shows what unprefixed garbage costs while imported keys are accepted (one
//! HMAC and one digest-index probe per pepper).
//!
//! The memory store's futures are always ready, so each is polled once with
//! a no-op waker instead of running an executor.
//!
//! Clock: on a small machine shared with other work, wall time counts the
//! slices in which the bench thread was preempted, so by default these
//! benches measure the thread's on-CPU time (`CLOCK_THREAD_CPUTIME_ID`);
//! `BENCH_CLOCK=wall` switches to criterion's wall clock.

mod common;

use std::hint::black_box;

use api_keys::TokenFormat;
use api_keys::header::{DEFAULT_MAX_HEADER_LEN, parse_authorization};
use common::{
    CpuTime, Fixture, XorShift, bench_verify_random, configure, fixture, floor_hmac, poll_once, run_with_chosen_clock,
    unknown_key, wrong_secret_header,
};
use criterion::measurement::{Measurement, WallTime};
use criterion::{BatchSize, Criterion};

/// Full verify of a random seeded key per iteration.
fn bench_principal<M: Measurement + 'static>(c: &mut Criterion<M>, id: &str, f: &Fixture) {
    let mut g = c.benchmark_group("verify");
    configure(&mut g);
    bench_verify_random(&mut g, id, f);
    g.finish();
}

fn small_store<M: Measurement + 'static>(c: &mut Criterion<M>) {
    let f = fixture(1_000);
    let sample = f.headers[0];
    assert!(poll_once!(f.verifier.verify(&sample, Some(&f.need))).is_ok());

    bench_principal(c, "header_to_principal_1k", &f);

    let mut g = c.benchmark_group("verify");
    configure(&mut g);

    // A one-character typo in the secret: the checksum catches it.
    let mut bad_checksum = sample;
    let at = 8 + 3 + 21 + 5;
    bad_checksum[at] = if bad_checksum[at] == b'a' { b'b' } else { b'a' };
    let e = poll_once!(f.verifier.verify(&bad_checksum, Some(&f.need))).err();
    assert!(matches!(e, Some(api_keys::VerifyError::BadChecksum)), "{e:?}");
    g.bench_function("reject_bad_checksum", |b| {
        b.iter(|| poll_once!(f.verifier.verify(black_box(&bad_checksum), Some(&f.need))).is_err())
    });

    // Four kinds of malformed input, in rotation: header syntax, a control
    // byte, a key of the wrong length and a key with a character outside its
    // alphabet. All carry the prefix, so none is looked up as imported.
    let key = &sample[8..];
    let mut bad_alphabet = sample.to_vec();
    bad_alphabet[8 + 5] = b'A';
    let malformed: [Vec<u8>; 4] = [
        [b"Api-Key ".as_slice(), &key[..40], b",", &key[41..]].concat(),
        [b"Api-Key ".as_slice(), &key[..40], b"\n", &key[41..]].concat(),
        [b"Api-Key ".as_slice(), &key[..72]].concat(),
        bad_alphabet,
    ];
    for m in &malformed {
        let r = poll_once!(f.verifier.verify(m, Some(&f.need)));
        assert!(
            matches!(r, Err(api_keys::VerifyError::Malformed(_) | api_keys::VerifyError::MalformedKey(_))),
            "{r:?}"
        );
    }
    g.bench_function("reject_malformed", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & 3;
            poll_once!(f.verifier.verify(black_box(&malformed[i]), Some(&f.need))).is_err()
        })
    });

    let unknown = format!("Api-Key {}", unknown_key());
    let r = poll_once!(f.verifier.verify(unknown.as_bytes(), Some(&f.need)));
    assert!(matches!(r, Err(api_keys::VerifyError::UnknownKey(Some(_)))), "{r:?}");
    g.bench_function("reject_unknown_id", |b| {
        b.iter(|| poll_once!(f.verifier.verify(black_box(unknown.as_bytes()), Some(&f.need))).is_err())
    });

    let wrong = wrong_secret_header(&f);
    let r = poll_once!(f.verifier.verify(&wrong, Some(&f.need)));
    assert!(matches!(r, Err(api_keys::VerifyError::WrongSecret(_))), "{r:?}");
    g.bench_function("reject_wrong_secret", |b| {
        b.iter(|| poll_once!(f.verifier.verify(black_box(&wrong), Some(&f.need))).is_err())
    });

    let imported = b"Api-Key AQVN3sHvAWTemWB8QxHkunfG2x4q7G3OrCG02w";
    let r = poll_once!(f.verifier.verify(imported, Some(&f.need)));
    assert!(matches!(r, Err(api_keys::VerifyError::UnknownKey(None))), "{r:?}");
    g.bench_function("reject_unknown_imported", |b| {
        b.iter(|| poll_once!(f.verifier.verify(black_box(imported), Some(&f.need))).is_err())
    });

    g.bench_function("parse_header", |b| {
        b.iter(|| parse_authorization(black_box(&sample), DEFAULT_MAX_HEADER_LEN).is_ok())
    });

    let format = TokenFormat::default();
    g.bench_function("generate_key", |b| b.iter(|| black_box(&format).generate().is_ok()));
    g.finish();
}

fn large_store<M: Measurement + 'static>(c: &mut Criterion<M>) {
    // Building a million keys takes seconds: skip it when a filter given on
    // the command line (a plain substring, usually) cannot select this bench.
    let id = "verify/header_to_principal_1m";
    let filter = positional_filter();
    if filter.is_some_and(|f| !id.contains(f.trim_end_matches('$')) && !f.contains("1m")) {
        return;
    }
    let f = fixture(1_000_000);
    bench_principal(c, "header_to_principal_1m", &f);
}

/// The name filter given to criterion, if any (options that take a value
/// are skipped with their value).
fn positional_filter() -> Option<String> {
    const WITH_VALUE: [&str; 14] = [
        "--save-baseline",
        "--baseline",
        "--load-baseline",
        "--profile-time",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--color",
        "--plotting-backend",
        "--output-format",
    ];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if WITH_VALUE.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

/// Gives every key of `f` the controls `make` returns (the memory store
/// has no update yet: read, replace, write back).
fn set_controls(f: &Fixture, make: impl Fn() -> api_keys::controls::KeyControls) {
    use api_keys::KeyStore;
    let store = f.manager.store();
    let ids: Vec<api_keys::KeyId> = f
        .headers
        .iter()
        .map(|h| match poll_once!(f.verifier.verify(h, None)) {
            Ok(p) => *p.key_id(),
            Err(e) => panic!("verify: {e}"),
        })
        .collect();
    for id in ids {
        let Ok(Some(record)) = poll_once!(store.get(&id)) else { panic!("record {id}") };
        let mut record = (*record).clone();
        record.set_controls(make());
        if poll_once!(store.delete(&id)).is_err() || poll_once!(store.insert(record)).is_err() {
            panic!("rewrite {id}");
        }
    }
}

fn controls<M: Measurement + 'static>(c: &mut Criterion<M>) {
    use api_keys::VerifyContext;
    use api_keys::controls::{Credits, KeyControls};
    type Case = (&'static str, fn() -> KeyControls);
    let cases: [Case; 4] = [
        ("none", KeyControls::new),
        ("allow_list", || {
            KeyControls::new().allowed_ips("10.0.0.0/8,192.0.2.0/24,2001:db8::/32".parse().expect("ranges"))
        }),
        ("rate_limit_local", || KeyControls::new().rate_limits("api=1000000000/1s".parse().expect("limit"))),
        ("credits_memory", || KeyControls::new().credits(Credits::new(Credits::MAX).expect("credits"))),
    ];
    for (id, make) in cases {
        let f = fixture(1_000);
        set_controls(&f, make);
        let ctx = VerifyContext::new().required(&f.need).client_ip("192.0.2.7".parse::<std::net::IpAddr>().ok());
        assert!(poll_once!(f.verifier.verify_with(&f.headers[0], &ctx)).is_ok(), "{id}");
        let mut g = c.benchmark_group("controls");
        configure(&mut g);
        let n = f.headers.len();
        g.bench_function(id, |b| {
            let mut rng = XorShift::new(0x5EED);
            b.iter_batched(
                || f.headers[rng.below(n)],
                |h: common::Header| poll_once!(f.verifier.verify_with(black_box(&h), &ctx)).is_ok(),
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

fn all<M: Measurement + 'static>(c: &mut Criterion<M>) {
    floor_hmac(c, "verify");
    small_store(c);
    large_store(c);
    controls(c);
}

fn main() {
    run_with_chosen_clock(all::<CpuTime>, all::<WallTime>);
}
