//! Verification throughput with one and two threads sharing one
//! `Arc<Verifier>` over one `Arc<MemoryStore>` of 1,000 keys (or
//! `THROUGHPUT_KEYS`).
//!
//! Group `throughput`, ids `threads/1` and `threads/2`. With `iter_custom`
//! each sample's `iters` verifications are split evenly across the threads;
//! the threads are spawned first, released together by a barrier, and the
//! wall time from release to the last thread's end is reported. So the
//! reported time per iteration is the inverse of aggregate throughput, and
//! `time(threads/1) / time(threads/2)` is the two-thread speed-up (ideal: 2).
//!
//! Each thread picks random keys with its own xorshift generator.
//!
//! On a 2-core machine shared with other work, the second thread competes
//! with that work for a core, so `threads/2` also depends on the load
//! (printed before and after). `cpu_per_thread/N` reports each run's summed
//! on-CPU time divided by N instead of wall time: its 1/2 ratio is the
//! speed-up the verifier allows when each thread has a core of its own.

mod common;

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{Fixture, XorShift, fixture, poll_once, thread_cpu_ns};
use criterion::{BenchmarkId, Criterion, Throughput};

/// Runs `iters` verifications on `threads` threads; returns the wall time of
/// the work and the summed on-CPU time of the worker threads.
fn run(f: &Arc<Fixture>, threads: u64, iters: u64) -> (Duration, Duration) {
    let start_line = Arc::new(Barrier::new(threads as usize + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let f = Arc::clone(f);
            let start_line = Arc::clone(&start_line);
            let share = iters / threads + u64::from(t < iters % threads);
            thread::spawn(move || {
                let mut rng = XorShift::new(0x5EED + t);
                let n = f.headers.len();
                let mut ok = 0u64;
                start_line.wait();
                let cpu0 = thread_cpu_ns();
                for _ in 0..share {
                    let h = &f.headers[rng.below(n)];
                    ok += u64::from(poll_once!(f.verifier.verify(black_box(h), Some(&f.need))).is_ok());
                }
                let cpu = thread_cpu_ns().zip(cpu0).map_or(0, |(b, a)| b.saturating_sub(a));
                (ok, share, Instant::now(), cpu)
            })
        })
        .collect();
    start_line.wait();
    let start = Instant::now();
    let mut end = start;
    let mut cpu = 0;
    for h in handles {
        match h.join() {
            Ok((ok, share, finished, used)) => {
                assert_eq!(ok, share, "every verification succeeds");
                end = end.max(finished);
                cpu += used;
            }
            Err(_) => panic!("verifier thread panicked"),
        }
    }
    (end - start, Duration::from_nanos(cpu))
}

/// `/proc/loadavg`'s first three fields, or `?` where it is not available.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

fn throughput(c: &mut Criterion) {
    // `THROUGHPUT_KEYS=1000000` measures a large store (fewer shared records
    // between the threads, more cache misses).
    let keys = std::env::var("THROUGHPUT_KEYS").ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(1_000);
    let f = Arc::new(fixture(keys));
    let mut g = c.benchmark_group("throughput");
    g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4)).sample_size(50);
    g.throughput(Throughput::Elements(1));
    eprintln!("load average before: {}", load_average());
    for threads in [1u64, 2] {
        g.bench_with_input(BenchmarkId::new("threads", threads), &threads, |b, &threads| {
            b.iter_custom(|iters| run(&f, threads, iters).0)
        });
    }
    eprintln!("load average after: {}", load_average());
    if thread_cpu_ns().is_some() {
        // On-CPU time per verification, divided by the thread count: what
        // the wall time would be if every thread had a core to itself. Its
        // 1/2 ratio shows contention inside the verifier (shared cache
        // lines, locks) apart from other load on the machine.
        for threads in [1u64, 2] {
            g.bench_with_input(BenchmarkId::new("cpu_per_thread", threads), &threads, |b, &threads| {
                b.iter_custom(|iters| run(&f, threads, iters).1 / u32::try_from(threads).unwrap_or(1))
            });
        }
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    throughput(&mut c);
    c.final_summary();
}
