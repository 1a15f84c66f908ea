//! `keyctl serve`'s metrics and readiness under load, as a process: memory
//! stays flat when nobody scrapes `/metrics`, `/readyz` does not turn each
//! request into a store query, and what `/metrics` counts (harness in
//! `common/`).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;

/// The resident set of process `pid`, in bytes (`VmRSS` in `/proc`).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in\n{status}"));
    kb * 1024
}

/// The demo key `keyctl serve` prints for a `memory:` store.
fn demo_key(server: &Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(key) = server.stdout().lines().find_map(|l| l.strip_prefix("demo-key: ")) {
            return key.to_owned();
        }
        assert!(Instant::now() < deadline, "no demo key printed:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `/v1/authorize` requests with `auth` on one keep-alive connection,
/// `BATCH` pipelined at a time, until `stop`; adds each answered request to
/// `done`.
fn hammer(addr: SocketAddr, auth: &str, stop: &AtomicBool, done: &AtomicU64) {
    const BATCH: usize = 32;
    let one = format!("GET /v1/authorize HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\n\r\n");
    let batch = one.repeat(BATCH);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        s.write_all(batch.as_bytes()).unwrap();
        let mut seen = 0;
        let mut tail = Vec::new();
        while seen < BATCH {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the server closed the connection");
            tail.extend_from_slice(&buf[..n]);
            // Count complete status lines; keep a partial one for the next read.
            let text = String::from_utf8_lossy(&tail).into_owned();
            seen += text.matches("HTTP/1.1 200 ").count();
            assert!(!text.contains("HTTP/1.1 4") && !text.contains("HTTP/1.1 5"), "refused:\n{text}");
            let keep = text.rfind("HTTP/1.1 200 ").map_or(0, |i| i + "HTTP/1.1 200 ".len());
            tail.drain(..keep.min(tail.len()));
        }
        done.fetch_add(BATCH as u64, Ordering::Relaxed);
    }
}

/// Issue 25 finding 14: with nobody scraping `/metrics`, every answered
/// request used to leave its histogram sample in memory until the next
/// scrape (about 19 bytes a request). The recorder's upkeep now runs on a
/// timer: after a warm-up, RSS stays flat while requests keep coming.
/// Loopback only; stops by itself after about 25 seconds.
#[test]
fn memory_stays_flat_without_a_scraper() {
    const CLIENTS: usize = 3;
    const WARM_UP: Duration = Duration::from_secs(5);
    const SOAK: Duration = Duration::from_secs(20);
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
    let server = Server::start(&k, "memory:", &[]);
    let auth = format!("Api-Key {}", demo_key(&server));
    let pid = server.child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(Barrier::new(CLIENTS + 1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, done, ready, auth, addr) =
                (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&ready), auth.clone(), server.addr);
            std::thread::spawn(move || {
                ready.wait();
                hammer(addr, &auth, &stop, &done);
            })
        })
        .collect();
    ready.wait();
    std::thread::sleep(WARM_UP);
    let (rss_before, done_before) = (rss(pid), done.load(Ordering::Relaxed));
    let mut peak = rss_before;
    let soak_end = Instant::now() + SOAK;
    while Instant::now() < soak_end {
        std::thread::sleep(Duration::from_millis(250));
        peak = peak.max(rss(pid));
    }
    let (rss_after, requests) = (rss(pid), done.load(Ordering::Relaxed) - done_before);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let grown = peak.saturating_sub(rss_before);
    #[allow(clippy::cast_precision_loss, reason = "a printed ratio")]
    let per_request = grown as f64 / requests as f64;
    eprintln!(
        "soak: {requests} requests in {SOAK:?} ({:.0}/s); RSS {:.1} MB -> {:.1} MB (peak {:.1} MB): {per_request:.2} bytes/request",
        requests as f64 / SOAK.as_secs_f64(),
        rss_before as f64 / 1e6,
        rss_after as f64 / 1e6,
        peak as f64 / 1e6,
    );
    assert!(requests >= 20_000, "too few requests to measure growth: {requests}");
    // Unscraped samples cost about 19 bytes a request; a flat process grows
    // by what one upkeep interval holds plus allocator noise.
    assert!(per_request < 4.0, "RSS grew {grown} bytes over {requests} requests ({per_request:.2} bytes/request)");
    // The samples were not lost: a scrape still counts every request.
    let m = server.request("GET", "/metrics", &[], "").body;
    let count: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("keyctl_authorize_seconds_count "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no histogram count in\n{m}"));
    #[allow(clippy::cast_precision_loss, reason = "counts below 2^53")]
    let at_least = (done_before + requests) as f64;
    assert!(count >= at_least, "histogram count {count} < {at_least} answered requests");
    server.stop();
}

