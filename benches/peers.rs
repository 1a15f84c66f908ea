//! Against a published peer (`prefixed-api-key` 0.3) and against the code a
//! user writes by hand, side by side.
//!
//! # Part 1: the scale table (figures of record, issue "Verify at scale")
//!
//! One process, the same keys, the same header strings and the same access
//! pattern for every contender:
//! - headers held as a `Vec<String>` of `Api-Key <key>` (keys made by
//!   `KeyManager::create`, two scopes, 1,000 service accounts);
//! - index `i = (i * 7919 + 13) % n` per call, starting at `i = 0` in every
//!   batch. Note: this sequence is not a full cycle: from 0 it repeats after
//!   50 keys at n = 1,000 and after 25,000 keys at n = 1,000,000, so "1M
//!   keys" works on 25,000 of them (partly cache-resident).
//!   `PEERS_MULTIPLIER=7921` uses `i = (i * 7921 + 13) % n`, a full-period
//!   sequence for both sizes (7920 is a multiple of 4 and 5), which visits
//!   500,000 distinct keys per batch at n = 1,000,000;
//! - 500,000 calls per batch, 7 batches per contender, the batches of all
//!   contenders interleaved round by round (so machine load drifts over all
//!   of them alike); the figure is the median batch, in on-CPU nanoseconds
//!   of the bench thread per call (`BENCH_CLOCK=wall` for wall time);
//! - 1,000 and 1,000,000 keys (`PEERS_KEYS=1000,1000000`, the default);
//! - every call must succeed (asserted).
//!
//! Contenders, each from header string to "principal + scope check":
//! - `harness`: fetch the header string and read its bytes (the floor);
//! - `hand_hmac`: strip `Api-Key `, HMAC-SHA256(pepper, key) with a fresh
//!   `Hmac` per call, lowercase hex `String` (`hex::encode_to_slice`), std
//!   `HashMap<String, (u64, Vec<String>)>` lookup, scope by string compare
//!   (`yc.monitoring.read` or `yc.monitoring.manage` among the key's scopes);
//! - `hand_sha256`: the same with SHA-256(key) and no pepper;
//! - `ours`: `Verifier::verify` over a `MemoryStore`, steady state: every key
//!   verified once and `flush_last_used` called once before the batches;
//! - `ours_fresh`: the same over a copy of the store whose keys were never
//!   flushed (a second verifier that never flushes: the last-used path for
//!   keys not yet written);
//! - `ours_cached` (with `--features cache`): `Verifier::verify` through a
//!   `CachedStore` over the steady store, every key cached by one verify
//!   before the batches (capacity for every key, fresh for an hour: the
//!   figure is the cache's hit path).
//!
//! Ratios printed: `ours / hand_hmac`, `ours / hand_sha256`,
//! `ours_fresh / ours`, `ours_cached / ours`. `PEERS_PART=scale` runs only this part,
//! `PEERS_PART=criterion` only part 2. `PEERS_ONLY=<contender>[,<contender>…]` and
//! `PEERS_BATCHES=<n>` restrict the run (for profiling one contender under
//! valgrind; there set `BENCH_CLOCK=wall`, as rustix's vDSO lookup for the
//! thread CPU clock does not run under valgrind).
//!
//! # Part 2: criterion group `peers`
//!
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

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_keys::{
    CreateRequest, KeyManager, KeyRecord, KeyStore, MemoryStore, RequiredScope, Token, TokenFormat, Verifier,
};
use common::{
    CpuTime, REQUIRED, SCOPES, bench_verify_random, fixture, peppers, poll_once, run_with_chosen_clock, thread_cpu_ns,
    use_wall_clock,
};
use criterion::Criterion;
use criterion::measurement::{Measurement, WallTime};
use hmac::{KeyInit, Mac};
use prefixed_api_key::{PakControllerOsSha256, PrefixedApiKey};
use sha2::{Digest as _, Sha256};

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
    bench_verify_random(&mut g, "ours_verify_1k", &f);
    g.finish();
}

/// Calls per batch.
const BATCH: usize = 500_000;
/// The fixed pepper of the benches (`common::peppers` holds the same bytes).
const PEPPER: [u8; 32] = [42u8; 32];
/// Scopes that satisfy `REQUIRED` (`manage` implies `read`), for the
/// hand-written scope check.
const ACCEPTED: [&str; 2] = ["yc.monitoring.read", "yc.monitoring.manage"];

/// The hand-written store: digest hex → (service account number, scopes).
type HandMap = HashMap<String, (u64, Vec<String>)>;

/// Everything the contenders share: the keys' headers and each contender's
/// state, built from the same keys.
struct World {
    headers: Vec<String>,
    steady: Verifier<MemoryStore>,
    fresh: Verifier<MemoryStore>,
    #[cfg(feature = "cache")]
    cached: Verifier<api_keys::store::cached::CachedStore<Arc<MemoryStore>>>,
    need: RequiredScope,
    hmac_map: HandMap,
    sha_map: HandMap,
}

