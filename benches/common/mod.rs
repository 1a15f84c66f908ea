//! Fixtures shared by the benches: a memory store seeded with N keys, their
//! pre-built `Authorization` values, a cheap RNG and a single-poll executor.
//!
//! Each bench binary uses a subset of these helpers.
#![allow(dead_code, reason = "each bench binary uses a different subset of the helpers")]

use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, BenchmarkGroup, Criterion, Throughput};
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

use api_keys::{
    CreateRequest, KeyManager, KeyRecord, KeyStore, MemoryStore, Pepper, Peppers, RequiredScope, ScopeCatalog, Token,
    TokenFormat, Verifier,
};

/// `"Api-Key "` plus a 73-byte key in the default format.
pub(crate) const HEADER_LEN: usize = 8 + 73;

/// One pre-built `Authorization` value.
pub(crate) type Header = [u8; HEADER_LEN];

/// The two scopes every seeded key gets (as in the issue: two scopes, empty
/// description).
pub(crate) const SCOPES: [&str; 2] = ["yc.monitoring.manage", "yc.postbox.send"];

/// The scope the benches require: satisfied through `manage ⇒ read`.
pub(crate) const REQUIRED: &str = "yc.monitoring.read";

/// The benches' scope catalog: [`SCOPES`] and [`REQUIRED`], built as an
/// application builds its own (`….manage` implies `….read`).
pub(crate) fn catalog() -> ScopeCatalog {
    ScopeCatalog::builder()
        .scope("yc.monitoring.manage", "")
        .scope(REQUIRED, "")
        .scope("yc.postbox.send", "")
        .build()
        .expect("valid scope names")
}

/// Polls a future exactly once with a no-op waker and yields its output;
/// the memory store's futures are always ready. A macro rather than a
/// function so the future is built in place in its pinned slot instead of
/// being moved (a ~300-byte copy per call that a function argument costs).
///
/// Panics if the future is pending (it never is for the memory store).
macro_rules! poll_once {
    ($future:expr) => {
        match ::std::future::Future::poll(
            ::std::pin::pin!($future),
            &mut ::std::task::Context::from_waker(::std::task::Waker::noop()),
        ) {
            ::std::task::Poll::Ready(v) => v,
            ::std::task::Poll::Pending => panic!("memory-store future was pending"),
        }
    };
}
#[allow(unused_imports, reason = "not every bench binary uses the macro")]
pub(crate) use poll_once;

/// Polls a future exactly once; the memory store's futures are always ready.
/// (Moves the future; the benches of the verify path use [`poll_once!`].)
///
/// # Panics
/// If the future is pending (it never is for the memory store).
pub(crate) fn ready<F: std::future::Future>(f: F) -> F::Output {
    poll_once!(f)
}

/// xorshift64*: a few cycles per number, good enough to pick keys.
#[derive(Debug, Clone)]
pub(crate) struct XorShift(u64);

impl XorShift {
    /// A generator from a non-zero seed.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next 64-bit value.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (multiply-high, no division).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// The timing every group of these benches uses: 1 s warm-up, 3 s of
/// measurement, 100 samples.
pub(crate) fn configure<M: Measurement>(g: &mut BenchmarkGroup<'_, M>) {
    g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(100);
}

/// `<group>/floor_hmac`: one HMAC-SHA256 from a precomputed keyed state over
/// a 32-byte secret plus a `subtle` compare of the digest, the least any
/// peppered digest check can cost.
pub(crate) fn floor_hmac<M: Measurement + 'static>(c: &mut Criterion<M>, group: &str) {
    type HmacSha256 = hmac::Hmac<sha2::Sha256>;
    let keyed = match HmacSha256::new_from_slice(&[42u8; 32]) {
        Ok(m) => m,
        Err(e) => panic!("hmac key: {e}"),
    };
    let secret = *b"0123456789abcdefghijABCDEFGHIJxy";
    let expected: [u8; 32] = {
        let mut m = keyed.clone();
        m.update(&secret);
        m.finalize().into_bytes().into()
    };
    let mut g = c.benchmark_group(group);
    configure(&mut g);
    g.bench_function("floor_hmac", |b| {
        b.iter(|| {
            let mut m = keyed.clone();
            m.update(std::hint::black_box(&secret));
            let d: [u8; 32] = m.finalize().into_bytes().into();
            bool::from(d.ct_eq(std::hint::black_box(&expected)))
        })
    });
    g.finish();
}

