//! How many bytes the record cache spends per cached key, over a store that
//! decodes records (SQLite in a temporary file, as PostgreSQL and Redis do).
//!
//! Creates 100,000 keys (or the count given as the first argument), each
//! with two scopes, over 1,000 service accounts, then measures with a
//! counting global allocator (`stats_alloc`: bytes requested minus bytes
//! freed) the live heap bytes kept
//!
//! - **as decoded**: every record read once from the store and held as the
//!   store returned it (the baseline: what a cache of plain records holds);
//! - **in the cache**: a `CachedStore` over the same store after reading
//!   every key once through it (records, entries, moka's own structures).
//!
//! ```text
//! cargo run --release --features cache,sqlite --example cache_memory [KEYS]
//! ```

use std::alloc::System;
use std::sync::Arc;

use api_keys::store::cached::{CacheConfig, CachedStore};
use api_keys::{CreateRequest, KeyManager, KeyStore, Pepper, Peppers, ScopeCatalog, SqliteStore};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes currently allocated through the global allocator.
fn live_bytes() -> i128 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i128 - s.bytes_deallocated as i128
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keys: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(async {
        let store = SqliteStore::builder(&url).connect().await?;
        let catalog = ScopeCatalog::builder()
            .scope("yc.monitoring.read", "")
            .scope("yc.postbox.send", "")
            .defaults(["yc.monitoring.read", "yc.postbox.send"])
            .build()?;
        let manager =
            KeyManager::builder(Arc::new(store.clone()), Peppers::single(Pepper::generate(1)?), catalog).build();
        let mut ids = Vec::with_capacity(keys);
        for i in 0..keys {
            let created =
                manager.create(CreateRequest::new(format!("robot-{}", i % 1000)).description("ci deploys")).await?;
            ids.push(created.api_key.id);
        }

        let before = live_bytes();
        let mut decoded = Vec::with_capacity(keys);
        for id in &ids {
            decoded.push(store.get(id).await?.ok_or("a key is missing")?);
        }
        let plain = live_bytes() - before;
        drop(decoded);

        let cached = CachedStore::new(store.clone(), CacheConfig::default().max_entries(keys as u64 * 2));
        let before = live_bytes();
        for id in &ids {
            cached.get(id).await?.ok_or("a key is missing")?;
        }
        cached.run_pending_tasks().await;
        let kept = live_bytes() - before;
        let per = |b: i128| b as f64 / keys as f64;
        println!("{keys} keys, two scopes each, over 1,000 service accounts:");
        println!("  as decoded: {plain} heap bytes, {:.0} B per key", per(plain));
        println!(
            "  in the cache: {kept} heap bytes, {:.0} B per key ({:.2}x the decoded records)",
            per(kept),
            kept as f64 / plain as f64
        );
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
