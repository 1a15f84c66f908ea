//! How many bytes the in-memory store spends per key.
//!
//! Builds a `MemoryStore` with 1,000,000 keys (or the count given as the
//! first argument) through `KeyManager::create`, each with two scopes and an
//! empty description, and reports bytes per key two ways:
//!
//! - **live heap bytes**: a counting global allocator (`stats_alloc`, which
//!   wraps `std::alloc::System`) tracks bytes requested minus bytes freed,
//!   measured after creating the empty store and again after inserting the
//!   keys. This is exact and excludes the allocator's own per-block overhead;
//! - **resident set size**: the growth of RSS (`/proc/self/statm`, Linux
//!   only) over the same span, which includes malloc headers, fragmentation
//!   and free space the allocator keeps.
//!
//! Two layouts are measured: keys spread over 1,000 service accounts, and
//! one service account per key (the most index entries per key).
//!
//! ```text
//! cargo run --release --example memory_per_key [KEYS]
//! ```

use std::alloc::System;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use api_keys::{CreateRequest, KeyManager, MemoryStore, Pepper, Peppers, ScopeCatalog};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes currently allocated through the global allocator.
fn live_bytes() -> i128 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i128 - s.bytes_deallocated as i128 + s.bytes_reallocated as i128
}

/// Resident set size in bytes, if `/proc/self/statm` is readable.
fn rss_bytes() -> Option<i128> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i128 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Polls a future that is ready at once (the memory store never waits).
fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("memory-store future was pending"),
    }
}

fn measure(keys: usize, accounts: usize) -> Result<(), Box<dyn std::error::Error>> {
    let names: Vec<String> = (0..accounts).map(|i| format!("robot-{i:07}")).collect();
    let manager = KeyManager::builder(
        Arc::new(MemoryStore::new()),
        Peppers::single(Pepper::generate(1)?),
        ScopeCatalog::builder().scope("yc.monitoring.manage", "").scope("yc.postbox.send", "").build()?,
    )
    .build();
    let (heap0, rss0) = (live_bytes(), rss_bytes());
    let started = Instant::now();
    for i in 0..keys {
        let request =
            CreateRequest::new(names[i % accounts].as_str()).scopes(["yc.monitoring.manage", "yc.postbox.send"]);
        // The secret is dropped (and zeroized) at once: only the store remains.
        let _created = now(manager.create(request))?;
    }
    let elapsed = started.elapsed();
    let (heap1, rss1) = (live_bytes(), rss_bytes());
    assert_eq!(manager.store().len(), keys);
    let n = keys as f64;
    println!("{keys} keys over {accounts} service account(s), two scopes, empty description:");
    println!("  created in {elapsed:.2?} ({:.2} µs per key)", elapsed.as_secs_f64() * 1e6 / n);
    println!(
        "  live heap: {:.1} bytes/key (counting allocator, {} bytes total)",
        (heap1 - heap0) as f64 / n,
        heap1 - heap0
    );
    match (rss0, rss1) {
        (Some(a), Some(b)) => println!("  RSS:       {:.1} bytes/key (/proc/self/statm growth)", (b - a) as f64 / n),
        _ => println!("  RSS:       not available on this platform"),
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let keys: usize = match args.next() {
        Some(a) => a.replace('_', "").parse()?,
        None => 1_000_000,
    };
    if let Some(accounts) = args.next() {
        return measure(keys, accounts.replace('_', "").parse()?);
    }
    println!("method: live bytes from a counting global allocator (stats_alloc over System), and RSS growth");
    println!(
        "the memory store keeps one papaya entry per key (id + a compact record, scopes and account interned, \
         about 180 bytes) plus its table slot and the per-account index; each layout runs in a fresh process \
         so RSS starts clean"
    );
    // One process per layout: freed memory stays resident, which would
    // distort the second RSS figure.
    let exe = std::env::current_exe()?;
    for accounts in [1_000.min(keys.max(1)), keys.max(1)] {
        let status = std::process::Command::new(&exe).arg(keys.to_string()).arg(accounts.to_string()).status()?;
        if !status.success() {
            return Err(format!("measuring {keys} keys over {accounts} accounts failed: {status}").into());
        }
    }
    Ok(())
}