/// Counts the commands Redis receives that name `prefix` (`MONITOR`), from
/// now until [`Monitor::stop`], except the change feed's reads (each node's
/// shield catches up twice a second, whatever the traffic) and the resource
/// head's (each node's lifetime limits look four times a second).
struct Monitor {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Monitor {
    fn start(url: &str, prefix: &str) -> Self {
        let addr = url.trim_start_matches("redis://").trim_end_matches('/');
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"MONITOR\r\n").unwrap();
        let mut ok = [0u8; 5];
        s.read_exact(&mut ok).unwrap();
        assert_eq!(&ok, b"+OK\r\n");
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, needle) = (Arc::clone(&stop), prefix.to_owned());
        let thread = std::thread::spawn(move || {
            let (mut text, mut buf, mut seen) = (String::new(), [0u8; 16 * 1024], 0);
            while !flag.load(Ordering::Relaxed) {
                if let Ok(n) = s.read(&mut buf) {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                    let end = text.rfind('\n').map_or(0, |i| i + 1);
                    let ours = |l: &&str| l.contains(&needle) && !l.contains(":feed") && !l.contains(":resseq");
                    seen += text[..end].lines().filter(ours).count() as u64;
                    text.drain(..end);
                }
            }
            seen
        });
        Self { stop, thread }
    }

    fn stop(self) -> u64 {
        std::thread::sleep(Duration::from_millis(300));
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Issue 25 finding 10: each unauthenticated `/readyz` used to be one store
/// query (1,000 probes, about 1,000 queries), beyond the flood shield and
/// uncounted. Probes now share one check a second, and `/metrics` counts
/// both. The store queries are counted by Redis itself (`MONITOR`).
#[test]
fn readiness_probes_share_one_store_check_a_second() {
    const THREADS: usize = 20;
    const EACH: usize = 50;
    let base = redis_url();
    let prefix = unique("readyz");
    let _cleanup = PurgePrefix { url: base.clone(), prefix: prefix.clone() };
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
    let server = Server::start(&k, &with_param(&base, "prefix", &prefix), &[]);
    std::thread::sleep(Duration::from_millis(500));
    let monitor = Monitor::start(&base, &prefix);
    let started = Instant::now();
    let probes: Vec<_> = (0..THREADS)
        .map(|_| {
            let addr = server.addr;
            std::thread::spawn(move || {
                (0..EACH).filter(|_| http(addr, "GET", "/readyz", &[], "").status == 200).count()
            })
        })
        .collect();
    let ready: usize = probes.into_iter().map(|t| t.join().unwrap()).sum();
    let elapsed = started.elapsed();
    let queries = monitor.stop();
    assert_eq!(ready, THREADS * EACH, "every probe answered 200");
    #[allow(clippy::cast_precision_loss, reason = "small counts")]
    let bound = elapsed.as_secs_f64().ceil() + 2.0;
    eprintln!("readyz: {ready} probes in {elapsed:?}; {queries} Redis commands naming the prefix");
    #[allow(clippy::cast_precision_loss, reason = "small counts")]
    let queried = queries as f64;
    assert!(queried <= bound, "{queries} store queries for {ready} probes in {elapsed:?}");
    let m = server.request("GET", "/metrics", &[], "").body;
    #[allow(clippy::cast_precision_loss, reason = "small counts")]
    let probes = (THREADS * EACH) as f64;
    assert_eq!(metric(&m, "keyctl_readyz_requests_total"), probes, "{m}");
    let checks = metric(&m, "keyctl_readiness_checks_total{result=\"ready\"}");
    assert!(checks >= 1.0 && checks <= bound, "{checks} checks counted\n{m}");
    assert_eq!(metric(&m, "keyctl_readiness_checks_total{result=\"unavailable\"}"), 0.0);
    // The shield's set and the cache report their size.
    assert!(metric(&m, "keyctl_shield_bytes") >= 0.0, "{m}");
    assert_eq!(metric(&m, "keyctl_cache_entries"), 0.0, "no key was looked up: {m}");
    server.stop();
}