/// `id` in `g`: `Verifier::verify` of a random fixture key per iteration,
/// with the fixture's scope check (the key is chosen and copied outside the
/// timed region by `iter_batched`).
pub(crate) fn bench_verify_random<M: Measurement>(g: &mut BenchmarkGroup<'_, M>, id: &str, f: &Fixture) {
    let n = f.headers.len();
    g.bench_function(id, |b| {
        let mut rng = XorShift::new(0x5EED);
        b.iter_batched(
            || f.headers[rng.below(n)],
            |h| poll_once!(f.verifier.verify(std::hint::black_box(&h), Some(&f.need))).is_ok(),
            BatchSize::SmallInput,
        )
    });
}

/// A memory store with `keys` keys, a verifier over it and every key's header.
pub(crate) struct Fixture {
    /// The manager that created the keys.
    pub(crate) manager: KeyManager<MemoryStore>,
    /// The verifier under test (shared so threads can use it).
    pub(crate) verifier: Arc<Verifier<MemoryStore>>,
    /// `Api-Key <secret>` for every key, in creation order.
    pub(crate) headers: Vec<Header>,
    /// The route requirement checked on every verify.
    pub(crate) need: RequiredScope,
}

/// The fixed pepper of the benches.
pub(crate) fn peppers() -> Peppers {
    match Pepper::new(1, [42u8; 32]) {
        Ok(p) => Peppers::single(p),
        Err(e) => panic!("bench pepper: {e}"),
    }
}

/// Builds a store of `keys` keys through [`KeyManager::create`] (so every
/// record has exactly the shape `create` makes: two scopes, empty
/// description), spread over 1,000 service accounts.
///
/// The verifier's last-used interval is one hour and every key is verified
/// and flushed once before this returns: the benches measure the steady
/// state in which a key's last use is already recorded (the common case, in
/// which `verify` takes no lock and allocates nothing for last-used).
///
/// # Panics
/// If a key cannot be created or the warm-up verification fails.
pub(crate) fn fixture(keys: usize) -> Fixture {
    let started = Instant::now();
    let manager = KeyManager::builder(Arc::new(MemoryStore::with_capacity(keys)), peppers(), catalog()).build();
    // Imported keys accepted, as the default was before 0.2: the benches
    // measure the same work as their earlier figures (native keys never
    // take the imported path either way).
    let verifier =
        Arc::new(manager.verifier().accept_imported(true).last_used_interval(Duration::from_secs(3600)).build());
    let need = match manager.catalog().requirement(REQUIRED) {
        Ok(r) => r,
        Err(e) => panic!("requirement: {e}"),
    };
    let mut headers = Vec::with_capacity(keys);
    let accounts: Vec<String> = (0..1000).map(|i| format!("robot-{i:04}")).collect();
    for i in 0..keys {
        let request = CreateRequest::new(accounts[i % accounts.len()].clone()).scopes(SCOPES);
        let created = match poll_once!(manager.create(request)) {
            Ok(c) => c,
            Err(e) => panic!("create: {e}"),
        };
        headers.push(header_for(created.secret.expose_secret()));
    }
    let built = started.elapsed();
    for h in &headers {
        if let Err(e) = poll_once!(verifier.verify(h, Some(&need))) {
            panic!("warm-up verify failed: {e}");
        }
    }
    match poll_once!(verifier.flush_last_used()) {
        Ok(n) => assert_eq!(n, keys, "every key noted once"),
        Err(e) => panic!("flush: {e}"),
    }
    eprintln!("fixture: {keys} keys created in {built:.2?}, warmed up in {:.2?}", started.elapsed() - built);
    Fixture { manager, verifier, headers, need }
}

/// `Api-Key <key>` as a fixed-size array.
///
/// # Panics
/// If the key is not 73 bytes (default format).
pub(crate) fn header_for(key: &str) -> Header {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(b"Api-Key ");
    h[8..].copy_from_slice(key.as_bytes());
    h
}

/// A fresh key in the default format that no store holds.
///
/// # Panics
/// If the OS random generator fails.
pub(crate) fn unknown_key() -> String {
    match TokenFormat::default().generate() {
        Ok(k) => k.secret.expose_secret().to_owned(),
        Err(e) => panic!("generate: {e}"),
    }
}