/// Lowercase hex `String` of a 32-byte digest: `hex::encode_to_slice` (a
/// table lookup per byte) into a stack buffer, then one 64-byte allocation.
/// (`hex::encode` pushes one `char` at a time and is about twice as slow;
/// the faster form keeps the baseline honest.)
fn to_hex(digest: &[u8]) -> String {
    let mut buf = [0u8; 64];
    match hex::encode_to_slice(digest, &mut buf) {
        Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
        Err(e) => panic!("hex: {e}"),
    }
}

fn hex_hmac(key: &[u8]) -> String {
    let mut mac = match <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&PEPPER) {
        Ok(m) => m,
        Err(e) => panic!("hmac key: {e}"),
    };
    mac.update(key);
    to_hex(&mac.finalize().into_bytes())
}

fn hex_sha256(key: &[u8]) -> String {
    to_hex(&Sha256::digest(key))
}

/// What a user writes: digest hex, map lookup, scope by string compare.
fn hand_check(map: &HandMap, header: &str, digest: fn(&[u8]) -> String) -> Option<u64> {
    let key = header.strip_prefix("Api-Key ")?;
    let (account, scopes) = map.get(&digest(key.as_bytes()))?;
    scopes.iter().any(|s| ACCEPTED.contains(&s.as_str())).then_some(*account)
}

