//! What `CachedStore` buys, and what the PostgreSQL and Redis stores cost
//! over a bare query.
//!
//! ```text
//! cargo bench --features cache,postgres,redis --bench cache
//! ```
//!
//! Group `cache` (PostgreSQL on 127.0.0.1:5432 database `test`, and Redis on
//! 127.0.0.1:6379, must be running; each bench uses its own schema / key
//! prefix and removes it afterwards):
//!
//! - `floor_hmac`: one HMAC-SHA256 from a precomputed keyed state over a
//!   32-byte secret plus a `subtle` compare, as in `verify/floor_hmac`;
//! - `header_to_principal_1k`: the core's full verify over a 1,000-key
//!   memory store (as `verify/header_to_principal_1k`);
//! - `cached_hit_1k`: the same verify through a `CachedStore` in front of
//!   the memory store, every key cached (fresh TTL one hour, so every
//!   lookup is a hit). Target: ≤ 2 × `floor_hmac`;
//! - `postgres_verify_uncached` vs `postgres_raw_select`: `Verifier::verify`
//!   over `PostgresStore` (no cache) against a bare
//!   `SELECT <the same columns> FROM api_keys WHERE id = $1` through the
//!   same pool, both over loopback on 1,000 keys. Target: ≤ 1.2 ×;
//! - `redis_verify_uncached` vs `redis_raw_hgetall`: the same for
//!   `RedisStore` against a bare `HGETALL` of the record's hash on the same
//!   connection. Target: ≤ 1.2 ×;
//! - `postgres_store_get`, `redis_store_get`: the store's `get` alone
//!   (timeout, query, record decoding), to tell the store's share of the
//!   difference from the verifier's.
//!
//! A random key per iteration, chosen and copied outside the timed region.
//!
//! Measured on the shared 2-core development VM (loopback PostgreSQL 15 and
//! Redis 7.0; the I/O figures moved by ±30 % between runs with the other
//! load on the machine):
//!
//! | id | time | ratio |
//! |---|---|---|
//! | `floor_hmac` | 107–114 ns | 1 |
//! | `header_to_principal_1k` | 192–203 ns | 1.8 × floor |
//! | `cached_hit_1k` | 404–436 ns | 3.7–3.8 × floor (target 2 × missed: a moka `future::Cache::get` hit alone measured 144 ns, 1.3 × floor) |
//! | `postgres_verify_uncached` / `postgres_raw_select` | 107–148 µs / 97–145 µs | 0.87–1.38, typically ≈ 1.05 |
//! | `redis_verify_uncached` / `redis_raw_hgetall` | 22–42 µs / 21–24 µs | 0.93–1.9, typically ≈ 1.2 |
//!
//! `postgres_store_get` and `redis_store_get` measured within the noise of
//! the raw query: the stores add no measurable cost over the round trip.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use api_keys::store::cached::{CacheConfig, CachedStore};
use api_keys::{
    CreateRequest, KeyId, KeyManager, KeyStore, MemoryStore, PostgresStore, RedisStore, RequiredScope, Verifier,
};
use common::{Header, REQUIRED, SCOPES, XorShift, configure, fixture, floor_hmac, header_for, peppers, ready};
use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion};

