//! How many bytes the in-memory rate limiter (`LocalRateLimiter`) spends per
//! tracked key, and that idle keys are forgotten.
//!
//! Counts 100,000 keys (or the count given as the first argument) once
//! each against one limit, then against two distinct limits, and reports
//! the live heap bytes per key (a counting global allocator, `stats_alloc`,
//! over `std::alloc::System`: bytes requested minus bytes freed, allocator
//! overhead excluded). Then it moves the manual clock past the limits'
//! periods and sweeps: the tracked count and the heap fall back.
//!
//! ```text
//! cargo run --release --example limiter_memory [KEYS]
//! ```

use std::alloc::System;
use std::sync::Arc;
use std::time::Duration;

use api_keys::controls::{LocalRateLimiter, RateDecision, RateLimits};
use api_keys::{KeyId, ManualClock, Timestamp};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes currently allocated through the global allocator.
fn live_bytes() -> i128 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i128 - s.bytes_deallocated as i128 + s.bytes_reallocated as i128
}

fn measure(keys: usize, limits: &str) -> Result<(), Box<dyn std::error::Error>> {
    let ids: Vec<KeyId> = (0..keys).map(|_| KeyId::generate()).collect::<Result<_, _>>()?;
    let limits: RateLimits = limits.parse()?;
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_767_225_600)?));
    let limiter = LocalRateLimiter::new(clock.clone());
    // One key first, so the per-limit maps exist before the measurement.
    limiter.check_now(&ids[0], &limits)?;
    let before = live_bytes();
    for id in &ids[1..] {
        if !matches!(limiter.check_now(id, &limits)?, RateDecision::Allowed(_)) {
            return Err("a fresh key was refused".into());
        }
    }
    let grown = live_bytes() - before;
    let per_key = grown as f64 / (keys - 1) as f64;
    println!(
        "{keys} keys, limits {limits}: {} tracked, {per_key:.1} live heap bytes per key ({:.1} per key and limit)",
        limiter.tracked(),
        per_key / limits.as_slice().len() as f64
    );
    clock.advance(Duration::from_secs(3600));
    limiter.sweep();
    let after = live_bytes() - before;
    println!("  after an idle hour and a sweep: {} tracked, {after} bytes above the start", limiter.tracked());
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keys: usize = std::env::args().nth(1).map_or(Ok(100_000), |a| a.parse())?;
    measure(keys.max(2), "api=100/1s:burst=20")?;
    measure(keys.max(2), "api=100/1s:burst=20,daily=10000/1d")?;
    Ok(())
}
