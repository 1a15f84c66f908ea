//! Constant-time checks (dudect: fixed-vs-random classes, Welch's t-test).
//!
//! ```text
//! cargo bench --bench ct                       # every bench, 1,000,000 measurements each
//! CT_SAMPLES=5000000 cargo bench --bench ct -- --filter verify
//! ```
//!
//! Each bench prints `max t`; |t| > 4.5 is strong evidence of a timing
//! difference between the classes, |t| < 4.5 means none was found at that
//! sample size (it never proves constant time). The `control_slice_eq` bench
//! uses a short-circuiting `==` and must show a large |t|: it proves the
//! harness can see a leak on this machine.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use api_keys::{
    CreateRequest, Digest, KeyManager, MemoryStore, Pepper, Peppers, ScopeCatalog, Verifier, token_checksum,
};
use dudect_bencher::ctbench::{BenchMetadata, BenchName, BenchOpts, run_benches_console};
use dudect_bencher::rand::{Rng, RngExt};
use dudect_bencher::{BenchRng, Class, CtRunner};
use subtle::ConstantTimeEq;

fn samples() -> usize {
    std::env::var("CT_SAMPLES").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000)
}

fn classes(rng: &mut BenchRng, n: usize) -> Vec<Class> {
    (0..n).map(|_| if rng.random::<bool>() { Class::Left } else { Class::Right }).collect()
}

/// Polls a future that the memory store makes ready at once.
fn ready<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("memory-store future was pending"),
    }
}

/// Digest comparison: equal vs differing in the first byte, 64 compares per
/// measurement so the work rises above timer resolution.
fn digest_ct_eq(runner: &mut CtRunner, rng: &mut BenchRng) {
    let mut base = [0u8; 32];
    rng.fill_bytes(&mut base);
    let a = Digest::from_bytes(base);
    let mut other = base;
    other[0] ^= 0xFF;
    let equal = Digest::from_bytes(base);
    let differ = Digest::from_bytes(other);
    let n = samples();
    // Both classes read the same buffer (copied in before timing), so
    // addresses and cache state do not differ between classes.
    let mut cur;
    for class in classes(rng, n) {
        cur = if matches!(class, Class::Left) { equal } else { differ };
        let b = black_box(&cur);
        runner.run_one(class, || {
            let mut acc = 0u8;
            for _ in 0..64 {
                acc ^= black_box(&a).ct_eq(black_box(b)).unwrap_u8();
            }
            acc
        });
    }
}

/// Control: a short-circuiting slice compare of 4 KiB buffers. Must leak.
fn control_slice_eq(runner: &mut CtRunner, rng: &mut BenchRng) {
    let mut a = vec![0u8; 4096];
    rng.fill_bytes(&mut a);
    let equal = a.clone();
    let mut differ = a.clone();
    differ[0] ^= 1;
    let n = samples() / 10;
    let mut cur = equal.clone();
    for class in classes(rng, n) {
        cur.copy_from_slice(if matches!(class, Class::Left) { &equal } else { &differ });
        let b = black_box(&cur);
        runner.run_one(class, || *black_box(&a[..]) == b[..]);
    }
}

struct Fixture {
    verifier: Verifier<MemoryStore>,
    /// A real key's header.
    header: Vec<u8>,
    /// Unknown id (deleted key) with a valid checksum.
    unknown: Vec<u8>,
}

fn fixture() -> Fixture {
    let manager = KeyManager::builder(
        Arc::new(MemoryStore::new()),
        Peppers::single(Pepper::new(1, [9u8; 32]).expect("pepper")),
        ScopeCatalog::builder()
            .scope("yc.monitoring.read", "")
            .defaults(["yc.monitoring.read"])
            .build()
            .expect("catalog"),
    )
    .build();
    let mut keep = Vec::new();
    for i in 0..1000 {
        let c = ready(manager.create(CreateRequest::new(format!("sa-{i}")))).expect("create");
        keep.push(c);
    }
    let gone = ready(manager.create(CreateRequest::new("gone"))).expect("create");
    ready(manager.delete(&gone.api_key.id)).expect("delete");
    Fixture {
        verifier: manager.verifier().build(),
        header: format!("Api-Key {}", keep[500].secret.expose_secret()).into_bytes(),
        unknown: format!("Api-Key {}", gone.secret.expose_secret()).into_bytes(),
    }
}