const KEYS: usize = 1_000;
const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The core verify over the memory store, and the same through a warm cache.
fn memory(c: &mut Criterion) {
    let core = fixture(KEYS);

    let config = CacheConfig::default().fresh_ttl(Duration::from_secs(3600)).max_staleness(Duration::from_secs(7200));
    let store = Arc::new(CachedStore::new(MemoryStore::with_capacity(KEYS), config));
    let manager = KeyManager::builder(Arc::clone(&store), peppers(), common::catalog()).build();
    let verifier = manager.verifier().last_used_interval(Duration::from_secs(3600)).build();
    let need = requirement(&manager);
    let headers: Vec<Header> = (0..KEYS)
        .map(|i| {
            let request = CreateRequest::new(format!("robot-{:04}", i % 1000)).scopes(SCOPES);
            match ready(manager.create(request)) {
                Ok(created) => header_for(created.secret.expose_secret()),
                Err(e) => panic!("create: {e}"),
            }
        })
        .collect();
    // Fill the cache, record every key's use once and flush it (the flush
    // patches the cached records), so the timed loop is the steady state.
    for h in &headers {
        if let Err(e) = ready(verifier.verify(h, Some(&need))) {
            panic!("warm-up verify: {e}");
        }
    }
    if let Err(e) = ready(verifier.flush_last_used()) {
        panic!("flush: {e}");
    }
    ready(store.run_pending_tasks());
    assert!(store.entry_count() >= KEYS as u64, "every key cached: {}", store.entry_count());

    let mut g = c.benchmark_group("cache");
    configure(&mut g);
    g.bench_function("header_to_principal_1k", |b| {
        let mut rng = XorShift::new(0x5EED);
        b.iter_batched(
            || core.headers[rng.below(KEYS)],
            |h| ready(core.verifier.verify(black_box(&h), Some(&core.need))).is_ok(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("cached_hit_1k", |b| {
        let mut rng = XorShift::new(0x5EED);
        b.iter_batched(
            || headers[rng.below(KEYS)],
            |h| ready(verifier.verify(black_box(&h), Some(&need))).is_ok(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    assert_eq!(verifier.pending_last_used(), 0, "hits took the lock-free last-used path");
}

fn requirement<S: KeyStore>(manager: &KeyManager<S>) -> RequiredScope {
    match manager.catalog().requirement(REQUIRED) {
        Ok(r) => r,
        Err(e) => panic!("requirement: {e}"),
    }
}

/// 1,000 keys through `manager`, each verified once and flushed; returns
/// the headers and ids.
async fn seed<S: KeyStore>(manager: &KeyManager<S>, verifier: &Verifier<S>) -> (Vec<Header>, Vec<KeyId>) {
    let need = requirement(manager);
    let mut headers = Vec::with_capacity(KEYS);
    let mut ids = Vec::with_capacity(KEYS);
    for i in 0..KEYS {
        let request = CreateRequest::new(format!("robot-{:04}", i % 1000)).scopes(SCOPES);
        match manager.create(request).await {
            Ok(created) => {
                headers.push(header_for(created.secret.expose_secret()));
                ids.push(created.api_key.id);
            }
            Err(e) => panic!("create: {e}"),
        }
    }
    for h in &headers {
        if let Err(e) = verifier.verify(h, Some(&need)).await {
            panic!("warm-up verify: {e}");
        }
    }
    if let Err(e) = verifier.flush_last_used().await {
        panic!("flush: {e}");
    }
    (headers, ids)
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    }
}

/// A store seeded by [`seed`], with what its benches need.
struct Seeded<'a, S> {
    rt: &'a tokio::runtime::Runtime,
    verifier: &'a Verifier<S>,
    need: &'a RequiredScope,
    headers: &'a [Header],
    ids: &'a [KeyId],
}

/// `<backend>_verify_uncached` (`Verifier::verify`) and `<backend>_store_get`
/// (the verifier's store's `get` alone), a random seeded key per iteration.
fn bench_verify_and_get<S: KeyStore>(g: &mut BenchmarkGroup<'_, WallTime>, backend: &str, s: &Seeded<'_, S>) {
    g.bench_function(format!("{backend}_verify_uncached"), |b| {
        let mut rng = XorShift::new(0x5EED);
        b.to_async(s.rt).iter_batched(
            || s.headers[rng.below(KEYS)],
            |h| async move { s.verifier.verify(black_box(&h), Some(s.need)).await.is_ok() },
            BatchSize::SmallInput,
        )
    });
    g.bench_function(format!("{backend}_store_get"), |b| {
        let mut rng = XorShift::new(0x5EED);
        let store = s.verifier.store();
        b.to_async(s.rt).iter_batched(
            || s.ids[rng.below(KEYS)],
            |id| async move { matches!(store.get(black_box(&id)).await, Ok(Some(_))) },
            BatchSize::SmallInput,
        )
    });
}

fn unique(prefix: &str) -> String {
    match KeyId::generate() {
        Ok(id) => format!("{prefix}_{}", id.as_str()),
        Err(e) => panic!("random: {e}"),
    }
}

fn postgres(c: &mut Criterion) {
    let rt = runtime();
    let schema = unique("bench_cache");
    let store = match rt.block_on(PostgresStore::builder(PG_URL).schema(&schema).connect()) {
        Ok(s) => s,
        Err(e) => panic!(
            "PostgreSQL on 127.0.0.1:5432 (database `test`) is not reachable ({e}); start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        ),
    };
    let pool = store.pool().clone();
    let manager = KeyManager::builder(Arc::new(store), peppers(), common::catalog()).build();
    let verifier = manager.verifier().last_used_interval(Duration::from_secs(3600)).build();
    let need = requirement(&manager);
    let (headers, ids) = rt.block_on(seed(&manager, &verifier));

    let select = "SELECT id, service_account_id, description, created_at, last_used_at, scopes, expires_at, \
         masked_key, pepper_version, digest, status, kind, replaced_by, reissued_from FROM api_keys WHERE id = $1";
    let mut g = c.benchmark_group("cache");
    configure(&mut g);
    let seeded = Seeded { rt: &rt, verifier: &verifier, need: &need, headers: &headers, ids: &ids };
    bench_verify_and_get(&mut g, "postgres", &seeded);
    g.bench_function("postgres_raw_select", |b| {
        let mut rng = XorShift::new(0x5EED);
        b.to_async(&rt).iter_batched(
            || ids[rng.below(KEYS)],
            |id| {
                let pool = &pool;
                async move {
                    let row = sqlx::query(select).bind(black_box(id.as_str())).fetch_optional(pool).await;
                    matches!(row, Ok(Some(_)))
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    rt.block_on(async {
        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await {
            eprintln!("could not drop schema {schema}: {e}");
        }
    });
}

fn redis(c: &mut Criterion) {
    let rt = runtime();
    let prefix = unique("bench_cache");
    let store = match rt.block_on(RedisStore::builder(REDIS_URL).prefix(&prefix).connect()) {
        Ok(s) => s,
        Err(e) => panic!(
            "Redis on 127.0.0.1:6379 is not reachable ({e}); start it with \
             `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no`"
        ),
    };
    let conn = store.connection().clone();
    let store = Arc::new(store);
    let manager = KeyManager::builder(Arc::clone(&store), peppers(), common::catalog()).build();
    let verifier = manager.verifier().last_used_interval(Duration::from_secs(3600)).build();
    let need = requirement(&manager);
    let (headers, ids) = rt.block_on(seed(&manager, &verifier));
    let record_keys: Vec<String> = ids.iter().map(|id| format!("{{{prefix}}}:key:{}", id.as_str())).collect();

    let mut g = c.benchmark_group("cache");
    configure(&mut g);
    let seeded = Seeded { rt: &rt, verifier: &verifier, need: &need, headers: &headers, ids: &ids };
    bench_verify_and_get(&mut g, "redis", &seeded);
    g.bench_function("redis_raw_hgetall", |b| {
        let mut rng = XorShift::new(0x5EED);
        b.to_async(&rt).iter_batched(
            || rng.below(KEYS),
            |i| {
                let mut conn = conn.clone();
                let key = &record_keys[i];
                async move {
                    let fields: Result<std::collections::HashMap<String, String>, _> =
                        redis::cmd("HGETALL").arg(black_box(key)).query_async(&mut conn).await;
                    matches!(fields, Ok(f) if !f.is_empty())
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    if let Err(e) = rt.block_on(store.purge()) {
        eprintln!("could not purge prefix {prefix}: {e}");
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    floor_hmac(&mut c, "cache");
    memory(&mut c);
    postgres(&mut c);
    redis(&mut c);
    c.final_summary();
}
