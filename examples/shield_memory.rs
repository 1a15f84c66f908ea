//! How many bytes the flood shield's membership set spends per key id.
//!
//! Fills a `MemoryStore` with 1,000,000 keys (or the count given as the
//! first argument), then builds a `ShieldedStore` over it and waits for its
//! first load. A counting global allocator (`stats_alloc`) reports the live
//! heap bytes the shield keeps after the load (bytes requested minus bytes
//! freed; the load's temporary id pages are freed by then).
//!
//! ```text
//! cargo run --release --features cache --example shield_memory [KEYS]
//! ```

use std::alloc::System;
use std::sync::Arc;

use api_keys::store::shielded::{ShieldConfig, ShieldedStore};
use api_keys::{CreateRequest, KeyManager, MemoryStore, Pepper, Peppers, ScopeCatalog};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes currently allocated through the global allocator. (`stats_alloc`
/// already adds a realloc's growth to `bytes_allocated` and its shrinking to
/// `bytes_deallocated`; `bytes_reallocated` is the same change again.)
fn live_bytes() -> i128 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i128 - s.bytes_deallocated as i128
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keys: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(async {
        let store = Arc::new(MemoryStore::with_capacity(keys));
        let manager = KeyManager::builder(
            Arc::clone(&store),
            Peppers::single(Pepper::generate(1)?),
            ScopeCatalog::builder().scope("yc.monitoring.read", "").defaults(["yc.monitoring.read"]).build()?,
        )
        .build();
        for i in 0..keys {
            manager.create(CreateRequest::new(format!("robot-{}", i % 1000))).await?;
        }
        let before = live_bytes();
        let shield = ShieldedStore::local(Arc::clone(&store), ShieldConfig::default())?;
        shield.wait_trusted().await;
        let kept = live_bytes() - before;
        println!(
            "{keys} ids: the shield keeps {kept} heap bytes ({:.1} bytes per id, {:.1} MB per million ids)",
            kept as f64 / keys as f64,
            kept as f64 / keys as f64
        );

        let stats = shield.stats();
        println!(
            "the set reports {} bytes ({:.2} bytes per id) for {} ids",
            stats.bytes,
            stats.bytes as f64 / stats.ids as f64,
            stats.ids
        );
        assert_eq!(stats.ids, keys);
        Ok(())
    })
}