/// Replaces the secret part of a header (`Api-Key ak_<id>_<secret><check>`)
/// and recomputes the checksum, so the token passes the format checks.
fn with_secret(header: &[u8], secret: &[u8; 43]) -> Vec<u8> {
    let mut h = header.to_vec();
    let body = 8 + 3; // "Api-Key " + "ak_"
    h[body + 21..body + 64].copy_from_slice(secret);
    let check = token_checksum(&h[body..body + 64]);
    h[body + 64..].copy_from_slice(&check);
    h
}

fn random_secret(rng: &mut BenchRng) -> [u8; 43] {
    const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut s = [0u8; 43];
    for c in &mut s {
        *c = ALNUM[rng.random_range(0..ALNUM.len())];
    }
    s
}

/// Whole verify, same key id: a nearly-right secret (last character wrong)
/// vs a random secret. Both must be rejected in the same time.
///
/// Each class is one fixed input (the random secret is drawn per run): the
/// token checks use table lookups indexed by the *presented* bytes, which an
/// attacker already knows, so a pool of ever-changing random inputs would
/// measure cache warmth of those tables rather than any dependence on the
/// stored secret, which is the question here.
fn verify_near_vs_random_secret(runner: &mut CtRunner, rng: &mut BenchRng) {
    let f = fixture();
    let mut near: [u8; 43] = f.header[8 + 3 + 21..8 + 3 + 64].try_into().expect("43 bytes");
    near[42] = if near[42] == b'a' { b'b' } else { b'a' };
    let near = with_secret(&f.header, &near);
    let random = with_secret(&f.header, &random_secret(rng));
    let n = samples();
    let mut cur = near.clone();
    for class in classes(rng, n) {
        cur.copy_from_slice(if matches!(class, Class::Left) { &near } else { &random });
        let h = black_box(&cur[..]);
        runner.run_one(class, || ready(f.verifier.verify(h, None)).is_err());
    }
}

/// Baseline for the bench above: two different random wrong secrets. Any
/// |t| here comes from the presented bytes themselves, not from closeness to
/// the stored secret.
fn verify_random_vs_random_secret(runner: &mut CtRunner, rng: &mut BenchRng) {
    let f = fixture();
    let a = with_secret(&f.header, &random_secret(rng));
    let b = with_secret(&f.header, &random_secret(rng));
    let n = samples();
    let mut cur = a.clone();
    for class in classes(rng, n) {
        cur.copy_from_slice(if matches!(class, Class::Left) { &a } else { &b });
        let h = black_box(&cur[..]);
        runner.run_one(class, || ready(f.verifier.verify(h, None)).is_err());
    }
}

/// Existence oracle: a known id with a wrong secret vs an unknown id.
fn verify_known_vs_unknown_id(runner: &mut CtRunner, rng: &mut BenchRng) {
    let f = fixture();
    let wrong = with_secret(&f.header, &random_secret(rng));
    let n = samples();
    let mut cur = wrong.clone();
    for class in classes(rng, n) {
        cur.copy_from_slice(if matches!(class, Class::Left) { &wrong } else { &f.unknown });
        let h = black_box(&cur[..]);
        runner.run_one(class, || ready(f.verifier.verify(h, None)).is_err());
    }
}

fn main() {
    // `cargo bench` passes `--bench`; accept `--filter X` / `--continuous X`
    // and ignore the rest.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value_of = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let opts = BenchOpts {
        continuous: value_of("--continuous").is_some(),
        filter: value_of("--continuous").or_else(|| value_of("--filter")),
        ..BenchOpts::default()
    };
    let benches: Vec<BenchMetadata> = vec![
        BenchMetadata { name: BenchName("control_slice_eq"), seed: None, benchfn: control_slice_eq },
        BenchMetadata { name: BenchName("digest_ct_eq"), seed: None, benchfn: digest_ct_eq },
        BenchMetadata {
            name: BenchName("verify_near_vs_random_secret"),
            seed: None,
            benchfn: verify_near_vs_random_secret,
        },
        BenchMetadata {
            name: BenchName("verify_random_vs_random_secret"),
            seed: None,
            benchfn: verify_random_vs_random_secret,
        },
        BenchMetadata {
            name: BenchName("verify_known_vs_unknown_id"),
            seed: None,
            benchfn: verify_known_vs_unknown_id,
        },
    ];
    if let Err(e) = run_benches_console(opts, benches) {
        eprintln!("ct bench failed: {e}");
        std::process::exit(1);
    }
}