fn build_world(keys: usize) -> World {
    let started = Instant::now();
    let store = Arc::new(MemoryStore::with_capacity(keys));
    let manager = KeyManager::builder(Arc::clone(&store), peppers(), common::catalog()).build();
    let need = match manager.catalog().requirement(REQUIRED) {
        Ok(r) => r,
        Err(e) => panic!("requirement: {e}"),
    };
    let accounts: Vec<String> = (0..1000).map(|i| format!("robot-{i:04}")).collect();
    let mut headers = Vec::with_capacity(keys);
    let mut ids = Vec::with_capacity(keys);
    let (mut hmac_map, mut sha_map) = (HandMap::with_capacity(keys), HandMap::with_capacity(keys));
    for i in 0..keys {
        let request = CreateRequest::new(accounts[i % accounts.len()].clone()).scopes(SCOPES);
        let created = match poll_once!(manager.create(request)) {
            Ok(c) => c,
            Err(e) => panic!("create: {e}"),
        };
        let key = created.secret.expose_secret();
        let value = (i as u64 % 1000, SCOPES.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        hmac_map.insert(hex_hmac(key.as_bytes()), value.clone());
        sha_map.insert(hex_sha256(key.as_bytes()), value);
        headers.push(format!("Api-Key {key}"));
        ids.push(created.api_key.id);
    }
    // The fresh contender's store: the same records, never flushed.
    let fresh_store = Arc::new(MemoryStore::with_capacity(keys));
    for id in &ids {
        let record = match poll_once!(store.get(id)) {
            Ok(Some(r)) => KeyRecord::clone(&r),
            other => panic!("get: {other:?}"),
        };
        if let Err(e) = poll_once!(fresh_store.insert(record)) {
            panic!("insert: {e}");
        }
    }
    let hour = Duration::from_secs(3600);
    let steady = manager.verifier().last_used_interval(hour).build();
    let fresh = Verifier::builder(fresh_store, peppers()).last_used_interval(hour).build();
    for h in &headers {
        if let Err(e) = poll_once!(steady.verify(h.as_bytes(), Some(&need))) {
            panic!("warm-up verify failed: {e}");
        }
    }
    match poll_once!(steady.flush_last_used()) {
        Ok(n) => assert_eq!(n, keys, "every key noted once"),
        Err(e) => panic!("flush: {e}"),
    }
    #[cfg(feature = "cache")]
    let cached = {
        let mut config = api_keys::store::cached::CacheConfig::default();
        config.fresh_ttl = hour;
        config.max_staleness = hour;
        config.max_entries = keys as u64;
        let cache = api_keys::store::cached::CachedStore::new(Arc::clone(&store), config);
        let cached = Verifier::builder(Arc::new(cache), peppers()).last_used_interval(hour).build();
        for h in &headers {
            if let Err(e) = poll_once!(cached.verify(h.as_bytes(), Some(&need))) {
                panic!("cache warm-up verify failed: {e}");
            }
        }
        cached
    };
    eprintln!("scale: {keys} keys built in {:.2?}", started.elapsed());
    World {
        headers,
        steady,
        fresh,
        #[cfg(feature = "cache")]
        cached,
        need,
        hmac_map,
        sha_map,
    }
}

/// Nanoseconds now on the chosen clock.
fn clock_ns(wall: bool, epoch: Instant) -> u64 {
    if wall {
        u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    } else {
        thread_cpu_ns().unwrap_or_default()
    }
}

/// The index sequence's multiplier: 7919 (the issue's), or
/// `PEERS_MULTIPLIER`.
fn multiplier() -> usize {
    std::env::var("PEERS_MULTIPLIER").ok().and_then(|v| v.parse().ok()).unwrap_or(7919)
}

/// One batch of `BATCH` calls of `check` over the index sequence; returns
/// nanoseconds per call. Every call must succeed.
fn batch(w: &World, wall: bool, mut check: impl FnMut(&str) -> bool) -> f64 {
    let n = w.headers.len();
    let a = multiplier();
    let epoch = Instant::now();
    let start = clock_ns(wall, epoch);
    let mut i = 0usize;
    let mut ok = 0usize;
    for _ in 0..BATCH {
        i = (i * a + 13) % n;
        ok += usize::from(check(black_box(&w.headers[i])));
    }
    let ns = clock_ns(wall, epoch).saturating_sub(start);
    assert_eq!(ok, BATCH, "every call succeeds");
    ns as f64 / BATCH as f64
}

const CONTENDERS: [&str; 6] = ["harness", "hand_hmac", "hand_sha256", "ours", "ours_fresh", "ours_cached"];

fn run_contender(w: &World, wall: bool, name: &str) -> f64 {
    match name {
        "harness" => batch(w, wall, |h| black_box(h.as_bytes()).first() == Some(&b'A')),
        "hand_hmac" => batch(w, wall, |h| hand_check(&w.hmac_map, h, hex_hmac).is_some()),
        "hand_sha256" => batch(w, wall, |h| hand_check(&w.sha_map, h, hex_sha256).is_some()),
        "ours" => batch(w, wall, |h| poll_once!(w.steady.verify(h.as_bytes(), Some(&w.need))).is_ok()),
        "ours_fresh" => batch(w, wall, |h| poll_once!(w.fresh.verify(h.as_bytes(), Some(&w.need))).is_ok()),
        #[cfg(feature = "cache")]
        "ours_cached" => batch(w, wall, |h| poll_once!(w.cached.verify(h.as_bytes(), Some(&w.need))).is_ok()),
        other => panic!("unknown contender {other}"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn scale_table(keys: usize) {
    let w = build_world(keys);
    let wall = use_wall_clock();
    let only = std::env::var("PEERS_ONLY").ok();
    let batches: usize = std::env::var("PEERS_BATCHES").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    let chosen: Vec<&str> = CONTENDERS
        .iter()
        .copied()
        .filter(|c| cfg!(feature = "cache") || *c != "ours_cached")
        .filter(|c| only.as_deref().is_none_or(|o| o.split(',').any(|o| o == *c)))
        .collect();
    let mut samples: HashMap<&str, Vec<f64>> = HashMap::new();
    for _ in 0..batches {
        for c in &chosen {
            samples.entry(c).or_default().push(run_contender(&w, wall, c));
        }
    }
    let clock = if wall { "wall" } else { "on-CPU" };
    let a = multiplier();
    let mut visited = std::collections::HashSet::new();
    let mut i = 0usize;
    for _ in 0..BATCH {
        i = (i * a + 13) % keys;
        visited.insert(i);
    }
    println!(
        "scale {keys} keys: median of {batches} batches of {BATCH} calls, {clock} ns per call, \
         i = (i * {a} + 13) % n visits {} distinct keys",
        visited.len()
    );
    let mut med = HashMap::new();
    for c in &chosen {
        let v = samples.remove(c).unwrap_or_default();
        let (lo, hi) = v.iter().fold((f64::MAX, 0f64), |(a, b), x| (a.min(*x), b.max(*x)));
        let m = median(v);
        med.insert(*c, m);
        println!("  {c:<12} {m:>8.1} ns  (batches {lo:.1}..{hi:.1})");
    }
    for (a, b) in [("ours", "hand_hmac"), ("ours", "hand_sha256"), ("ours_fresh", "ours"), ("ours_cached", "ours")] {
        if let (Some(x), Some(y)) = (med.get(a), med.get(b)) {
            println!("  ratio {a}/{b} at {keys} keys: {:.3}", x / y);
        }
    }
}

fn main() {
    let part = std::env::var("PEERS_PART").unwrap_or_default();
    if part != "criterion" {
        let sizes = std::env::var("PEERS_KEYS").unwrap_or_else(|_| "1000,1000000".to_owned());
        for keys in sizes.split(',').filter_map(|k| k.trim().replace('_', "").parse::<usize>().ok()) {
            scale_table(keys);
        }
    }
    if part != "scale" {
        run_with_chosen_clock(peer::<CpuTime>, peer::<WallTime>);
    }
}