/// A header whose key has a valid format and the id of a stored record,
/// but not that record's secret: it reaches the store and the digest
/// compare, and fails there (`VerifyError::WrongSecret`).
///
/// Built by storing a copy of the first key's record under the id of a
/// freshly generated key, with the digest of a different secret.
///
/// # Panics
/// If the store refuses the record.
pub(crate) fn wrong_secret_header(f: &Fixture) -> Vec<u8> {
    let format = TokenFormat::default();
    let first = match Token::parse(&f.headers[0][8..], &format) {
        Ok(t) => *t.id(),
        Err(e) => panic!("parse: {e}"),
    };
    let mut record = match poll_once!(f.manager.store().get(&first)) {
        Ok(Some(r)) => KeyRecord::clone(&r),
        other => panic!("get: {other:?}"),
    };
    let fresh = match format.generate() {
        Ok(k) => k,
        Err(e) => panic!("generate: {e}"),
    };
    record.id = fresh.id;
    record.digest = peppers().current().digest(b"a different secret");
    if let Err(e) = poll_once!(f.manager.store().insert(record)) {
        panic!("insert: {e}");
    }
    format!("Api-Key {}", fresh.secret.expose_secret()).into_bytes()
}

/// Time the benchmarking thread spent on a CPU, in nanoseconds
/// (`CLOCK_THREAD_CPUTIME_ID` on Linux). On a small machine shared with
/// other work, wall time also counts the slices in which the thread was
/// preempted; on-CPU time does not. Falls back to wall time elsewhere.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuTime;

/// On-CPU time of the calling thread in nanoseconds, where available.
#[cfg(target_os = "linux")]
pub(crate) fn thread_cpu_ns() -> Option<u64> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(u64::try_from(t.tv_sec).ok()? * 1_000_000_000 + u64::try_from(t.tv_nsec).ok()?)
}

/// On-CPU time of the calling thread (not available on this platform).
#[cfg(not(target_os = "linux"))]
pub(crate) fn thread_cpu_ns() -> Option<u64> {
    None
}

fn wall_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl CpuTime {
    /// Whether on-CPU time is available here (otherwise wall time is used).
    pub(crate) fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| thread_cpu_ns().is_some())
    }

    fn now() -> u64 {
        if Self::available() { thread_cpu_ns().unwrap_or_else(wall_ns) } else { wall_ns() }
    }
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        Self::now()
    }

    fn end(&self, start: u64) -> u64 {
        Self::now().saturating_sub(start)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &NanosFormatter
    }
}

/// Formats nanosecond values like criterion's wall-time formatter.
struct NanosFormatter;

impl ValueFormatter for NanosFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical {
            t if t < 1e3 => (1.0, "ns"),
            t if t < 1e6 => (1e-3, "µs"),
            t if t < 1e9 => (1e-6, "ms"),
            _ => (1e-9, "s"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(&self, _typical: f64, throughput: &Throughput, values: &mut [f64]) -> &'static str {
        let per_iter = match throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Elements(n) => *n as f64,
            _ => 1.0,
        };
        values.iter_mut().for_each(|v| *v = per_iter * 1e9 / *v);
        "/s"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// Which clock the single-threaded benches use: on-CPU time by default,
/// wall time with `BENCH_CLOCK=wall`.
pub(crate) fn use_wall_clock() -> bool {
    std::env::var("BENCH_CLOCK").is_ok_and(|v| v == "wall") || !CpuTime::available()
}

/// Runs `benches` with the clock chosen by [`use_wall_clock`], saying which.
pub(crate) fn run_with_chosen_clock(benches: fn(&mut Criterion<CpuTime>), wall: fn(&mut Criterion<WallTime>)) {
    if use_wall_clock() {
        eprintln!("clock: wall time (BENCH_CLOCK=wall, or no thread CPU clock here)");
        let mut c = Criterion::default().configure_from_args();
        wall(&mut c);
        c.final_summary();
    } else {
        eprintln!("clock: on-CPU time of the bench thread (CLOCK_THREAD_CPUTIME_ID); BENCH_CLOCK=wall for wall time");
        let mut c = Criterion::default().with_measurement(CpuTime).configure_from_args();
        benches(&mut c);
        c.final_summary();
    }
}
